// RAII wrappers and helpers shared by the OpenSSL backend. Private to crypto/openssl/ (and
// net/tls later): nothing outside these folders includes OpenSSL headers.
#pragma once

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>
#include <string_view>

#include "crypto/types.h"

namespace fk::crypto::ossl {

struct BioFree {
  void operator()(BIO* p) const { BIO_free_all(p); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct ReqFree {
  void operator()(X509_REQ* p) const { X509_REQ_free(p); }
};
struct NameFree {
  void operator()(X509_NAME* p) const { X509_NAME_free(p); }
};

using Bio = std::unique_ptr<BIO, BioFree>;
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using Cert = std::unique_ptr<X509, X509Free>;
using Req = std::unique_ptr<X509_REQ, ReqFree>;
using Name = std::unique_ptr<X509_NAME, NameFree>;

// The first queued OpenSSL error as text (and clears the queue).
std::string last_error();

Bio mem_bio(std::string_view data);
std::string bio_to_string(BIO* bio);

Result<Cert> read_cert(std::string_view pem);
Result<Pkey> read_private_key(std::string_view pem);
std::string cert_to_pem(X509* cert);
Result<std::string> private_key_to_pem(EVP_PKEY* key);  // traditional (PKCS#1 / SEC 1)
Result<std::string> public_key_to_pem(EVP_PKEY* key);   // SPKI

Result<Pkey> generate_key(const KeySpec& spec);
Result<PublicKeyInfo> describe_key(EVP_PKEY* key);
// Facts about `cert`; `known_key` spares decoding its public key again (slow in OpenSSL 3.0).
CertificateInfo describe_cert(X509* cert, const PublicKeyInfo* known_key = nullptr);

// A serial as CertificateInfo::serial_hex holds it: BN_bn2hex, lowercase ("" if unreadable).
std::string serial_to_hex(const ASN1_INTEGER* serial);
std::string name_to_string(const X509_NAME* name);  // RFC 2253
NameFields name_fields(const X509_NAME* name);
NameFields alt_names(X509* cert, int nid);             // NID_subject_alt_name / NID_issuer_alt_name
NameFields general_names(const GENERAL_NAMES* names);  // an alt-name extension's value

}  // namespace fk::crypto::ossl
