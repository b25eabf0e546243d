// fleetkey device SDK, Linux: runs the Rotator (rotation.h) over a device's DeviceConnection, a
// CredentialStore and OpenSSL key generation, on the connection's io_context.
//
// The application keeps its DeviceConnection and forwards its handlers' events here
// (on_connected, on_disconnected, on_message); the runner asks on the same connection and
// switches it to the new certificate (DeviceConnection::switch_identity). At boot,
// boot_identity() says which certificate to connect with: the saved rotation's new one when the
// rotation got that far.
//
// Thread-safety: use from the io_context's thread; `done` is called from it, once per start().
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "fleetkey/credentials.h"
#include "fleetkey/mqtt_client.h"
#include "fleetkey/rotation.h"

namespace fleetkey {

struct RotationResult {
  bool ok = false;
  Error error;            // when !ok (the device keeps a working identity)
  RotationRecord record;  // the rotation as committed (the new certificate, its id)
};

class RotationRunner {
 public:
  RotationRunner(boost::asio::io_context& io, DeviceConnection& connection, CredentialStore& store,
                 RotationConfig config, std::string root_ca_pem);
  ~RotationRunner();
  RotationRunner(const RotationRunner&) = delete;
  RotationRunner& operator=(const RotationRunner&) = delete;

  // The identity to connect with at boot: the saved rotation's new certificate if one was
  // issued (start() then completes the rotation), else `committed`.
  static TlsIdentity boot_identity(CredentialStore& store, const TlsIdentity& committed);
  // Whether the store holds a rotation under way (start() resumes it).
  static bool pending(CredentialStore& store);

  // Starts (or resumes) a rotation from `current` (the identity the connection uses).
  void start(const TlsIdentity& current, std::function<void(RotationResult)> done,
             std::function<void(RotationState)> on_state = {});
  bool running() const;

  // The DeviceConnection's events, forwarded by the application.
  void on_connected();
  // True when the rotation takes care of it (its new certificate was refused: the connection
  // goes back to the previous one): the application should not stop.
  bool on_disconnected(const Error& error, bool permanent);
  // True for the rotation's reply topics (consumed here).
  bool on_message(const std::string& topic, const std::string& payload);

 private:
  std::shared_ptr<class RotationRunnerState> state_;
};

}  // namespace fleetkey
