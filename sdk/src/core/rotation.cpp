#include "fleetkey/rotation.h"

#include <utility>

#include "core/messages.h"
#include "core/random.h"

namespace fleetkey {
namespace {

Action make(Action::Type type) {
  Action a;
  a.type = type;
  return a;
}

Action timer(std::uint32_t ms) {
  Action a = make(Action::Type::kStartTimer);
  a.delay_ms = ms;
  return a;
}

Action connect_as(Role role) {
  Action a = make(Action::Type::kConnect);
  a.role = role;
  return a;
}

bool retryable(const core::RejectedReply& r) {
  return r.status_code >= 500 || r.status_code == 429 || r.error_code == "Throttled";
}

}  // namespace

const char* to_string(RotationStage stage) {
  switch (stage) {
    case RotationStage::kNone:
      return "none";
    case RotationStage::kKeyReady:
      return "rotation-key-ready";
    case RotationStage::kIssued:
      return "rotation-issued";
  }
  return "?";
}

const char* to_string(RotationState state) {
  switch (state) {
    case RotationState::kIdle:
      return "rotation-idle";
    case RotationState::kGenerateKeys:
      return "rotation-generate-keys";
    case RotationState::kSubscribe:
      return "rotation-subscribe";
    case RotationState::kSendRequest:
      return "rotation-send-request";
    case RotationState::kBackoff:
      return "rotation-backoff";
    case RotationState::kSwitch:
      return "rotation-switch";
    case RotationState::kFallback:
      return "rotation-fallback";
    case RotationState::kComplete:
      return "rotation-complete";
    case RotationState::kFailed:
      return "rotation-failed";
  }
  return "?";
}

bool rotation_due(const RotationConfig& config, std::int64_t not_after, std::int64_t now) {
  return not_after - now <= config.renew_before_seconds;
}

Rotator::Rotator(RotationConfig config, RotationRecord saved)
    : config_(std::move(config)),
      record_(std::move(saved)),
      rng_(config_.jitter_seed ^ 0xD1B54A32D192ED03ULL) {}

std::string Rotator::request_topic() const {
  return std::string("$fleetkey/certificates/rotate/") +
         (config_.format == PayloadFormat::kJson ? "json" : "cbor");
}

std::vector<Action> Rotator::start(std::uint64_t now, const std::string& current_certificate_pem,
                                   const std::string& current_private_key_pem, bool connected) {
  std::vector<Action> out;
  connected_ = connected;
  attempts_ = 0;
  error_ = {};
  switch (record_.stage) {
    case RotationStage::kNone:
      record_ = {};
      record_.previous_certificate_pem = current_certificate_pem;
      record_.previous_private_key_pem = current_private_key_pem;
      state_ = RotationState::kGenerateKeys;
      {
        Action a = make(Action::Type::kGenerateKey);
        a.key_type = config_.key_type;
        out.push_back(std::move(a));
      }
      break;
    case RotationStage::kKeyReady:
      subscribe(out);  // the saved CSR again: the server answers with the same certificate
      break;
    case RotationStage::kIssued:
      state_ = RotationState::kSwitch;
      out.push_back(connect_as(Role::kNewDevice));
      break;
  }
  (void)now;
  return out;
}

void Rotator::subscribe(std::vector<Action>& out) {
  state_ = RotationState::kSubscribe;
  if (!connected_) return;  // kConnected continues
  Action a = make(Action::Type::kSubscribe);
  a.topics = {request_topic() + "/accepted", request_topic() + "/rejected"};
  out.push_back(std::move(a));
}

void Rotator::publish(std::uint64_t now, std::vector<Action>& out) {
  (void)now;
  state_ = RotationState::kSendRequest;
  Action a = make(Action::Type::kPublish);
  a.topics = {request_topic()};
  a.payload = core::encode_csr_request(config_.format, record_.csr_pem);
  out.push_back(std::move(a));
  out.push_back(timer(config_.response_timeout_ms));
}

void Rotator::retry(Error error, std::vector<Action>& out) {
  ++attempts_;
  error_ = std::move(error);
  if (config_.retry.max_attempts != 0 && attempts_ > config_.retry.max_attempts) {
    give_up(Error{ErrorKind::kGaveUp, "gave up after " + std::to_string(attempts_ - 1) +
                                          " attempts: " + error_.message},
            false, out);
    return;
  }
  state_ = RotationState::kBackoff;
  out.push_back(timer(backoff_delay_ms(config_.retry, attempts_, core::splitmix64(rng_))));
}

void Rotator::save(std::optional<RotationState> then, std::vector<Action>& out) {
  after_save_ = then;
  out.push_back(make(Action::Type::kSave));
}

// Stops. With `drop_record` the rotation is forgotten (saved as none) first: a refusal that a
// retry cannot change should not be asked again at every boot.
void Rotator::give_up(Error error, bool drop_record, std::vector<Action>& out) {
  out.push_back(make(Action::Type::kCancelTimer));
  if (drop_record && record_.stage != RotationStage::kNone) {
    const std::string cert = record_.previous_certificate_pem;
    const std::string key = record_.previous_private_key_pem;
    record_ = {};
    record_.previous_certificate_pem = cert;
    record_.previous_private_key_pem = key;
    fail_after_save_ = std::move(error);
    save(RotationState::kFailed, out);
    return;
  }
  error_ = std::move(error);
  state_ = RotationState::kFailed;
  Action a = make(Action::Type::kFail);
  out.push_back(std::move(a));
}

void Rotator::after_save(std::uint64_t now, std::vector<Action>& out) {
  auto then = after_save_;
  after_save_.reset();
  if (!then) return;
  switch (*then) {
    case RotationState::kSubscribe:
      subscribe(out);
      break;
    case RotationState::kSwitch:
      state_ = RotationState::kSwitch;
      out.push_back(make(Action::Type::kCancelTimer));
      out.push_back(connect_as(Role::kNewDevice));
      break;
    case RotationState::kFailed: {
      error_ = fail_after_save_.value_or(Error{});
      fail_after_save_.reset();
      state_ = RotationState::kFailed;
      out.push_back(make(Action::Type::kFail));
      break;
    }
    default:
      (void)now;
      break;
  }
}

std::vector<Action> Rotator::on(const Event& e, std::uint64_t now) {
  std::vector<Action> out;
  using T = Event::Type;
  if (state_ == RotationState::kComplete || state_ == RotationState::kFailed) return out;
  switch (e.type) {
    case T::kKeyGenerated:
      if (state_ != RotationState::kGenerateKeys) break;
      if (!e.ok) {
        give_up(Error{ErrorKind::kKeyGeneration, e.error.message}, false, out);
        break;
      }
      record_.stage = RotationStage::kKeyReady;
      record_.private_key_pem = e.private_key_pem;
      record_.csr_pem = e.csr_pem;
      save(RotationState::kSubscribe, out);
      break;
    case T::kSaved:
      if (!e.ok) {
        give_up(Error{ErrorKind::kStorage, "the rotation record was not saved: " + e.error.message},
                false, out);
        break;
      }
      after_save(now, out);
      break;
    case T::kConnected:
      connected_ = true;
      if (state_ == RotationState::kSubscribe || state_ == RotationState::kSendRequest) {
        subscribe(out);  // the request is sent again after the SUBACK
      } else if (state_ == RotationState::kSwitch) {
        // The new certificate works: it becomes the device's identity.
        state_ = RotationState::kComplete;
        out.push_back(make(Action::Type::kComplete));
      } else if (state_ == RotationState::kFallback) {
        give_up(Error{ErrorKind::kDeviceRejected,
                      "the new certificate " + record_.certificate_id +
                          " was refused; the device is back on its previous certificate"},
                true, out);
      }
      break;
    case T::kConnectFailed:
      connected_ = false;
      if (!e.permanent) break;  // the platform reconnects by itself
      if (state_ == RotationState::kSwitch) {
        state_ = RotationState::kFallback;
        out.push_back(connect_as(Role::kDevice));
      } else if (state_ == RotationState::kFallback) {
        give_up(Error{ErrorKind::kDeviceRejected,
                      "both the new and the previous certificate were refused: " + e.error.message},
                false, out);
      }
      break;
    case T::kDisconnected:
      connected_ = false;
      if (state_ == RotationState::kSendRequest) {
        out.push_back(make(Action::Type::kCancelTimer));
        state_ = RotationState::kSubscribe;  // asked again once connected
      }
      break;
    case T::kSubscribed:
      if (state_ != RotationState::kSubscribe) break;
      if (!e.ok) {
        give_up(Error{ErrorKind::kNotAuthorized,
                      "the rotation reply topics were refused (the policy must allow "
                      "subscribing to $fleetkey/certificates/rotate/*)"},
                true, out);
        break;
      }
      publish(now, out);
      break;
    case T::kPublishFailed:
      if (state_ == RotationState::kSendRequest)
        retry(Error{ErrorKind::kNetwork, "the rotation request was not sent"}, out);
      break;
    case T::kMessage:
      on_message(e, now, out);
      break;
    case T::kTimer:
      if (state_ == RotationState::kSendRequest) {
        retry(Error{ErrorKind::kTimeout, "no reply to the rotation request"}, out);
      } else if (state_ == RotationState::kBackoff) {
        if (connected_) {
          publish(now, out);
        } else {
          state_ = RotationState::kSubscribe;
        }
      }
      break;
  }
  return out;
}

void Rotator::on_message(const Event& e, std::uint64_t now, std::vector<Action>& out) {
  if (state_ != RotationState::kSendRequest) return;
  std::string why;
  if (e.topic == request_topic() + "/accepted") {
    auto reply = core::decode_rotation_reply(config_.format, e.payload, why);
    if (!reply) {
      retry(Error{ErrorKind::kBadReply, "rotation reply: " + why}, out);
      return;
    }
    out.push_back(make(Action::Type::kCancelTimer));
    record_.stage = RotationStage::kIssued;
    record_.certificate_id = reply->certificate_id;
    record_.certificate_pem = reply->certificate_pem;
    record_.previous_deactivates_at = reply->previous_deactivates_at;
    save(RotationState::kSwitch, out);
    return;
  }
  if (e.topic == request_topic() + "/rejected") {
    auto r = core::decode_rejected_reply(config_.format, e.payload, why);
    if (!r) {
      retry(Error{ErrorKind::kBadReply, "rotation rejection: " + why}, out);
      return;
    }
    Error err{ErrorKind::kRotationRejected,
              "rotation rejected: " + std::to_string(r->status_code) + " " + r->error_code +
                  (r->error_message.empty() ? "" : ": " + r->error_message),
              r->status_code, r->error_code};
    out.push_back(make(Action::Type::kCancelTimer));
    if (retryable(*r)) {
      retry(std::move(err), out);
      return;
    }
    give_up(std::move(err), true, out);
  }
  (void)now;
}

}  // namespace fleetkey
