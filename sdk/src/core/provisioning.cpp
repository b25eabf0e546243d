#include "fleetkey/provisioning.h"

#include <algorithm>
#include <utility>

#include "core/messages.h"
#include "core/random.h"

namespace fleetkey {
namespace {

const char* format_name(PayloadFormat f) {
  return f == PayloadFormat::kJson ? "json" : "cbor";
}

// Rejections worth retrying: the server is busy or failing, not refusing this request.
bool retryable(const core::RejectedReply& r) {
  return r.status_code >= 500 || r.status_code == 429 || r.error_code == "Throttling" ||
         r.error_code == "ThrottlingException" || r.error_code == "ServiceUnavailable" ||
         r.error_code == "InternalFailure" || r.error_code == "InternalError";
}

Error rejection(ErrorKind kind, const char* operation, const core::RejectedReply& r) {
  Error e{kind,
          std::string(operation) + " rejected: " + std::to_string(r.status_code) + " " +
              r.error_code + (r.error_message.empty() ? "" : ": " + r.error_message),
          r.status_code, r.error_code};
  return e;
}

Action timer(std::uint32_t ms) {
  Action a;
  a.type = Action::Type::kStartTimer;
  a.delay_ms = ms;
  return a;
}

Action simple(Action::Type type) {
  Action a;
  a.type = type;
  return a;
}

}  // namespace

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kNone:
      return "none";
    case ErrorKind::kNetwork:
      return "network";
    case ErrorKind::kTimeout:
      return "timeout";
    case ErrorKind::kServerCertificate:
      return "server-certificate";
    case ErrorKind::kClaimRejected:
      return "claim-rejected";
    case ErrorKind::kNotAuthorized:
      return "not-authorized";
    case ErrorKind::kCertificateRejected:
      return "certificate-rejected";
    case ErrorKind::kRegistrationRejected:
      return "registration-rejected";
    case ErrorKind::kDeviceRejected:
      return "device-rejected";
    case ErrorKind::kBadReply:
      return "bad-reply";
    case ErrorKind::kOutcomeUnknown:
      return "outcome-unknown";
    case ErrorKind::kStorage:
      return "storage";
    case ErrorKind::kKeyGeneration:
      return "key-generation";
    case ErrorKind::kGaveUp:
      return "gave-up";
    case ErrorKind::kInvalidCredentials:
      return "invalid-credentials";
    case ErrorKind::kRotationRejected:
      return "rotation-rejected";
  }
  return "unknown";
}

const char* to_string(Stage stage) {
  switch (stage) {
    case Stage::kNone:
      return "none";
    case Stage::kKeyReady:
      return "key-ready";
    case Stage::kCertificateIssued:
      return "certificate-issued";
    case Stage::kRegistered:
      return "registered";
  }
  return "none";
}

const char* to_string(State state) {
  switch (state) {
    case State::kIdle:
      return "idle";
    case State::kClaimConnect:
      return "claim-connect";
    case State::kSubscribe:
      return "subscribe";
    case State::kGenerateKeys:
      return "generate-keys";
    case State::kSendRequest:
      return "send-request";
    case State::kRegister:
      return "register";
    case State::kDeviceConnect:
      return "device-connect";
    case State::kComplete:
      return "complete";
    case State::kBackoff:
      return "backoff";
    case State::kFailed:
      return "failed";
  }
  return "unknown";
}

Provisioner::Provisioner(ProvisioningConfig config, ProvisioningRecord saved)
    : config_(std::move(config)),
      record_(std::move(saved)),
      rng_(config_.jitter_seed ^ 0x9E3779B97F4A7C15ULL) {}

std::string Provisioner::certificate_topic() const {
  return std::string(config_.key_source == KeySource::kDeviceCsr
                         ? "$aws/certificates/create-from-csr/"
                         : "$aws/certificates/create/") +
         format_name(config_.format);
}

std::string Provisioner::register_topic() const {
  return "$aws/provisioning-templates/" + config_.template_name + "/provision/" +
         format_name(config_.format);
}

