#include "storage/records.h"

#include <cstdio>

namespace fk::storage {

std::string_view to_string(CertificateStatus s) {
  switch (s) {
    case CertificateStatus::kActive:
      return "ACTIVE";
    case CertificateStatus::kInactive:
      return "INACTIVE";
    case CertificateStatus::kRevoked:
      return "REVOKED";
    case CertificateStatus::kPendingTransfer:
      return "PENDING_TRANSFER";
    case CertificateStatus::kRegisterInactive:
      return "REGISTER_INACTIVE";
    case CertificateStatus::kPendingActivation:
      return "PENDING_ACTIVATION";
  }
  return "INACTIVE";
}

Result<CertificateStatus> parse_certificate_status(std::string_view s) {
  for (auto st : {CertificateStatus::kActive, CertificateStatus::kInactive,
                  CertificateStatus::kRevoked, CertificateStatus::kPendingTransfer,
                  CertificateStatus::kRegisterInactive, CertificateStatus::kPendingActivation}) {
    if (to_string(st) == s) return st;
  }
  return invalid_request("unknown certificate status '" + std::string(s) +
                         "' (expected ACTIVE, INACTIVE, REVOKED, PENDING_TRANSFER, "
                         "REGISTER_INACTIVE or PENDING_ACTIVATION)");
}

std::string certificate_page_key(const CertificateRecord& c) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%020lld", static_cast<long long>(c.created_at));
  return std::string(buf) + ":" + c.certificate_id;
}

}  // namespace fk::storage
