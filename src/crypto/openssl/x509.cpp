// OpenSSL implementation of crypto/x509.h.
#include "crypto/x509.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "base/strings.h"
#include "crypto/openssl/csr_reader.h"
#include "crypto/openssl/ossl.h"

namespace fk::crypto {

using namespace ossl;  // NOLINT(google-build-using-namespace): backend-internal helpers

namespace {
Status validation(std::string m) {
  return {ErrorCode::kCertificateValidation, std::move(m)};
}
}  // namespace

std::string der_to_pem(std::string_view der, const char* label) {
  ossl::Bio bio(BIO_new(BIO_s_mem()));
  PEM_write_bio(bio.get(), label, "", reinterpret_cast<const unsigned char*>(der.data()),
                static_cast<long>(der.size()));
  return ossl::bio_to_string(bio.get());
}

std::string pem_to_der(std::string_view pem) {
  ossl::Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  char* name = nullptr;
  char* header = nullptr;
  unsigned char* data = nullptr;
  long len = 0;
  if (PEM_read_bio(bio.get(), &name, &header, &data, &len) != 1) return {};
  std::string out(reinterpret_cast<const char*>(data), static_cast<std::size_t>(len));
  OPENSSL_free(name);
  OPENSSL_free(header);
  OPENSSL_free(data);
  return out;
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return to_hex(std::span<const std::uint8_t>(md, sizeof md));
}

std::string random_hex(std::size_t n_bytes) {
  std::vector<std::uint8_t> buf(n_bytes);
  if (RAND_bytes(buf.data(), static_cast<int>(buf.size())) != 1) std::abort();  // no entropy
  return to_hex(buf);
}

std::string random_uuid() {
  std::string h = random_hex(16);
  h[12] = '4';
  h[16] = "89ab"[h[16] % 4];
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
         "-" + h.substr(20);
}

Result<CsrInfo> parse_csr(std::string_view pem) {
  FK_ASSIGN_OR_RETURN(ParsedCsr csr, read_csr(pem));
  return csr.info();
}

Result<CertificateInfo> parse_certificate(std::string_view pem) {
  ERR_clear_error();
  FK_ASSIGN_OR_RETURN(Cert cert, read_cert(pem));
  EVP_PKEY* key = X509_get0_pubkey(cert.get());
  if (key == nullptr) return validation("certificate has no readable public key");
  FK_RETURN_IF_ERROR(describe_key(key).status());
  return describe_cert(cert.get());
}

Result<KeyPair> generate_key_pair(const KeySpec& spec) {
  FK_ASSIGN_OR_RETURN(Pkey key, generate_key(spec));
  KeyPair pair;
  FK_ASSIGN_OR_RETURN(pair.private_key_pem, private_key_to_pem(key.get()));
  FK_ASSIGN_OR_RETURN(pair.public_key_pem, public_key_to_pem(key.get()));
  return pair;
}

Status verify_signed_by(std::string_view cert_pem, std::string_view issuer_pem) {
  ERR_clear_error();
  FK_ASSIGN_OR_RETURN(Cert cert, read_cert(cert_pem));
  FK_ASSIGN_OR_RETURN(Cert issuer, read_cert(issuer_pem));
  int rc = X509_check_issued(issuer.get(), cert.get());
  if (rc != X509_V_OK)
    return validation(std::string("certificate was not issued by this CA: ") +
                      X509_verify_cert_error_string(rc));
  EVP_PKEY* issuer_key = X509_get0_pubkey(issuer.get());
  if (issuer_key == nullptr || X509_verify(cert.get(), issuer_key) != 1) {
    ERR_clear_error();
    return validation("certificate signature does not verify with the CA's public key");
  }
  return Status::ok();
}

Status verify_chain(std::string_view cert_pem, const std::vector<std::string>& trust_anchors,
                    const std::vector<std::string>& intermediates, EpochSeconds at) {
  ERR_clear_error();
  FK_ASSIGN_OR_RETURN(Cert cert, read_cert(cert_pem));
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), &X509_STORE_free);
  for (const std::string& pem : trust_anchors) {
    FK_ASSIGN_OR_RETURN(Cert anchor, read_cert(pem));
    X509_STORE_add_cert(store.get(), anchor.get());
  }
  std::unique_ptr<STACK_OF(X509), void (*)(STACK_OF(X509)*)> untrusted(
      sk_X509_new_null(), [](STACK_OF(X509) * s) { sk_X509_pop_free(s, X509_free); });
  for (const std::string& pem : intermediates) {
    FK_ASSIGN_OR_RETURN(Cert c, read_cert(pem));
    sk_X509_push(untrusted.get(), c.release());
  }
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx(X509_STORE_CTX_new(),
                                                                      &X509_STORE_CTX_free);
  if (X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), untrusted.get()) != 1)
    return internal_error("cannot set up certificate verification: " + last_error());
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_time(param, static_cast<time_t>(at));
  // A registered CA may be an intermediate: it is a trust anchor of its own.
  X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
  if (X509_verify_cert(ctx.get()) != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    return validation(std::string("certificate chain does not verify: ") +
                      X509_verify_cert_error_string(err));
  }
  return Status::ok();
}

