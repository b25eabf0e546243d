// OpensslCertificateAuthority: fleetkey's own two-level CA kept as PEM files in a folder.
//
//   <dir>/root-ca.pem       root CA certificate: what devices trust (our AmazonRootCA1.pem)
//   <dir>/root-ca.key       root CA private key (0600; used only to sign the issuing CA)
//   <dir>/issuing-ca.pem    issuing CA certificate, signed by the root
//   <dir>/issuing-ca.key    issuing CA private key (0600): signs device and server certificates
//   <dir>/server.pem        TLS server certificate for the listeners, followed by issuing-ca.pem
//   <dir>/server.key        its private key (0600)
//
// load_or_create() creates whatever is missing on first start and reissues the server
// certificate when the configured names change. Thread-safety: see CertificateAuthority.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "crypto/certificate_authority.h"

namespace fk::crypto {

struct CaConfig {
  KeySpec ca_key = KeySpec::ec_p256();  // root, issuing and server keys
  std::string organization = "fleetkey";
  // Extra DNS names or IP addresses for the server certificate, beyond localhost, 127.0.0.1, ::1.
  std::vector<std::string> server_names;
  // Device certificate lifetime in days; 0 = AWS's fixed notAfter 2049-12-31T23:59:59Z.
  int device_validity_days = 0;
  // Put into new device certificates when set: where the issuing CA's CRL is published (CRL
  // distribution point) and where OCSP is answered (authority information access).
  std::string crl_url;
  std::string ocsp_url;
};

struct CaPaths {
  std::string root_cert, root_key, issuing_cert, issuing_key, server_cert, server_key;
  static CaPaths in(const std::string& dir);
};

class OpensslCertificateAuthority final : public CertificateAuthority {
 public:
  static Result<std::unique_ptr<OpensslCertificateAuthority>> load_or_create(const std::string& dir,
                                                                             const CaConfig& config,
                                                                             const Clock& clock);

  ~OpensslCertificateAuthority() override;

  Result<CertificateInfo> issue_from_csr(std::string_view csr_pem,
                                         const IssueOptions& options) override;
  Result<IssuedWithKey> issue_with_new_key(const KeySpec& key,
                                           const IssueOptions& options) override;
  Result<std::string> make_crl(const std::vector<RevokedCertificate>& revoked,
                               EpochSeconds this_update, EpochSeconds next_update,
                               std::uint64_t number) override;
  std::string answer_ocsp(std::string_view request_der, const OcspLookup& lookup,
                          const OcspOptions& options) override;
  const CertificateInfo& root_certificate() const override { return root_info_; }
  const CertificateInfo& issuing_certificate() const override { return issuing_info_; }

  const CaPaths& paths() const { return paths_; }

 private:
  struct Keys;
  OpensslCertificateAuthority(CaPaths paths, CaConfig config, const Clock& clock);
  EpochSeconds device_not_after(const IssueOptions& options, EpochSeconds now) const;

  CaPaths paths_;
  CaConfig config_;
  const Clock& clock_;
  std::unique_ptr<Keys> keys_;  // OpenSSL objects, kept out of this header
  CertificateInfo root_info_;
  CertificateInfo issuing_info_;
};

}  // namespace fk::crypto
