#include "app/revocation.h"

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>

#include "base/clock.h"
#include "base/log.h"

namespace fk::app {

using storage::CertificateStatus;

namespace {

// A CRL is made again at least this often even without events (a node that missed one).
constexpr EpochSeconds kCrlMaxAge = 60;

struct Tombstone {
  EpochSeconds revoked_at = 0;
  EpochSeconds not_after = 0;
};

std::optional<Tombstone> parse_tombstone(const std::string& value) {
  auto j = nlohmann::json::parse(value, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  Tombstone t;
  t.revoked_at = j.value("revokedAt", EpochSeconds{0});
  t.not_after = j.value("notAfter", EpochSeconds{0});
  return t;
}

}  // namespace

Revocation::Revocation(crypto::CertificateAuthority& ca, registry::Registry& registry,
                       const Clock& clock)
    : ca_(ca), registry_(registry), clock_(clock) {}

void Revocation::on_registry_events(const std::vector<registry::RegistryEvent>& events) {
  using K = registry::RegistryEvent::Kind;
  for (const auto& e : events) {
    if (e.kind == K::kCertificateStatusChanged || e.kind == K::kCertificateDeleted) {
      dirty_ = true;
      return;
    }
  }
}

// This CA's revoked certificates that have not expired: REVOKED ones in the registry, and
// the tombstones of those deleted since.
Result<std::vector<crypto::RevokedCertificate>> Revocation::revoked_now() {
  const EpochSeconds now = clock_.now();
  const std::string& ours = ca_.issuing_certificate().certificate_id;
  std::vector<crypto::RevokedCertificate> out;
  FK_RETURN_IF_ERROR(registry_.read([&](registry::Txn& t) -> Status {
    storage::CertificateQuery q;
    q.status = CertificateStatus::kRevoked;
    q.ca_certificate_id = ours;
    q.page.limit = 1000;
    for (;;) {
      FK_ASSIGN_OR_RETURN(auto page, t.store().list_certificates(q));
      for (const auto& c : page) {
        if (c.not_after > now) out.push_back({c.serial_hex, c.updated_at});
      }
      if (page.size() < q.page.limit) break;
      q.page.after = storage::certificate_page_key(page.back());
    }
    const std::string prefix = registry::revoked_tombstone_key(ours, "");
    storage::Page page{"", 1000};
    for (;;) {
      FK_ASSIGN_OR_RETURN(auto settings, t.store().list_settings(prefix, page));
      for (const auto& [key, value] : settings) {
        auto tomb = parse_tombstone(value);
        if (tomb && tomb->not_after > now)
          out.push_back({key.substr(prefix.size()), tomb->revoked_at});
      }
      if (settings.size() < page.limit) break;
      page.after = settings.back().first;
    }
    return Status::ok();
  }));
  return out;
}

Result<std::string> Revocation::crl() {
  std::lock_guard<std::mutex> lock(mu_);
  const EpochSeconds now = clock_.now();
  // Cleared before the registry is read: an event arriving meanwhile marks it again.
  const bool dirty = dirty_.exchange(false);
  if (!dirty && !crl_.empty() && now - crl_made_at_ < kCrlMaxAge) return crl_;
  auto revoked = revoked_now();
  if (!revoked.is_ok()) {
    dirty_ = true;
    return revoked.status();
  }
  // CRL numbers only grow, across restarts and across nodes: the time in milliseconds.
  crl_number_ = std::max(crl_number_ + 1, static_cast<std::uint64_t>(epoch_ms()));
  auto made = ca_.make_crl(*revoked, now, now + kCrlValidity, crl_number_);
  if (!made.is_ok()) {
    dirty_ = true;
    return made.status();
  }
  crl_ = std::move(*made);
  crl_made_at_ = now;
  FK_LOG_DEBUG("ca.crl_made", {{"revoked", std::to_string(revoked->size())},
                               {"number", std::to_string(crl_number_)}});
  return crl_;
}

crypto::OcspAnswer Revocation::lookup(registry::Txn& txn, const std::string& ca_id,
                                      const std::string& serial_hex) {
  crypto::OcspAnswer answer;  // unknown
  // Certificates record the id of the CA that issued them (this CA's too).
  const std::string issuer = ca_id.empty() ? ca_.issuing_certificate().certificate_id : ca_id;
  storage::CertificateQuery q;
  q.serial_hex = serial_hex;
  q.ca_certificate_id = issuer;
  q.page.limit = 1;
  auto found = txn.store().list_certificates(q);
  if (!found.is_ok()) return answer;
  if (!found->empty()) {
    const auto& c = found->front();
    if (c.status == CertificateStatus::kRevoked) {
      answer.status = crypto::OcspAnswer::Status::kRevoked;
      answer.revoked_at = c.updated_at;
    } else {
      // ACTIVE, INACTIVE, PENDING_*: not revoked (INACTIVE is AWS's reversible state).
      answer.status = crypto::OcspAnswer::Status::kGood;
    }
    return answer;
  }
  auto tomb = txn.store().get_setting(registry::revoked_tombstone_key(issuer, serial_hex));
  if (tomb.is_ok() && *tomb) {
    if (auto t = parse_tombstone(**tomb)) {
      answer.status = crypto::OcspAnswer::Status::kRevoked;
      answer.revoked_at = t->revoked_at;
    }
  }
  return answer;
}

std::string Revocation::ocsp(std::string_view request_der) {
  const EpochSeconds now = clock_.now();
  crypto::OcspOptions options;
  options.now = now;
  options.next_update = now + kOcspValidity;
  std::string response;
  Status st = registry_.read([&](registry::Txn& t) -> Status {
    storage::Page page{"", 1000};
    for (;;) {
      FK_ASSIGN_OR_RETURN(auto cas, t.store().list_ca_certificates(page));
      for (const auto& c : cas) options.other_cas.emplace_back(c.certificate_id, c.pem);
      if (cas.size() < page.limit) break;
      page.after = cas.back().certificate_id;
    }
    response = ca_.answer_ocsp(
        request_der,
        [&](const std::string& ca_id, const std::string& serial) {
          return lookup(t, ca_id, serial);
        },
        options);
    return Status::ok();
  });
  if (!st.is_ok()) {
    log::warn("ca.ocsp_failed", {{"error", st.message()}});
    return {};
  }
  return response;
}

}  // namespace fk::app
