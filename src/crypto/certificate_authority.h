// CertificateAuthority: issues device certificates from CSRs or with keys it generates.
//
// The issuing CA signs; the root CA is what devices and servers trust (fleetkey's
// AmazonRootCA1.pem). The CA does not record what it issues: the registry does, in the same
// transaction as the rest of a change.
//
// Thread-safety: all methods may be called concurrently (signing runs on a blocking pool,
// never on an I/O thread).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "crypto/types.h"

namespace fk::crypto {

struct IssueOptions {
  // notAfter; when unset the CA's configured lifetime applies (AWS: 2049-12-31T23:59:59Z).
  std::optional<EpochSeconds> not_after;
  // Subject CN for certificates with server-made keys (CSR certificates keep the CSR subject).
  std::string common_name = "fleetkey IoT Certificate";
};

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

  virtual const CertificateInfo& root_certificate() const = 0;
  virtual const CertificateInfo& issuing_certificate() const = 0;
};

}  // namespace fk::crypto
