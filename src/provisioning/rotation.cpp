#include "provisioning/rotation.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "base/strings.h"
#include "crypto/x509.h"
#include "registry/effective_policies.h"

namespace fk::provisioning {
namespace {

using storage::CertificateStatus;

// The rotation's state, in registry settings (so it commits with the certificates):
// rotation.to/<old id> = {"new": <new id>, "key": <the CSR key's SHA-256>, "until": <epoch s>}
// rotation.from/<new id> = <old id>. Deleted when the rotation ends (an empty value, as older
// code might leave, is no rotation either).
constexpr std::string_view kTo = "rotation.to/";
constexpr std::string_view kFrom = "rotation.from/";

struct Pending {
  std::string new_id;
  std::string key;
  EpochSeconds until = 0;
};

std::string key_of(std::string_view prefix, std::string_view id) {
  return std::string(prefix) + std::string(id);
}

Result<std::optional<Pending>> pending_of(registry::Txn& t, std::string_view old_id) {
  FK_ASSIGN_OR_RETURN(auto v, t.store().get_setting(key_of(kTo, old_id)));
  if (!v || v->empty()) return std::optional<Pending>();
  const auto j = nlohmann::json::parse(*v, nullptr, false);
  if (!j.is_object()) return std::optional<Pending>();
  return std::optional<Pending>(
      Pending{j.value("new", ""), j.value("key", ""), j.value("until", EpochSeconds{0})});
}

Status clear(registry::Txn& t, std::string_view old_id, std::string_view new_id) {
  FK_RETURN_IF_ERROR(t.store().delete_setting(key_of(kTo, old_id)));
  return t.store().delete_setting(key_of(kFrom, new_id));
}

// Takes back a new certificate that was never used (replaced by another request): its things
// and policies detached, then deleted, in the caller's transaction.
Status retire_unused(registry::Txn& t, const registry::ArnScope& arns, const std::string& id) {
  FK_ASSIGN_OR_RETURN(auto cert, t.store().get_certificate(id));
  if (!cert) return Status::ok();
  const std::string arn = arns.certificate(id);
  FK_ASSIGN_OR_RETURN(auto things, t.store().list_principal_things(arn, storage::Page{}));
  for (const auto& thing : things) FK_RETURN_IF_ERROR(t.detach_thing_principal(thing, arn));
  if (cert->status == CertificateStatus::kActive)
    FK_RETURN_IF_ERROR(t.update_certificate_status(id, CertificateStatus::kInactive));
  return t.delete_certificate(id, /*force=*/true);
}

// The old certificate's rotation ends: it becomes INACTIVE (if still ACTIVE).
Status finish(registry::Txn& t, std::string_view old_id, std::string_view new_id) {
  FK_ASSIGN_OR_RETURN(auto old, t.store().get_certificate(old_id));
  if (old && old->status == CertificateStatus::kActive)
    FK_RETURN_IF_ERROR(t.update_certificate_status(old_id, CertificateStatus::kInactive));
  return clear(t, old_id, new_id);
}

std::string status_text(CertificateStatus s) {
  return std::string(storage::to_string(s));
}

}  // namespace

CertificateRotation::CertificateRotation(registry::Registry& registry, const Clock& clock,
                                         RotationConfig config)
    : registry_(registry), clock_(clock), config_(config) {}

void CertificateRotation::record(const Requester& who, const char* event, std::string reason,
                                 std::string detail) const {
  if (config_.events == nullptr) return;
  DeviceEvent e;
  e.certificate_id = who.claim_certificate_id;
  e.client_id = who.client_id;
  e.event = event;
  e.reason = std::move(reason);
  e.detail = std::move(detail);
  config_.events->record(std::move(e));
}

Reply CertificateRotation::reject(Format format, const Requester* who, int status, std::string code,
                                  std::string message) const {
  if (who != nullptr)
    record(*who, "rotation_rejected", code,
           "rotation rejected (" + std::to_string(status) + "): " + message);
  Reply r;
  r.topic = rotation_topic(format) + "/rejected";
  r.payload = encode(format, Rejection{status, std::move(code), std::move(message)});
  return r;
}

Reply CertificateRotation::throttled(Format format, std::string why) const {
  return reject(format, nullptr, 429, "Throttled", std::move(why));
}

std::optional<Reply> CertificateRotation::admit(Format format, const Requester& who) {
  // The hour's requests at once at most, then evenly spread.
  if (rate_.take(who.claim_certificate_id, config_.max_requests_per_hour / 3600.0,
                 config_.max_requests_per_hour))
    return std::nullopt;
  log::warn("rotation.throttled",
            {{"certificate", who.claim_certificate_id}, {"client", who.client_id}});
  char rate[32];
  std::snprintf(rate, sizeof rate, "%g", config_.max_requests_per_hour);
  return reject(
      format, &who, 429, "Throttled",
      std::string("more than ") + rate + " rotation requests per hour for this certificate");
}

Reply CertificateRotation::handle_admitted(Format format, std::string_view payload,
                                           const Requester& who) {
  const std::string& id = who.claim_certificate_id;
  auto request = decode_csr_request(format, payload);
  if (!request.is_ok())
    return reject(format, &who, 400, "InvalidPayload", request.status().message());
  // Who may rotate: the certificate's policies (and its thing's groups'), like every action.
  policy::Verdict verdict;
  Status st = registry_.read([&](registry::Txn& t) -> Status {
    FK_ASSIGN_OR_RETURN(auto effective, registry::load_effective_policies(
                                            t, registry_.config().arns, id, who.client_id));
    verdict = policy::evaluate(effective.policies, kRotateAction,
                               registry_.config().arns.certificate(id), effective.context);
    return Status::ok();
  });
  if (!st.is_ok()) return reject(format, &who, 500, "InternalError", st.message());
  if (!verdict.allowed()) {
    log::warn("rotation.refused",
              {{"certificate", id}, {"client", who.client_id}, {"reason", verdict.explain()}});
    return reject(format, &who, 403, "AccessDenied",
                  std::string(kRotateAction) + " on cert/" + id + ": " + verdict.explain());
  }
  auto rotated = rotate(id, request->certificate_signing_request);
  if (!rotated.is_ok()) {
    const Status& e = rotated.status();
    switch (e.code()) {
      case ErrorCode::kCertificateValidation:
        return reject(format, &who, 400, "InvalidCertificateSigningRequest", e.message());
      case ErrorCode::kCertificateState:
        return reject(format, &who, 409, "CertificateStateConflict", e.message());
      case ErrorCode::kInvalidRequest:
        return reject(format, &who, 400, "InvalidRequest", e.message());
      default:
        return reject(format, &who, 500, "InternalError", e.message());
    }
  }
  record(who, "rotation_accepted", rotated->replayed ? "replayed" : "issued",
         "new certificate " + rotated->certificate.certificate_id + "; this one becomes INACTIVE " +
             "at the new one's first connect or at " +
             format_utc(rotated->previous_deactivates_at));
  Reply r;
  r.topic = rotation_topic(format) + "/accepted";
  r.accepted = true;
  r.payload =
      encode(format, RotationAccepted{rotated->certificate.certificate_id, rotated->certificate.pem,
                                      id, rotated->previous_deactivates_at});
  return r;
}

Result<Rotated> CertificateRotation::rotate(std::string_view old_id, std::string_view csr_pem) {
  FK_RETURN_IF_ERROR(crypto::parse_csr(csr_pem).status());  // well-formed and signed
  FK_ASSIGN_OR_RETURN(std::string key, crypto::public_key_sha256(csr_pem));
  const auto& arns = registry_.config().arns;
  Rotated out;
  out.previous_certificate_id = std::string(old_id);

  // Checked before anything is signed; checked again in the write (things change meanwhile).
  auto check = [&](registry::Txn& t, std::optional<Pending>& pending) -> Status {
    FK_ASSIGN_OR_RETURN(auto old, t.describe_certificate(old_id));
    if (old.status != CertificateStatus::kActive)
      return Status(ErrorCode::kCertificateState, "certificate " + std::string(old_id) + " is " +
                                                      status_text(old.status) +
                                                      ": only an ACTIVE certificate rotates");
    FK_ASSIGN_OR_RETURN(std::string old_key, crypto::public_key_sha256(old.pem));
    if (old_key == key)
      return invalid_request(
          "the CSR is for the current certificate's key: a rotation needs a new key");
    FK_ASSIGN_OR_RETURN(auto from, t.store().get_setting(key_of(kFrom, old_id)));
    if (from && !from->empty())
      return Status(ErrorCode::kCertificateState,
                    "certificate " + std::string(old_id) +
                        " is the new certificate of a rotation from " + *from +
                        " that has not completed: connect with it first");
    FK_ASSIGN_OR_RETURN(pending, pending_of(t, old_id));
    if (pending && pending->key == key) {  // the same request again: the same answer
      FK_ASSIGN_OR_RETURN(out.certificate, t.describe_certificate(pending->new_id));
      out.previous_deactivates_at = pending->until;
      out.replayed = true;
    }
    return Status::ok();
  };
  std::optional<Pending> pending;
  FK_RETURN_IF_ERROR(registry_.read([&](registry::Txn& t) { return check(t, pending); }));
  if (out.replayed) return out;

  FK_ASSIGN_OR_RETURN(crypto::CertificateInfo info, registry_.ca().issue_from_csr(csr_pem, {}));
  const EpochSeconds until = clock_.now() + config_.overlap_seconds;
  FK_RETURN_IF_ERROR(registry_.write([&](registry::Txn& t) -> Status {
    FK_RETURN_IF_ERROR(check(t, pending));
    if (out.replayed) return Status::ok();  // a racing request with this CSR won
    if (pending) FK_RETURN_IF_ERROR(retire_unused(t, arns, pending->new_id));
    FK_ASSIGN_OR_RETURN(
        out.certificate,
        t.record_certificate({info, registry_.ca().issuing_certificate().certificate_id,
                              CertificateStatus::kActive}));
    const std::string old_arn = arns.certificate(old_id);
    const std::string new_arn = arns.certificate(out.certificate.certificate_id);
    FK_ASSIGN_OR_RETURN(auto things, t.store().list_principal_things(old_arn, storage::Page{}));
    for (const auto& thing : things) FK_RETURN_IF_ERROR(t.attach_thing_principal(thing, new_arn));
    FK_ASSIGN_OR_RETURN(auto policies, t.store().list_target_policies(old_arn, storage::Page{}));
    for (const auto& policy : policies) FK_RETURN_IF_ERROR(t.attach_policy(policy, new_arn));
    const nlohmann::json state = {
        {"new", out.certificate.certificate_id}, {"key", key}, {"until", until}};
    FK_RETURN_IF_ERROR(t.store().put_setting(key_of(kTo, old_id), state.dump()));
    FK_RETURN_IF_ERROR(
        t.store().put_setting(key_of(kFrom, out.certificate.certificate_id), std::string(old_id)));
    out.previous_deactivates_at = until;
    return Status::ok();
  }));
  if (!out.replayed)
    FK_LOG_INFO("rotation.issued", {{"certificate", out.certificate.certificate_id},
                                    {"previous_certificate", std::string(old_id)},
                                    {"previous_until", std::to_string(until)}});
  return out;
}

Result<bool> CertificateRotation::completes_rotation(registry::Txn& txn,
                                                     std::string_view certificate_id) {
  FK_ASSIGN_OR_RETURN(auto from, txn.store().get_setting(key_of(kFrom, certificate_id)));
  return from && !from->empty();
}

Status CertificateRotation::complete(std::string_view new_id) {
  std::string old_id;
  FK_RETURN_IF_ERROR(registry_.write([&](registry::Txn& t) -> Status {
    FK_ASSIGN_OR_RETURN(auto from, t.store().get_setting(key_of(kFrom, new_id)));
    if (!from || from->empty()) return Status::ok();
    old_id = *from;
    FK_ASSIGN_OR_RETURN(auto pending, pending_of(t, old_id));
    if (!pending || pending->new_id != new_id) {  // replaced meanwhile: only this side goes
      old_id.clear();
      return t.store().delete_setting(key_of(kFrom, new_id));
    }
    return finish(t, old_id, new_id);
  }));
  if (!old_id.empty())
    FK_LOG_INFO("rotation.completed",
                {{"certificate", std::string(new_id)}, {"previous_certificate", old_id}});
  return Status::ok();
}

Result<std::size_t> CertificateRotation::sweep() {
  const EpochSeconds now = clock_.now();
  std::vector<std::pair<std::string, std::string>> due;  // old id, new id
  FK_RETURN_IF_ERROR(registry_.read([&](registry::Txn& t) -> Status {
    FK_ASSIGN_OR_RETURN(auto all, t.store().list_settings(kTo, storage::Page{}));
    for (const auto& [k, v] : all) {
      if (v.empty()) continue;
      const auto j = nlohmann::json::parse(v, nullptr, false);
      if (!j.is_object() || j.value("until", EpochSeconds{0}) <= now)
        due.emplace_back(k.substr(kTo.size()), j.is_object() ? j.value("new", "") : "");
    }
    return Status::ok();
  }));
  std::size_t done = 0;
  for (const auto& [old_id, new_id] : due) {
    Status st = registry_.write([&](registry::Txn& t) -> Status {
      FK_ASSIGN_OR_RETURN(auto pending, pending_of(t, old_id));
      if (!pending || pending->until > now) return Status::ok();  // completed or replaced
      return finish(t, old_id, pending->new_id);
    });
    if (st.is_ok()) {
      ++done;
      FK_LOG_INFO("rotation.window_ended",
                  {{"previous_certificate", old_id}, {"certificate", new_id}});
    }
  }
  return done;
}

Result<std::string> CertificateRotation::pending_from(std::string_view old_id) {
  std::string out;
  FK_RETURN_IF_ERROR(registry_.read([&](registry::Txn& t) -> Status {
    FK_ASSIGN_OR_RETURN(auto pending, pending_of(t, old_id));
    if (pending) out = pending->new_id;
    return Status::ok();
  }));
  return out;
}

}  // namespace fk::provisioning