Status check_key_matches(std::string_view cert_pem, std::string_view private_key_pem) {
  ERR_clear_error();
  FK_ASSIGN_OR_RETURN(Cert cert, read_cert(cert_pem));
  FK_ASSIGN_OR_RETURN(Pkey key, read_private_key(private_key_pem));
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return validation("the private key does not belong to the certificate");
  }
  return Status::ok();
}

Result<std::string> make_csr(std::string_view private_key_pem, std::string_view common_name) {
  ERR_clear_error();
  FK_ASSIGN_OR_RETURN(Pkey key, read_private_key(private_key_pem));
  Req req(X509_REQ_new());
  X509_NAME* name = X509_REQ_get_subject_name(req.get());
  if (!common_name.empty() &&
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(common_name.data()),
                                 static_cast<int>(common_name.size()), -1, 0) != 1)
    return invalid_request("bad common name: " + last_error());
  X509_REQ_set_pubkey(req.get(), key.get());
  if (X509_REQ_sign(req.get(), key.get(), EVP_sha256()) <= 0)
    return internal_error("cannot sign CSR: " + last_error());
  Bio bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_REQ(bio.get(), req.get());
  return bio_to_string(bio.get());
}

Result<std::string> public_key_sha256(std::string_view pem) {
  ERR_clear_error();
  EVP_PKEY* pub = nullptr;
  Cert cert;
  Req req;
  Pkey key;
  if (pem.find("-----BEGIN CERTIFICATE-----") != std::string_view::npos) {
    FK_ASSIGN_OR_RETURN(cert, read_cert(pem));
    pub = X509_get0_pubkey(cert.get());
  } else if (pem.find("CERTIFICATE REQUEST-----") != std::string_view::npos) {
    Bio bio = mem_bio(pem);
    req.reset(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
    if (!req) return validation("CSR PEM cannot be parsed: " + last_error());
    pub = X509_REQ_get0_pubkey(req.get());
  } else {
    FK_ASSIGN_OR_RETURN(key, read_private_key(pem));
    pub = key.get();
  }
  if (pub == nullptr) return validation("no public key: " + last_error());
  unsigned char* der = nullptr;
  int n = i2d_PUBKEY(pub, &der);
  if (n <= 0) return internal_error("cannot encode the public key: " + last_error());
  std::string out = sha256_hex(std::string_view(reinterpret_cast<const char*>(der), n));
  OPENSSL_free(der);
  return out;
}

Result<std::string> encrypt_private_key(std::string_view private_key_pem,
                                        std::string_view password) {
  ERR_clear_error();
  FK_ASSIGN_OR_RETURN(Pkey key, read_private_key(private_key_pem));
  Bio bio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PKCS8PrivateKey(bio.get(), key.get(), EVP_aes_256_cbc(),
                                    const_cast<char*>(password.data()),
                                    static_cast<int>(password.size()), nullptr, nullptr) != 1)
    return internal_error("cannot encrypt the private key: " + last_error());
  return bio_to_string(bio.get());
}

Result<std::string> decrypt_private_key(std::string_view encrypted_pem, std::string_view password) {
  ERR_clear_error();
  Bio bio = mem_bio(encrypted_pem);
  std::string pass(password);
  Pkey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, pass.data()));
  if (!key) return invalid_request("cannot decrypt the private key: " + last_error());
  return private_key_to_pem(key.get());
}

Result<std::string> make_pkcs12(std::string_view cert_pem, std::string_view private_key_pem,
                                std::string_view ca_pem, std::string_view password,
                                std::string_view friendly_name) {
  ERR_clear_error();
  FK_ASSIGN_OR_RETURN(Cert cert, read_cert(cert_pem));
  FK_ASSIGN_OR_RETURN(Pkey key, read_private_key(private_key_pem));
  STACK_OF(X509)* cas = sk_X509_new_null();
  if (!ca_pem.empty()) {
    auto ca = read_cert(ca_pem);
    if (!ca.is_ok()) {
      sk_X509_free(cas);
      return ca.status();
    }
    sk_X509_push(cas, ca->release());
  }
  std::string pass(password), name(friendly_name);
  // OpenSSL 3's defaults: AES-256-CBC with PBKDF2 for the key and the certificates, SHA-256 MAC.
  PKCS12* p12 = PKCS12_create(pass.c_str(), name.c_str(), key.get(), cert.get(), cas,
                              NID_aes_256_cbc, NID_aes_256_cbc, 0, 0, 0);
  sk_X509_pop_free(cas, X509_free);
  if (p12 == nullptr) return internal_error("cannot make the PKCS#12 bundle: " + last_error());
  Bio bio(BIO_new(BIO_s_mem()));
  int ok = i2d_PKCS12_bio(bio.get(), p12);
  PKCS12_free(p12);
  if (ok != 1) return internal_error("cannot encode the PKCS#12 bundle: " + last_error());
  return bio_to_string(bio.get());
}

}  // namespace fk::crypto
