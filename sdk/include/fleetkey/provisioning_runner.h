// fleetkey device SDK, Linux: runs the Provisioner over MqttClient, a CredentialStore and
// OpenSSL key generation on a boost::asio::io_context, and hands over the device's connection
// when provisioning is complete.
//
// Thread-safety: use from the io_context's thread; `done` is called from it, once.
#pragma once

#include <functional>
#include <memory>

#include "fleetkey/credentials.h"
#include "fleetkey/mqtt_client.h"
#include "fleetkey/provisioning.h"

namespace fleetkey {

struct ProvisioningResult {
  bool ok = false;
  Error error;                             // when !ok
  ProvisioningRecord record;               // thing name, certificate, key, device configuration
  std::unique_ptr<MqttClient> connection;  // connected as the device (ok only)
  std::uint32_t connects = 0;              // MQTT connections opened on the way
  std::uint32_t throttled = 0;  // requests answered 429 Throttled (retried after a backoff)
};

class ProvisioningRunner {
 public:
  // `claim` is the shared claim certificate bundle; the store keeps progress across reboots.
  ProvisioningRunner(boost::asio::io_context& io, Endpoint endpoint, TlsIdentity claim,
                     ProvisioningConfig config, CredentialStore& store,
                     ConnectOptions connect_options = {});
  ~ProvisioningRunner();
  ProvisioningRunner(const ProvisioningRunner&) = delete;
  ProvisioningRunner& operator=(const ProvisioningRunner&) = delete;

  // Loads the store and starts (or resumes). `on_state` (optional) sees every state change.
  void start(std::function<void(ProvisioningResult)> done,
             std::function<void(State)> on_state = {});
  State state() const;
  // The latest error, also while retrying (e.g. in kBackoff: why the step is retried).
  const Error& last_error() const;

 private:
  std::shared_ptr<class RunnerState> state_;
};

}  // namespace fleetkey
