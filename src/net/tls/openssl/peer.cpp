#include "net/tls/openssl/peer.h"

#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <map>
#include <mutex>

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
  p.subject_fields = crypto::ossl::name_fields(X509_get_subject_name(cert));
  p.subject_alt_names = crypto::ossl::alt_names(cert, NID_subject_alt_name);
  p.issued_by = PeerCertificate::intern({crypto::ossl::name_to_string(X509_get_issuer_name(cert)),
                                         crypto::ossl::name_fields(X509_get_issuer_name(cert)),
                                         crypto::ossl::alt_names(cert, NID_issuer_alt_name)});
  p.serial_hex = crypto::ossl::serial_to_hex(X509_get0_serialNumber(cert));
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
    p.subject_fields = crypto::ossl::name_fields(subject);
    p.subject_alt_names = read_general_names(parts.subject_alt_names);
    p.issued_by = PeerCertificate::intern({crypto::ossl::name_to_string(issuer),
                                           crypto::ossl::name_fields(issuer),
                                           read_general_names(parts.issuer_alt_names)});
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

std::shared_ptr<const PeerCertificate::Issuer> PeerCertificate::intern(Issuer issuer) {
  // The issuers of live certificates (a fleet has a few CAs; a client can present any issuer,
  // so expired entries are swept when the table has doubled). Keyed by what describes them.
  struct Table {
    std::mutex mu;
    std::map<std::pair<std::string, Fields>, std::weak_ptr<const Issuer>> entries;
    std::size_t sweep_at = 64;
  };
  static Table* table = new Table;  // never destroyed: certificates may outlive static teardown
  std::lock_guard<std::mutex> lock(table->mu);
  auto& slot = table->entries[{issuer.name, issuer.alt_names}];
  if (auto held = slot.lock()) return held;
  auto made = std::make_shared<const Issuer>(std::move(issuer));
  slot = made;
  if (table->entries.size() >= table->sweep_at) {
    std::erase_if(table->entries, [](const auto& e) { return e.second.expired(); });
    table->sweep_at = std::max<std::size_t>(64, table->entries.size() * 2);
  }
  return made;
}

}  // namespace fk::net