std::vector<Action> Provisioner::start(std::uint64_t now_ms) {
  std::vector<Action> out;
  if (state_ != State::kIdle) return out;
  // A certificate received before a reboot: its token was maybe used already (the reply lost).
  token_resent_ = record_.stage == Stage::kCertificateIssued;
  go(record_.stage == Stage::kRegistered ? Step::kConnectDevice : Step::kConnectClaim, now_ms, out);
  return out;
}

void Provisioner::go(Step step, std::uint64_t now, std::vector<Action>& out) {
  switch (step) {
    case Step::kConnectClaim:
      connect(Role::kClaim, now, out);
      break;
    case Step::kConnectDevice:
      connect(Role::kDevice, now, out);
      break;
    case Step::kContinue:
      if (!connected_) {
        connect(Role::kClaim, now, out);
      } else {
        next_request(now, out);
      }
      break;
  }
}

void Provisioner::connect(Role role, std::uint64_t now, std::vector<Action>& out) {
  if (connected_) {
    out.push_back(simple(Action::Type::kDisconnect));
    connected_ = false;
  }
  auto& last = last_connect_[role == Role::kClaim ? 0 : 1];
  if (last && now < *last + config_.min_connect_interval_ms) {
    state_ = State::kBackoff;
    pending_ = role == Role::kClaim ? Step::kConnectClaim : Step::kConnectDevice;
    out.push_back(timer(static_cast<std::uint32_t>(*last + config_.min_connect_interval_ms - now)));
    return;
  }
  last = now;
  state_ = role == Role::kClaim ? State::kClaimConnect : State::kDeviceConnect;
  Action a;
  a.type = Action::Type::kConnect;
  a.role = role;
  a.client_id = role == Role::kClaim ? config_.claim_client_id
                : probing_           ? config_.expected_thing_name
                                     : record_.thing_name;
  out.push_back(std::move(a));
  out.push_back(timer(config_.response_timeout_ms));
}

void Provisioner::next_request(std::uint64_t now, std::vector<Action>& out) {
  switch (record_.stage) {
    case Stage::kNone:
      if (config_.key_source == KeySource::kServerKeys) {
        publish_certificate_request(out);
      } else {
        state_ = State::kGenerateKeys;
        out.push_back(simple(Action::Type::kCancelTimer));
        Action a;
        a.type = Action::Type::kGenerateKey;
        a.key_type = config_.key_type;
        out.push_back(std::move(a));
      }
      break;
    case Stage::kKeyReady:
      publish_certificate_request(out);
      break;
    case Stage::kCertificateIssued:
      publish_register(out);
      break;
    case Stage::kRegistered:
      connect(Role::kDevice, now, out);
      break;
  }
}

void Provisioner::publish_certificate_request(std::vector<Action>& out) {
  state_ = State::kSendRequest;
  Action a;
  a.type = Action::Type::kPublish;
  a.topics = {certificate_topic()};
  a.payload = config_.key_source == KeySource::kDeviceCsr
                  ? core::encode_csr_request(config_.format, record_.csr_pem)
                  : core::encode_create_keys_request(config_.format);
  out.push_back(std::move(a));
  out.push_back(timer(config_.response_timeout_ms));
}

void Provisioner::publish_register(std::vector<Action>& out) {
  state_ = State::kRegister;
  if (register_sent_) token_resent_ = true;
  register_sent_ = true;
  Action a;
  a.type = Action::Type::kPublish;
  a.topics = {register_topic()};
  a.payload =
      core::encode_register_request(config_.format, record_.ownership_token, config_.parameters);
  out.push_back(std::move(a));
  out.push_back(timer(config_.response_timeout_ms));
}

std::uint32_t backoff_delay_ms(const RetryPolicy& policy, std::uint32_t attempt,
                               std::uint64_t random) {
  const std::uint32_t shift = std::min<std::uint32_t>(attempt > 0 ? attempt - 1 : 0, 20);
  const std::uint64_t base = std::min<std::uint64_t>(
      policy.max_delay_ms, static_cast<std::uint64_t>(policy.initial_delay_ms) << shift);
  const std::uint64_t half = base / 2;
  return static_cast<std::uint32_t>(half + random % (base - half + 1));
}

std::uint32_t Provisioner::backoff_ms() {
  return backoff_delay_ms(config_.retry, attempts_, core::splitmix64(rng_));
}

