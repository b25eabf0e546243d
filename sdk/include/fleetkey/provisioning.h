// fleetkey device SDK: the fleet provisioning state machine, without I/O.
//
// A device that has only the shared claim certificate runs this machine once: it connects with
// the claim certificate, makes its own key and CSR (or asks the server for keys), receives its
// certificate and ownership token, calls RegisterThing with a provisioning template, and
// reconnects with its own certificate. The topics and payloads (JSON or CBOR) are AWS IoT
// Core's, so the same firmware works against AWS and against fleetkeyd.
//
// The machine does no I/O and reads no clock: the caller feeds it events (connected, message,
// timer fired, key generated, record saved) with the current monotonic time, and carries out
// the actions it returns, in order (connect with these credentials, subscribe, publish, save,
// start a timer). A platform adapter (ProvisioningRunner on Linux, a few hundred lines on an
// MCU) does that; tests drive it with a scripted transport.
//
// Crash safety: the machine asks for its ProvisioningRecord to be saved (atomically, by a
// CredentialStore) at each step that must survive power loss, and waits for the save before it
// goes on. Started again with the saved record, it resumes where it stopped and never makes a
// second identity.
//
// Thread-safety: a Provisioner is a plain value used by one thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace fleetkey {

enum class PayloadFormat { kJson, kCbor };
enum class KeySource {
  kDeviceCsr,
  kServerKeys
};  // CreateCertificateFromCsr | CreateKeysAndCertificate
enum class KeyType { kEcP256, kRsa2048 };

// How far provisioning got; what a CredentialStore keeps.
enum class Stage {
  kNone,               // nothing yet
  kKeyReady,           // device key and CSR made and saved
  kCertificateIssued,  // certificate and ownership token received and saved
  kRegistered,         // RegisterThing accepted: the device has its identity
};
const char* to_string(Stage stage);  // "none", "key-ready", "certificate-issued", "registered"

struct ProvisioningRecord {
  Stage stage = Stage::kNone;
  std::string private_key_pem;  // the device's key (secret)
  std::string csr_pem;
  std::string certificate_pem;
  std::string certificate_id;
  std::string ownership_token;  // secret until used
  std::string thing_name;
  std::map<std::string, std::string> device_configuration;
};

// Why provisioning failed (or why a connect/step went wrong), precise enough to act on.
enum class ErrorKind {
  kNone,
  kNetwork,               // TCP/TLS transport failure, connection lost
  kTimeout,               // no reply in time
  kServerCertificate,     // the server's certificate does not chain to the root CA
  kClaimRejected,         // the claim certificate was refused (CONNACK or TLS alert)
  kNotAuthorized,         // a SUBSCRIBE or PUBLISH was refused by the claim policy
  kCertificateRejected,   // CreateCertificateFromCsr / CreateKeysAndCertificate rejected
  kRegistrationRejected,  // RegisterThing rejected
  kDeviceRejected,        // the new device certificate was refused at connect
  kBadReply,              // a reply that cannot be decoded or lacks a member
  kOutcomeUnknown,        // RegisterThing's reply was lost and cannot be recovered
  kStorage,               // the credential store failed
  kKeyGeneration,         // key or CSR generation failed
  kGaveUp,                // max_attempts retries spent
  kInvalidCredentials,    // direct certificates: unusable files (see credentials.h)
  kRotationRejected,      // fleetkeyd refused a certificate rotation (rotation.h)
};
const char* to_string(ErrorKind kind);

struct Error {
  Error() = default;
  Error(ErrorKind k, std::string m, int status = 0, std::string code = {})
      : kind(k), message(std::move(m)), status_code(status), error_code(std::move(code)) {}

  ErrorKind kind = ErrorKind::kNone;
  std::string message;
  // For rejected requests: AWS's reply members.
  int status_code = 0;
  std::string error_code;
};

struct RetryPolicy {
  std::uint32_t initial_delay_ms = 1000;
  std::uint32_t max_delay_ms = 60000;
  std::uint32_t max_attempts = 10;  // consecutive failures of one step; 0 = retry forever
};

// The delay before retry number `attempt` (1 = the first retry): initial_delay_ms * 2^(attempt-1)
// capped at max_delay_ms, with "equal jitter" (half fixed, half from `random`).
std::uint32_t backoff_delay_ms(const RetryPolicy& policy, std::uint32_t attempt,
                               std::uint64_t random);

struct ProvisioningConfig {
  std::string template_name;                      // e.g. "LockerTemplate"
  std::map<std::string, std::string> parameters;  // e.g. {"SerialNumber", "SN-0001"}
  std::string claim_client_id;                    // client id of the claim connection
  PayloadFormat format = PayloadFormat::kJson;
  KeySource key_source = KeySource::kDeviceCsr;
  KeyType key_type = KeyType::kEcP256;
  // The thing name the template will give this device, if the caller knows it. Used only when
  // the RegisterThing reply was lost (power cut after the server committed): the device then
  // proves its registration by connecting as that thing instead of starting over.
  std::string expected_thing_name;
  std::uint32_t response_timeout_ms = 10000;
  std::uint32_t min_connect_interval_ms = 1000;  // AWS: one connect per second per client id
  RetryPolicy retry;
  std::uint64_t jitter_seed = 0;  // seeds the backoff jitter (e.g. from the serial number)
};

