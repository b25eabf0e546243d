// CertificateAuthority: issues device certificates from CSRs or with keys it generates.
//
// The issuing CA signs; the root CA is what devices and servers trust (fleetkey's
// AmazonRootCA1.pem). The CA does not record what it issues: the registry does, in the same
// transaction as the rest of a change.
//
// Thread-safety: all methods may be called concurrently (signing runs on a blocking pool,
// never on an I/O thread).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "crypto/types.h"

namespace fk::crypto {

struct IssueOptions {
  // notAfter; when unset the CA's configured lifetime applies (AWS: 2049-12-31T23:59:59Z).
  std::optional<EpochSeconds> not_after;
  // Subject CN for certificates with server-made keys (CSR certificates keep the CSR subject).
  std::string common_name = "fleetkey IoT Certificate";
};

// A certificate on a CRL: its serial and when it was revoked.
struct RevokedCertificate {
  std::string serial_hex;  // lowercase hex, as CertificateInfo::serial_hex
  EpochSeconds revoked_at = 0;
};

// What the registry says of one certificate an OCSP request asks about.
struct OcspAnswer {
  enum class Status { kGood, kRevoked, kUnknown } status = Status::kUnknown;
  EpochSeconds revoked_at = 0;
};

// Looks a certificate up by its issuer ("" = this CA, else the id of a registered CA) and its
// serial (lowercase hex).
using OcspLookup =
    std::function<OcspAnswer(const std::string& ca_certificate_id, const std::string& serial_hex)>;

struct OcspOptions {
  EpochSeconds now = 0;
  EpochSeconds next_update = 0;  // 0: none
  // Registered CAs (id, PEM) whose certificates are answered too, by their registry status.
  std::vector<std::pair<std::string, std::string>> other_cas;
};

// At most this many certificates in one OCSP request (more: malformedRequest).
inline constexpr int kMaxOcspQuestions = 16;
// At most this many bytes of OCSP request.
inline constexpr std::size_t kMaxOcspRequestBytes = 4096;

struct IssuedWithKey {
  CertificateInfo certificate;
  KeyPair keys;
};

class CertificateAuthority {
 public:
  virtual ~CertificateAuthority() = default;

  // Validates the CSR (see parse_csr) and signs a client-auth certificate for its key.
  virtual Result<CertificateInfo> issue_from_csr(std::string_view csr_pem,
                                                 const IssueOptions& options) = 0;

  // Generates a key pair (RSA 2048 by default, as AWS) and signs a certificate for it.
  virtual Result<IssuedWithKey> issue_with_new_key(const KeySpec& key,
                                                   const IssueOptions& options) = 0;

  // A CRL (DER, v2, with a CRL number and the authority key id) signed by the issuing CA.
  virtual Result<std::string> make_crl(const std::vector<RevokedCertificate>& revoked,
                                       EpochSeconds this_update, EpochSeconds next_update,
                                       std::uint64_t number) = 0;

  // The OCSP response (DER, RFC 6960) to a request (DER), signed by the issuing CA: for
  // certificates it issued as their issuer, for those of `options.other_cas` as a responder
  // the client trusts by configuration. A request that does not parse, asks nothing or too
  // much gets malformedRequest; a certificate of an issuer not known here, "unknown".
  virtual std::string answer_ocsp(std::string_view request_der, const OcspLookup& lookup,
                                  const OcspOptions& options) = 0;

  virtual const CertificateInfo& root_certificate() const = 0;
  virtual const CertificateInfo& issuing_certificate() const = 0;
};

}  // namespace fk::crypto