void Provisioner::retry(Error error, Step step, std::vector<Action>& out) {
  ++attempts_;
  error_ = std::move(error);
  if (config_.retry.max_attempts != 0 && attempts_ >= config_.retry.max_attempts) {
    Error gave_up{ErrorKind::kGaveUp,
                  "gave up after " + std::to_string(attempts_) + " attempts; last error (" +
                      to_string(error_.kind) + "): " + error_.message,
                  error_.status_code, error_.error_code};
    fail(std::move(gave_up), out);
    return;
  }
  if (step != Step::kContinue && connected_) {
    out.push_back(simple(Action::Type::kDisconnect));
    connected_ = false;
  }
  state_ = State::kBackoff;
  pending_ = step;
  out.push_back(timer(backoff_ms()));
}

void Provisioner::fail(Error error, std::vector<Action>& out) {
  state_ = State::kFailed;
  error_ = std::move(error);
  out.push_back(simple(Action::Type::kCancelTimer));
  if (connected_) {
    out.push_back(simple(Action::Type::kDisconnect));
    connected_ = false;
  }
  out.push_back(simple(Action::Type::kFail));
}

void Provisioner::save(std::vector<Action>& out) {
  out.push_back(simple(Action::Type::kCancelTimer));
  out.push_back(simple(Action::Type::kSave));
}

std::vector<Action> Provisioner::on(const Event& event, std::uint64_t now) {
  if (event.type == Event::Type::kMessage) closed_after_request_ = 0;  // the server answers
  std::vector<Action> out = handle(event, now);
  for (const Action& a : out) {
    if (a.type == Action::Type::kPublish && !a.topics.empty()) {
      published_at_ = now;
      published_topic_ = a.topics[0];
    }
  }
  return out;
}

