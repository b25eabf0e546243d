// fleetkey device SDK: certificate rotation, without I/O.
//
// A device connected with its certificate makes a new key pair and CSR, asks fleetkeyd for a
// new certificate on $fleetkey/certificates/rotate/<json|cbor> (the thing, its policies and
// groups stay), switches its connection to the new certificate, and only then makes it its
// identity (the server deactivates the old certificate at that first connect, or when its
// overlap window ends). This is fleetkey's API, not AWS's: AWS IoT has no rotation topic.
//
// Like the Provisioner, the machine does no I/O: the caller feeds it events and carries out its
// actions (ProvisioningRunner's Linux counterpart is RotationRunner).
//
// Power loss: the RotationRecord is saved before each step that must survive it, and holds both
// identities until the new one has connected, so a device that loses power at any point comes
// back with exactly one working identity:
//
//   saved stage  on restart
//   none         the current identity; nothing was asked (a key made but not saved is lost)
//   key-ready    the same CSR is sent again: fleetkeyd answers with the same certificate
//   issued       connect with the new certificate; if it is refused, go back to the previous
//                one (still ACTIVE during the overlap window) and drop the rotation
//   (committed)  the new identity is the device's; the record is cleared
//
// Thread-safety: a Rotator is a plain value used by one thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fleetkey/provisioning.h"

namespace fleetkey {

enum class RotationStage {
  kNone,      // no rotation under way
  kKeyReady,  // new key and CSR made and saved
  kIssued,    // new certificate received and saved; not yet used
};
const char* to_string(RotationStage stage);  // "none", "rotation-key-ready", "rotation-issued"

struct RotationRecord {
  RotationStage stage = RotationStage::kNone;
  std::string private_key_pem;  // the new key (secret)
  std::string csr_pem;
  std::string certificate_pem;  // the new certificate (kIssued)
  std::string certificate_id;
  std::int64_t previous_deactivates_at = 0;  // the server's word: the old one's last moment
  // The identity being replaced, kept until the new one has connected.
  std::string previous_certificate_pem;
  std::string previous_private_key_pem;
};

struct RotationConfig {
  PayloadFormat format = PayloadFormat::kJson;
  KeyType key_type = KeyType::kEcP256;
  std::string common_name;  // the CSR's CN (the thing name)
  // Rotate when the certificate expires within this (rotation_due()).
  std::int64_t renew_before_seconds = 30 * 86400;
  std::uint32_t response_timeout_ms = 10000;
  RetryPolicy retry;  // throttling, server errors, timeouts
  std::uint64_t jitter_seed = 0;
};

// Whether a certificate valid until `not_after` should be rotated at `now` (epoch seconds).
bool rotation_due(const RotationConfig& config, std::int64_t not_after, std::int64_t now);

enum class RotationState {
  kIdle,
  kGenerateKeys,  // the platform makes the key and CSR
  kSubscribe,     // subscribing to the reply topics (or waiting for a connection)
  kSendRequest,   // request sent, waiting for the reply
  kBackoff,       // waiting before asking again (throttled, server error, timeout)
  kSwitch,        // connecting with the new certificate
  kFallback,      // the new certificate was refused: back to the previous one
  kComplete,      // the new identity is the device's (after kCommit)
  kFailed,        // stopped: error() says why; the device keeps its working identity
};
const char* to_string(RotationState state);

class Rotator {
 public:
  explicit Rotator(RotationConfig config, RotationRecord saved = {});

  // Starts (or resumes from the saved record) with the device's current identity (used only
  // when no rotation is under way) and whether its connection is up.
  std::vector<Action> start(std::uint64_t now_ms, const std::string& current_certificate_pem,
                            const std::string& current_private_key_pem, bool connected);
  // Events: kConnected, kConnectFailed (with `permanent`), kDisconnected, kSubscribed,
  // kPublishFailed, kMessage, kKeyGenerated, kSaved, kTimer.
  //
  // Actions: kGenerateKey, kSave (record()), kSubscribe, kPublish, kStartTimer, kCancelTimer,
  // kConnect (switch the device's connection: role kDevice = record().previous_*, role
  // kNewDevice = the new certificate), kComplete (make record()'s new certificate and key the
  // device's, then clear the record), kFail.
  std::vector<Action> on(const Event& event, std::uint64_t now_ms);

  RotationState state() const { return state_; }
  const RotationRecord& record() const { return record_; }
  const Error& error() const { return error_; }

  std::string request_topic() const;

 private:
  void subscribe(std::vector<Action>& out);
  void publish(std::uint64_t now, std::vector<Action>& out);
  void retry(Error error, std::vector<Action>& out);
  void save(std::optional<RotationState> then, std::vector<Action>& out);
  void give_up(Error error, bool drop_record, std::vector<Action>& out);
  void on_message(const Event& event, std::uint64_t now, std::vector<Action>& out);
  void after_save(std::uint64_t now, std::vector<Action>& out);

  RotationConfig config_;
  RotationRecord record_;
  RotationState state_ = RotationState::kIdle;
  Error error_;
  bool connected_ = false;
  std::uint32_t attempts_ = 0;
  std::optional<RotationState> after_save_;
  std::optional<Error> fail_after_save_;
  std::uint64_t rng_;
};

}  // namespace fleetkey