enum class State {
  kIdle,
  kClaimConnect,   // connecting with the claim certificate
  kSubscribe,      // subscribing to the reply topics
  kGenerateKeys,   // key pair and CSR being made by the platform
  kSendRequest,    // certificate request sent, waiting for its reply
  kRegister,       // RegisterThing sent, waiting for its reply
  kDeviceConnect,  // connecting with the device certificate
  kComplete,       // provisioned and connected as the device
  kBackoff,        // waiting before retrying the current step
  kFailed,         // stopped: error() says why; retrying cannot succeed
};
const char* to_string(State state);

// kNewDevice: the certificate a rotation just received (rotation.h).
enum class Role { kClaim, kDevice, kNewDevice };

struct Action {
  enum class Type {
    kConnect,      // connect as `role` with `client_id` (the claim certificate, or the record's)
    kDisconnect,   // close the current connection cleanly
    kSubscribe,    // subscribe to `topics` (QoS 1) in one SUBSCRIBE; answer with kSubscribed
    kPublish,      // publish `payload` on `topics[0]` (QoS 1)
    kGenerateKey,  // make a key of `key_type` and a CSR for it; answer with kKeyGenerated
    kSave,         // save record() atomically; answer with kSaved
    kStartTimer,   // (re)start the one timer: fire kTimer after `delay_ms` (replaces the last)
    kCancelTimer,
    kComplete,  // provisioned: the connection as the device is up (record() has it all)
    kFail,      // stopped with error()
  };
  Type type = Type::kStartTimer;
  Role role = Role::kClaim;
  std::string client_id;
  std::vector<std::string> topics;
  std::string payload;
  KeyType key_type = KeyType::kEcP256;
  std::uint32_t delay_ms = 0;
};

struct Event {
  enum class Type {
    kConnected,      // CONNACK accepted
    kConnectFailed,  // transport/TLS error or CONNACK refused: `error` says which
    kDisconnected,   // an established connection was lost
    kSubscribed,     // SUBACK: `ok` false if any filter was refused
    kPublishFailed,  // the transport could not send (or PUBACK carried a failure)
    kMessage,        // an incoming PUBLISH
    kKeyGenerated,   // `private_key_pem`, `csr_pem` (or ok = false with `error`)
    kSaved,          // `ok` false if the store failed
    kTimer,
  };
  Type type = Type::kTimer;
  bool ok = true;
  Error error;
  std::string topic;
  std::string payload;
  std::string private_key_pem;
  std::string csr_pem;
  // For kConnectFailed: true when retrying cannot help (credentials refused, wrong server CA).
  bool permanent = false;
};

class Provisioner {
 public:
  explicit Provisioner(ProvisioningConfig config, ProvisioningRecord saved = {});

  // Starts (or resumes from the saved record). `now_ms` is a monotonic clock in milliseconds.
  std::vector<Action> start(std::uint64_t now_ms);
  std::vector<Action> on(const Event& event, std::uint64_t now_ms);

  State state() const { return state_; }
  const ProvisioningRecord& record() const { return record_; }
  const Error& error() const { return error_; }
  std::uint32_t attempts() const { return attempts_; }

  // The request and reply topics for this configuration.
  std::string certificate_topic() const;
  std::string register_topic() const;

 private:
  enum class Step { kConnectClaim, kContinue, kConnectDevice };
  static constexpr std::uint64_t kClosedAfterRequestMs = 3000;
  static constexpr std::uint32_t kClosedAfterRequestLimit = 3;
  std::vector<Action> handle(const Event& event, std::uint64_t now);
  void go(Step step, std::uint64_t now, std::vector<Action>& out);
  void next_request(std::uint64_t now, std::vector<Action>& out);
  void publish_certificate_request(std::vector<Action>& out);
  void publish_register(std::vector<Action>& out);
  void connect(Role role, std::uint64_t now, std::vector<Action>& out);
  void retry(Error error, Step step, std::vector<Action>& out);
  void fail(Error error, std::vector<Action>& out);
  void save(std::vector<Action>& out);
  void on_message(const Event& event, std::uint64_t now, std::vector<Action>& out);
  void on_connect_failed(const Event& event, std::vector<Action>& out);
  std::uint32_t backoff_ms();

  ProvisioningConfig config_;
  ProvisioningRecord record_;
  State state_ = State::kIdle;
  Error error_;
  std::uint32_t attempts_ = 0;
  Step pending_ = Step::kConnectClaim;  // what kBackoff resumes
  std::optional<State> after_save_;     // where a kSaved continues
  bool connected_ = false;
  bool probing_ = false;                          // device connect after a lost RegisterThing reply
  bool register_sent_ = false;                    // this token was published in this run
  bool token_resent_ = false;                     // ...more than once, or before a restart
  std::optional<std::uint64_t> last_connect_[2];  // per role
  // MQTT 3.1.1 servers (AWS IoT, fleetkeyd) refuse a PUBLISH the policy does not allow by
  // closing the connection: a close right after each request, several times in a row, is
  // reported as kNotAuthorized instead of being retried as a network error forever.
  std::optional<std::uint64_t> published_at_;
  std::string published_topic_;
  std::uint32_t closed_after_request_ = 0;
  std::uint64_t rng_;
};

}  // namespace fleetkey
