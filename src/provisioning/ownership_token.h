// Certificate ownership tokens: what CreateKeysAndCertificate / CreateCertificateFromCsr hand
// the device, and RegisterThing takes back.
//
// A token is self-verifying: base64url(claims) "." base64url(HMAC-SHA256(key, claims)), where
// the claims bind the new certificate, the claim certificate that asked, an expiry (1 hour, as
// AWS) and a random nonce. Any fleetkeyd with the same key (kept in the registry) can check
// one without shared memory. That it is used only once is the registry's part (RegisterThing
// records the certificate as claimed in the same transaction).
//
// Thread-safety: immutable after construction; verify() and issue() may run concurrently.
#pragma once

#include <string>
#include <string_view>

#include "base/clock.h"
#include "base/status.h"

namespace fk::provisioning {

inline constexpr EpochSeconds kOwnershipTokenLifetime = 3600;

struct OwnershipClaims {
  std::string certificate_id;        // the certificate just made
  std::string claim_certificate_id;  // the certificate of the connection that asked
  EpochSeconds expires_at = 0;
  std::string nonce;
};

class OwnershipTokens {
 public:
  explicit OwnershipTokens(std::string key);  // at least 32 random bytes

  std::string issue(const OwnershipClaims& claims) const;
  // The claims of a genuine, unexpired token presented by `claim_certificate_id`. Failures
  // (InvalidRequest) say which: empty, malformed, forged, expired, another claim certificate.
  Result<OwnershipClaims> verify(std::string_view token, std::string_view claim_certificate_id,
                                 EpochSeconds now) const;

 private:
  std::string key_;
};

}  // namespace fk::provisioning