std::vector<Action> Provisioner::handle(const Event& event, std::uint64_t now) {
  std::vector<Action> out;
  if (state_ == State::kFailed || state_ == State::kIdle) return out;
  if (state_ == State::kComplete) {
    if (event.type == Event::Type::kDisconnected) connected_ = false;
    return out;  // the application owns the device connection from here on
  }
  switch (event.type) {
    case Event::Type::kConnected:
      if (state_ != State::kClaimConnect && state_ != State::kDeviceConnect) break;
      connected_ = true;
      if (state_ == State::kClaimConnect) {
        state_ = State::kSubscribe;
        Action a;
        a.type = Action::Type::kSubscribe;
        a.topics = {certificate_topic() + "/accepted", certificate_topic() + "/rejected",
                    register_topic() + "/accepted", register_topic() + "/rejected"};
        out.push_back(std::move(a));
        out.push_back(timer(config_.response_timeout_ms));
      } else if (probing_) {
        // The device certificate works: the earlier RegisterThing did commit.
        probing_ = false;
        record_.thing_name = config_.expected_thing_name;
        record_.stage = Stage::kRegistered;
        record_.ownership_token.clear();
        after_save_ = State::kComplete;
        save(out);
      } else {
        state_ = State::kComplete;
        error_ = {};
        out.push_back(simple(Action::Type::kCancelTimer));
        out.push_back(simple(Action::Type::kComplete));
      }
      break;
    case Event::Type::kConnectFailed:
      if (state_ == State::kClaimConnect || state_ == State::kDeviceConnect)
        on_connect_failed(event, out);
      break;
    case Event::Type::kDisconnected:
      if (!connected_) break;
      connected_ = false;
      if (after_save_ || state_ == State::kGenerateKeys || state_ == State::kBackoff)
        break;  // the next step reconnects when it needs the connection
      if ((state_ == State::kSendRequest || state_ == State::kRegister) && published_at_ &&
          now - *published_at_ <= kClosedAfterRequestMs &&
          ++closed_after_request_ >= kClosedAfterRequestLimit) {
        fail({ErrorKind::kNotAuthorized,
              "the server closed the connection right after each request on " + published_topic_ +
                  " (" + std::to_string(closed_after_request_) +
                  " times in a row): that is how MQTT 3.1.1 servers refuse a PUBLISH the "
                  "policy does not allow. Does the claim policy allow iot:Publish on " +
                  published_topic_ + "?"},
             out);
        break;
      }
      retry({ErrorKind::kNetwork,
             "connection lost in state " + std::string(to_string(state_)) +
                 (event.error.message.empty() ? "" : ": " + event.error.message)},
            Step::kConnectClaim, out);
      break;
    case Event::Type::kSubscribed:
      if (state_ != State::kSubscribe) break;
      if (!event.ok) {
        fail({ErrorKind::kNotAuthorized,
              "the server refused the subscription to the reply topics of " + certificate_topic() +
                  " and " + register_topic() + " (does the claim policy allow them?)"},
             out);
        break;
      }
      next_request(now, out);
      break;
    case Event::Type::kPublishFailed:
      if (state_ != State::kSendRequest && state_ != State::kRegister) break;
      fail({ErrorKind::kNotAuthorized,
            "the server refused the publish to " +
                (state_ == State::kSendRequest ? certificate_topic() : register_topic()) +
                (event.error.message.empty() ? "" : ": " + event.error.message)},
           out);
      break;
    case Event::Type::kMessage:
      on_message(event, now, out);
      break;
    case Event::Type::kKeyGenerated:
      if (state_ != State::kGenerateKeys || after_save_) break;
      if (!event.ok || event.private_key_pem.empty() || event.csr_pem.empty()) {
        fail({ErrorKind::kKeyGeneration, "key generation failed: " + event.error.message}, out);
        break;
      }
      record_.private_key_pem = event.private_key_pem;
      record_.csr_pem = event.csr_pem;
      record_.stage = Stage::kKeyReady;
      after_save_ = State::kSendRequest;
      save(out);
      break;
    case Event::Type::kSaved: {
      if (!after_save_) break;
      const State next = *after_save_;
      after_save_.reset();
      if (!event.ok) {
        fail({ErrorKind::kStorage, "saving the provisioning record failed: " + event.error.message},
             out);
        break;
      }
      attempts_ = 0;  // a step was made durable: progress
      if (next == State::kSendRequest) {
        connected_ ? publish_certificate_request(out) : connect(Role::kClaim, now, out);
      } else if (next == State::kRegister) {
        connected_ ? publish_register(out) : connect(Role::kClaim, now, out);
      } else if (next == State::kDeviceConnect) {
        connect(Role::kDevice, now, out);
      } else if (next == State::kClaimConnect) {
        connect(Role::kClaim, now, out);
      } else if (next == State::kComplete) {
        state_ = State::kComplete;
        error_ = {};
        out.push_back(simple(Action::Type::kComplete));
      }
      break;
    }
    case Event::Type::kTimer:
      if (after_save_) break;
      switch (state_) {
        case State::kBackoff:
          go(pending_, now, out);
          break;
        case State::kClaimConnect:
        case State::kDeviceConnect:
          out.push_back(simple(Action::Type::kDisconnect));
          connected_ = false;
          retry({ErrorKind::kTimeout, std::string("no CONNACK within ") +
                                          std::to_string(config_.response_timeout_ms) + " ms"},
                state_ == State::kClaimConnect ? Step::kConnectClaim : Step::kConnectDevice, out);
          break;
        case State::kSubscribe:
          retry({ErrorKind::kTimeout, "no SUBACK in time"}, Step::kConnectClaim, out);
          break;
        case State::kSendRequest:
        case State::kRegister:
          retry({ErrorKind::kTimeout,
                 std::string("no reply to ") +
                     (state_ == State::kSendRequest ? certificate_topic() : register_topic()) +
                     " within " + std::to_string(config_.response_timeout_ms) + " ms"},
                Step::kContinue, out);
          break;
        default:
          break;
      }
      break;
  }
  return out;
}

