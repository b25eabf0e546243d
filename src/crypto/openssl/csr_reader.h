// Fast CSR reading for OpenSSL 3.0.
//
// OpenSSL 3.0 decodes every SubjectPublicKeyInfo it parses (PEM_read_bio_X509_REQ,
// X509_set_pubkey, d2i_PUBKEY) through OSSL_DECODER/OSSL_ENCODER contexts that it builds anew
// each time: about 200 us per key and several global read locks, which made CSR parsing 90%
// of a certificate's issuance cost and stopped it from scaling across cores (profile in
// docs/performance.md). Later OpenSSL releases cache these contexts; Debian 12 ships 3.0.
//
// CsrReader reads the same PKCS#10 structure with OpenSSL's own ASN.1 templates, keeps the
// SubjectPublicKeyInfo as raw fields, imports the key with EVP_PKEY_fromdata (no decoder),
// verifies the self-signature over the original DER, and can copy the raw SubjectPublicKeyInfo
// into a certificate (no encoder). Private to crypto/openssl.
#pragma once

#include <memory>
#include <string_view>

#include "crypto/openssl/ossl.h"
#include "crypto/types.h"

namespace fk::crypto::ossl {

class ParsedCsr {
 public:
  ~ParsedCsr();
  ParsedCsr(ParsedCsr&&) noexcept;
  ParsedCsr& operator=(ParsedCsr&&) noexcept;

  const CsrInfo& info() const { return info_; }
  // The CSR's subject (owned by this object).
  X509_NAME* subject() const;
  // Sets `cert`'s SubjectPublicKeyInfo to the CSR's, byte for byte.
  Status copy_public_key_to(X509* cert) const;

 private:
  friend Result<ParsedCsr> read_csr(std::string_view pem);
  struct Raw;
  ParsedCsr();
  std::unique_ptr<Raw> raw_;
  CsrInfo info_;
};

// Parses a PEM CSR and checks what crypto::parse_csr promises: size, supported key (RSA
// 2048..8192, EC P-256/P-384/P-521) and a self-signature that verifies.
Result<ParsedCsr> read_csr(std::string_view pem);

// Sets `cert`'s public key from `key` without OpenSSL 3.0's encoder for EC keys.
Status set_public_key(X509* cert, EVP_PKEY* key);

}  // namespace fk::crypto::ossl
