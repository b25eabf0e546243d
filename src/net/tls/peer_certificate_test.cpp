// Both engines describe a client certificate in the same words: the OpenSSL engine from the
// X509 its handshake parsed, the GnuTLS engine from GnuTLS's split of the DER.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <string>

#include "net/tls/gnutls/gnutls_peer.h"
#include "net/tls/openssl/peer.h"

namespace fk::net {
namespace {

void add_ext(X509* cert, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  ASSERT_NE(ext, nullptr) << value;
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A certificate with what policy variables read: a many-field subject with UTF-8 and
// characters RFC 2253 escapes, alt names of every kind, and a serial with its high bit set
// (encoded with a leading zero byte).
X509* make_certificate(const char* serial_hex) {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  BIGNUM* bn = nullptr;
  BN_hex2bn(&bn, serial_hex);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert));
  BN_free(bn);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "C", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("DE"),
                             -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>("Schlie\xc3\x9f"
                                                                    "fach, Inc."),
                             -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "OU", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("a+b=c"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("locker-controller-101"), -1,
                             -1, 0);
  X509_set_issuer_name(cert, name);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  add_ext(cert, NID_subject_alt_name,
          "DNS:a.example,IP:10.0.0.7,IP:2001:db8::1,email:ops@example.com,"
          "URI:urn:locker:101");
  add_ext(cert, NID_issuer_alt_name, "URI:https://ca.example/");
  X509_sign(cert, key, EVP_sha256());
  EVP_PKEY_free(key);
  return cert;
}

std::string der_of(X509* cert) {
  unsigned char* der = nullptr;
  int len = i2d_X509(cert, &der);
  std::string out(reinterpret_cast<char*>(der), static_cast<std::size_t>(len));
  OPENSSL_free(der);
  return out;
}

TEST(PeerCertificate, BothEnginesDescribeItAlike) {
  for (const char* serial : {"8F0000000000000000000000000000000000ABCD", "01", "7F"}) {
    X509* cert = make_certificate(serial);
    PeerCertificate a = describe_x509(cert);
    PeerCertificate b = describe_with_gnutls(der_of(cert));
    X509_free(cert);
    EXPECT_EQ(a.certificate_id.size(), 64u);
    EXPECT_EQ(a.certificate_id, b.certificate_id);
    EXPECT_EQ(a.issuer(), b.issuer());
    EXPECT_EQ(a.common_name(), "locker-controller-101");
    EXPECT_EQ(a.common_name(), b.common_name());
    EXPECT_EQ(a.serial_hex, b.serial_hex) << serial;
    EXPECT_EQ(a.subject_fields, b.subject_fields);
    EXPECT_EQ(a.issuer_fields(), b.issuer_fields());
    EXPECT_EQ(a.subject_alt_names.size(), 5u);
    EXPECT_EQ(a.subject_alt_names, b.subject_alt_names);
    EXPECT_EQ(a.issuer_alt_names().size(), 1u);
    EXPECT_EQ(a.issuer_alt_names(), b.issuer_alt_names());
    // One issuer, one copy: the second description shares the first one's.
    EXPECT_EQ(a.issued_by.get(), b.issued_by.get());
  }
}

TEST(PeerCertificate, IssuersAreSharedWhileHeld) {
  auto one = PeerCertificate::intern({"CN=Issuing A", {{"CN", "Issuing A"}}, {}});
  auto same = PeerCertificate::intern({"CN=Issuing A", {{"CN", "Issuing A"}}, {}});
  auto other = PeerCertificate::intern({"CN=Issuing B", {{"CN", "Issuing B"}}, {}});
  auto other_alt =
      PeerCertificate::intern({"CN=Issuing A", {{"CN", "Issuing A"}}, {{"DNSName", "a"}}});
  EXPECT_EQ(one.get(), same.get());
  EXPECT_NE(one.get(), other.get());
  EXPECT_NE(one.get(), other_alt.get());
  EXPECT_EQ(other->fields, (PeerCertificate::Fields{{"CN", "Issuing B"}}));
  // Many issuers come and go: the table forgets those no certificate holds.
  for (int i = 0; i < 1000; ++i) PeerCertificate::intern({"CN=" + std::to_string(i), {}, {}});
  EXPECT_EQ(PeerCertificate::intern({"CN=Issuing A", {{"CN", "Issuing A"}}, {}}).get(), one.get());
}

TEST(PeerCertificate, NotACertificate) {
  EXPECT_TRUE(describe_with_gnutls("").certificate_id.empty());
  EXPECT_TRUE(describe_with_gnutls(std::string(300, '\x30')).certificate_id.empty());
}

}  // namespace
}  // namespace fk::net