void Provisioner::on_connect_failed(const Event& event, std::vector<Action>& out) {
  connected_ = false;
  const bool device = state_ == State::kDeviceConnect;
  if (device && probing_) {
    if (!event.permanent) {
      retry({ErrorKind::kNetwork, event.error.message}, Step::kConnectDevice, out);
      return;
    }
    // The certificate is not active: the earlier RegisterThing did not commit, and its token
    // cannot be used again. Start over from the key (the server deletes the unclaimed
    // certificate): there is still only one identity.
    probing_ = false;
    register_sent_ = token_resent_ = false;
    record_.certificate_pem.clear();
    record_.certificate_id.clear();
    record_.ownership_token.clear();
    record_.stage = record_.csr_pem.empty() ? Stage::kNone : Stage::kKeyReady;
    if (record_.stage == Stage::kNone) record_.private_key_pem.clear();
    after_save_ = State::kClaimConnect;
    save(out);
    return;
  }
  if (event.permanent) {
    Error e = event.error;
    if (e.kind != ErrorKind::kServerCertificate)
      e.kind = device ? ErrorKind::kDeviceRejected : ErrorKind::kClaimRejected;
    fail(std::move(e), out);
    return;
  }
  Error e = event.error;
  if (e.kind == ErrorKind::kNone) e.kind = ErrorKind::kNetwork;
  retry(std::move(e), device ? Step::kConnectDevice : Step::kConnectClaim, out);
}

void Provisioner::on_message(const Event& event, std::uint64_t now, std::vector<Action>& out) {
  const std::string cert = certificate_topic();
  const std::string reg = register_topic();
  std::string why;
  if (state_ == State::kSendRequest && event.topic == cert + "/accepted") {
    const bool server_keys = config_.key_source == KeySource::kServerKeys;
    auto r = core::decode_certificate_reply(config_.format, event.payload, server_keys, why);
    if (!r) {
      retry({ErrorKind::kBadReply, cert + "/accepted: " + why}, Step::kContinue, out);
      return;
    }
    if (server_keys) record_.private_key_pem = std::move(r->private_key);
    record_.certificate_pem = std::move(r->certificate_pem);
    record_.certificate_id = std::move(r->certificate_id);
    record_.ownership_token = std::move(r->ownership_token);
    record_.stage = Stage::kCertificateIssued;
    register_sent_ = token_resent_ = false;
    after_save_ = State::kRegister;
    save(out);
  } else if (state_ == State::kSendRequest && event.topic == cert + "/rejected") {
    auto r = core::decode_rejected_reply(config_.format, event.payload, why);
    if (!r) {
      retry({ErrorKind::kBadReply, cert + "/rejected: " + why}, Step::kContinue, out);
    } else if (retryable(*r)) {
      retry(rejection(ErrorKind::kCertificateRejected, "certificate request", *r), Step::kContinue,
            out);
    } else {
      fail(rejection(ErrorKind::kCertificateRejected, "certificate request", *r), out);
    }
  } else if (state_ == State::kRegister && event.topic == reg + "/accepted") {
    auto r = core::decode_register_reply(config_.format, event.payload, why);
    if (!r) {
      // Sending the token again gets "already used" if it did commit: handled below.
      retry({ErrorKind::kBadReply, reg + "/accepted: " + why}, Step::kContinue, out);
      return;
    }
    record_.thing_name = std::move(r->thing_name);
    record_.device_configuration = std::move(r->device_configuration);
    record_.ownership_token.clear();
    record_.stage = Stage::kRegistered;
    after_save_ = State::kDeviceConnect;
    save(out);
  } else if (state_ == State::kRegister && event.topic == reg + "/rejected") {
    auto r = core::decode_rejected_reply(config_.format, event.payload, why);
    if (!r) {
      retry({ErrorKind::kBadReply, reg + "/rejected: " + why}, Step::kContinue, out);
    } else if (retryable(*r)) {
      retry(rejection(ErrorKind::kRegistrationRejected, "RegisterThing", *r), Step::kContinue, out);
    } else if (r->error_code == "InvalidCertificateOwnershipToken" && token_resent_) {
      // This token went out before and its reply was lost: the registration may have
      // committed. Connecting as the expected thing with the new certificate tells.
      if (config_.expected_thing_name.empty()) {
        Error e = rejection(ErrorKind::kOutcomeUnknown, "RegisterThing", *r);
        e.message +=
            " (the reply to an earlier RegisterThing with this token was lost; set "
            "expected_thing_name so the device can prove its registration by "
            "connecting)";
        fail(std::move(e), out);
        return;
      }
      probing_ = true;
      connect(Role::kDevice, now, out);
    } else {
      fail(rejection(ErrorKind::kRegistrationRejected, "RegisterThing", *r), out);
    }
  }
}

}  // namespace fleetkey
