#include "net/tls/openssl/peer.h"

#include <openssl/bn.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include <cctype>

#include "base/strings.h"
#include "crypto/openssl/ossl.h"

namespace fk::net {

PeerCertificate describe_x509(X509* cert) {
  PeerCertificate p;
  unsigned char* der = nullptr;
  int len = i2d_X509(cert, &der);
  if (len > 0) {
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(der, static_cast<std::size_t>(len), md);
    p.certificate_id = to_hex(std::span<const std::uint8_t>(md, sizeof md));
    OPENSSL_free(der);
  }
  p.subject = crypto::ossl::name_to_string(X509_get_subject_name(cert));
  p.issuer = crypto::ossl::name_to_string(X509_get_issuer_name(cert));
  p.subject_fields = crypto::ossl::name_fields(X509_get_subject_name(cert));
  p.issuer_fields = crypto::ossl::name_fields(X509_get_issuer_name(cert));
  p.subject_alt_names = crypto::ossl::alt_names(cert, NID_subject_alt_name);
  p.issuer_alt_names = crypto::ossl::alt_names(cert, NID_issuer_alt_name);
  int idx = X509_NAME_get_index_by_NID(X509_get_subject_name(cert), NID_commonName, -1);
  if (idx >= 0) {
    unsigned char* utf8 = nullptr;
    int n = ASN1_STRING_to_UTF8(
        &utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(X509_get_subject_name(cert), idx)));
    if (n >= 0) {
      p.common_name.assign(reinterpret_cast<char*>(utf8), static_cast<std::size_t>(n));
      OPENSSL_free(utf8);
    }
  }
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
  if (bn != nullptr) {
    char* hex = BN_bn2hex(bn);
    p.serial_hex = hex;
    for (char& c : p.serial_hex) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    OPENSSL_free(hex);
    BN_free(bn);
  }
  return p;
}

namespace {

X509_NAME* read_name(std::string_view der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  return d2i_X509_NAME(nullptr, &p, static_cast<long>(der.size()));
}

PeerCertificate::Fields read_general_names(std::string_view der) {
  if (der.empty()) return {};
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  GENERAL_NAMES* names = d2i_GENERAL_NAMES(nullptr, &p, static_cast<long>(der.size()));
  if (names == nullptr) return {};
  auto out = crypto::ossl::general_names(names);
  GENERAL_NAMES_free(names);
  return out;
}

}  // namespace

PeerCertificate describe_certificate(const CertificateParts& parts) {
  PeerCertificate p;
  X509_NAME* subject = read_name(parts.subject);
  X509_NAME* issuer = read_name(parts.issuer);
  if (subject != nullptr && issuer != nullptr && !parts.der.empty()) {
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(parts.der.data()), parts.der.size(), md);
    p.certificate_id = to_hex(std::span<const std::uint8_t>(md, sizeof md));
    p.subject = crypto::ossl::name_to_string(subject);
    p.issuer = crypto::ossl::name_to_string(issuer);
    p.subject_fields = crypto::ossl::name_fields(subject);
    p.issuer_fields = crypto::ossl::name_fields(issuer);
    for (const auto& [k, v] : p.subject_fields) {
      if (k == "CN") {
        p.common_name = v;
        break;
      }
    }
    p.subject_alt_names = read_general_names(parts.subject_alt_names);
    p.issuer_alt_names = read_general_names(parts.issuer_alt_names);
    // As BN_bn2hex prints it: whole bytes, no leading zero bytes, "0" for zero.
    std::string_view serial = parts.serial;
    while (!serial.empty() && serial.front() == '\0') serial.remove_prefix(1);
    p.serial_hex = serial.empty()
                       ? "0"
                       : to_hex(std::span<const std::uint8_t>(
                             reinterpret_cast<const std::uint8_t*>(serial.data()), serial.size()));
  }
  X509_NAME_free(subject);
  X509_NAME_free(issuer);
  return p;
}

}  // namespace fk::net
