// Tests of the CA and CSR paths, including every bad CSR the issue names.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "base/files.h"
#include "base/strings.h"
#include "crypto/openssl/openssl_certificate_authority.h"
#include "crypto/openssl/ossl.h"
#include "crypto/x509.h"

namespace fk::crypto {
namespace {

using ossl::Pkey;

constexpr EpochSeconds kNow = 1795000000;  // 2026-11-18

// A CSR for `key` with subject CN=`cn`, signed with `md` (SHA-256 by default).
std::string make_csr(EVP_PKEY* key, const std::string& cn = "locker-controller-101",
                     const EVP_MD* md_override = nullptr) {
  ossl::Req req(X509_REQ_new());
  X509_NAME* name = X509_REQ_get_subject_name(req.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.data()),
                             static_cast<int>(cn.size()), -1, 0);
  X509_REQ_set_pubkey(req.get(), key);
  const EVP_MD* md = EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519 ? nullptr : EVP_sha256();
  if (md_override != nullptr) md = md_override;
  EXPECT_GT(X509_REQ_sign(req.get(), key, md), 0);
  ossl::Bio bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_REQ(bio.get(), req.get());
  return ossl::bio_to_string(bio.get());
}

Pkey raw_key(const char* type, const char* param) {
  return Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, type, param));
}

Pkey rsa_key(size_t bits) {
  return Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", bits));
}

class CaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("fk_ca_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<OpensslCertificateAuthority> make_ca(CaConfig config = {}) {
    auto ca = OpensslCertificateAuthority::load_or_create(dir_.string(), config, clock_);
    EXPECT_TRUE(ca.is_ok()) << ca.status().to_string();
    return ca.is_ok() ? std::move(ca).value() : nullptr;
  }

  std::filesystem::path dir_;
  ManualClock clock_{kNow};
};

TEST_F(CaTest, CreatesRootIssuingAndServerWithPrivateKeysOnly0600) {
  auto ca = make_ca();
  ASSERT_TRUE(ca);
  const CaPaths& p = ca->paths();
  for (const std::string& key : {p.root_key, p.issuing_key, p.server_key}) {
    struct stat st {};
    ASSERT_EQ(::stat(key.c_str(), &st), 0) << key;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << key;
  }
  EXPECT_TRUE(ca->root_certificate().is_ca);
  EXPECT_TRUE(ca->issuing_certificate().is_ca);
  EXPECT_EQ(ca->root_certificate().key.type, KeyType::kEcP256);
  EXPECT_TRUE(verify_signed_by(ca->issuing_certificate().pem, ca->root_certificate().pem).is_ok());
  // The server certificate chains to the root and names the loopback addresses.
  std::string server = *read_file(p.server_cert);
  EXPECT_TRUE(
      verify_chain(server, {ca->root_certificate().pem}, {ca->issuing_certificate().pem}, kNow)
          .is_ok());
  ossl::Bio bio(BIO_new(BIO_s_mem()));
  auto cert = ossl::read_cert(server);
  ASSERT_TRUE(cert.is_ok());
  X509_print(bio.get(), cert->get());
  std::string text = ossl::bio_to_string(bio.get());
  EXPECT_NE(text.find("DNS:localhost"), std::string::npos);
  EXPECT_NE(text.find("IP Address:127.0.0.1"), std::string::npos);
  EXPECT_NE(text.find("IP Address:0:0:0:0:0:0:0:1"), std::string::npos);
  EXPECT_NE(text.find("TLS Web Server Authentication"), std::string::npos);
  // The same names, typed as AWS's iot:Certificate.Subject.AlternativeName.* variables.
  auto info = parse_certificate(server);
  ASSERT_TRUE(info.is_ok());
  const NameFields& sans = info->subject_alt_names;
  auto has = [&](const char* type, const char* value) {
    return std::find(sans.begin(), sans.end(),
                     std::make_pair(std::string(type), std::string(value))) != sans.end();
  };
  EXPECT_TRUE(has("DNSName", "localhost"));
  EXPECT_TRUE(has("IPAddress", "127.0.0.1"));
  EXPECT_TRUE(has("IPAddress", "::1"));
  EXPECT_TRUE(info->issuer_alt_names.empty());
}

TEST_F(CaTest, ReloadKeepsTheSameRootAndReissuesServerWhenNamesChange) {
  std::string root_id, server_before;
  {
    auto ca = make_ca();
    root_id = ca->root_certificate().certificate_id;
    server_before = *read_file(ca->paths().server_cert);
  }
  {
    auto ca = make_ca();
    EXPECT_EQ(ca->root_certificate().certificate_id, root_id);
    EXPECT_EQ(*read_file(ca->paths().server_cert), server_before);
  }
  CaConfig config;
  config.server_names = {"iot.example.com", "10.1.2.3"};
  auto ca = make_ca(config);
  EXPECT_EQ(ca->root_certificate().certificate_id, root_id);
  std::string server_after = *read_file(ca->paths().server_cert);
  EXPECT_NE(server_after, server_before);
  auto cert = ossl::read_cert(server_after);
  ossl::Bio bio(BIO_new(BIO_s_mem()));
  X509_print(bio.get(), cert->get());
  std::string text = ossl::bio_to_string(bio.get());
  EXPECT_NE(text.find("DNS:iot.example.com"), std::string::npos);
  EXPECT_NE(text.find("IP Address:10.1.2.3"), std::string::npos);
}

TEST_F(CaTest, RsaCaSelectable) {
  CaConfig config;
  config.ca_key = KeySpec::rsa(3072);
  auto ca = make_ca(config);
  EXPECT_EQ(ca->root_certificate().key.type, KeyType::kRsa);
  EXPECT_EQ(ca->root_certificate().key.bits, 3072);
}

TEST_F(CaTest, IssuesFromCsrWithAwsProperties) {
  auto ca = make_ca();
  std::vector<Pkey> keys;
  keys.push_back(raw_key("EC", "P-256"));
  keys.push_back(raw_key("EC", "P-384"));
  keys.push_back(raw_key("EC", "P-521"));
  keys.push_back(rsa_key(2048));
  keys.push_back(rsa_key(3072));
  for (const Pkey& key : keys) {
    auto issued = ca->issue_from_csr(make_csr(key.get()), {});
    ASSERT_TRUE(issued.is_ok()) << issued.status().to_string();
    const CertificateInfo& c = *issued;
    EXPECT_EQ(c.certificate_id.size(), 64u);
    // certificateId = SHA-256 of the DER.
    auto cert = ossl::read_cert(c.pem);
    unsigned char* der = nullptr;
    int len = i2d_X509(cert->get(), &der);
    EXPECT_EQ(c.certificate_id,
              sha256_hex(std::string_view(reinterpret_cast<char*>(der), static_cast<size_t>(len))));
    OPENSSL_free(der);
    EXPECT_EQ(c.not_after, kAwsDefaultNotAfter);
    EXPECT_EQ(c.not_before, kNow);
    EXPECT_EQ(c.subject, "CN=locker-controller-101");
    EXPECT_EQ(c.serial_hex.size(), 40u);
    EXPECT_FALSE(c.is_ca);
    EXPECT_TRUE(
        verify_chain(c.pem, {ca->root_certificate().pem}, {ca->issuing_certificate().pem}, kNow)
            .is_ok());
    EXPECT_EQ(X509_check_private_key(cert->get(), key.get()), 1) << "public key copied wrongly";
    EXPECT_EQ(X509_check_purpose(cert->get(), X509_PURPOSE_SSL_CLIENT, 0), 1);
    EXPECT_NE(X509_check_purpose(cert->get(), X509_PURPOSE_SSL_SERVER, 0), 1);
  }
}

TEST_F(CaTest, SameCsrTwiceGivesDistinctCertificates) {
  auto ca = make_ca();
  auto key = raw_key("EC", "P-256");
  std::string csr = make_csr(key.get());
  auto a = ca->issue_from_csr(csr, {});
  auto b = ca->issue_from_csr(csr, {});
  ASSERT_TRUE(a.is_ok() && b.is_ok());
  EXPECT_NE(a->certificate_id, b->certificate_id);
  EXPECT_NE(a->serial_hex, b->serial_hex);
}

TEST_F(CaTest, ConfigurableShorterLifetime) {
  CaConfig config;
  config.device_validity_days = 365;
  auto ca = make_ca(config);
  auto key = raw_key("EC", "P-256");
  auto c = ca->issue_from_csr(make_csr(key.get()), {});
  ASSERT_TRUE(c.is_ok());
  EXPECT_EQ(c->not_after, kNow + 365 * 86400);
  IssueOptions explicit_end;
  explicit_end.not_after = kNow + 3600;
  auto d = ca->issue_from_csr(make_csr(key.get()), explicit_end);
  EXPECT_EQ(d->not_after, kNow + 3600);
}

TEST_F(CaTest, ServerMadeKeysRsa2048ByDefaultAsAws) {
  auto ca = make_ca();
  auto issued = ca->issue_with_new_key(KeySpec::rsa(2048), {});
  ASSERT_TRUE(issued.is_ok()) << issued.status().to_string();
  EXPECT_TRUE(starts_with(issued->keys.private_key_pem, "-----BEGIN RSA PRIVATE KEY-----"));
  EXPECT_TRUE(starts_with(issued->keys.public_key_pem, "-----BEGIN PUBLIC KEY-----"));
  EXPECT_EQ(issued->certificate.key.bits, 2048);
  EXPECT_TRUE(check_key_matches(issued->certificate.pem, issued->keys.private_key_pem).is_ok());
  auto ec = ca->issue_with_new_key(KeySpec::ec_p256(), {});
  ASSERT_TRUE(ec.is_ok());
  EXPECT_TRUE(starts_with(ec->keys.private_key_pem, "-----BEGIN EC PRIVATE KEY-----"));
  EXPECT_EQ(ec->certificate.key.type, KeyType::kEcP256);
  EXPECT_FALSE(check_key_matches(ec->certificate.pem, issued->keys.private_key_pem).is_ok());
}

// --- bad CSRs: each refused with a precise reason ---

void expect_refused(CertificateAuthority& ca, const std::string& csr, const std::string& reason) {
  auto r = ca.issue_from_csr(csr, {});
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kCertificateValidation);
  EXPECT_NE(r.status().message().find(reason), std::string::npos) << r.status().message();
}

TEST_F(CaTest, RefusesGarbagePem) {
  auto ca = make_ca();
  expect_refused(*ca, "hello", "not a PEM CSR");
  expect_refused(
      *ca, "-----BEGIN CERTIFICATE REQUEST-----\nAAAA!!!!\n-----END CERTIFICATE REQUEST-----\n",
      "CSR cannot be parsed");
  expect_refused(*ca, "", "not a PEM CSR");
}

TEST_F(CaTest, RefusesWrongSignature) {
  auto ca = make_ca();
  auto key = raw_key("EC", "P-256");
  auto other = raw_key("EC", "P-256");
  // Sign a request that carries `key` with `other`: the signature cannot verify.
  ossl::Req req(X509_REQ_new());
  X509_REQ_set_pubkey(req.get(), key.get());
  ASSERT_GT(X509_REQ_sign(req.get(), other.get(), EVP_sha256()), 0);
  X509_REQ_set_pubkey(req.get(), key.get());
  ossl::Bio bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_REQ(bio.get(), req.get());
  expect_refused(*ca, ossl::bio_to_string(bio.get()), "signature does not verify");
}

TEST_F(CaTest, RefusesWeakRsa) {
  auto ca = make_ca();
  auto key = rsa_key(1024);
  expect_refused(*ca, make_csr(key.get()), "1024 bits is too weak");
}

TEST_F(CaTest, RefusesUnsupportedCurveAndKeyType) {
  auto ca = make_ca();
  auto k1 = raw_key("EC", "secp256k1");
  expect_refused(*ca, make_csr(k1.get()), "EC curve secp256k1 is not supported");
  auto ed = raw_key("ED25519", nullptr);
  expect_refused(*ca, make_csr(ed.get()), "key type ED25519 is not supported");
}

TEST_F(CaTest, RefusesOversizeCsr) {
  auto ca = make_ca();
  std::string big = "-----BEGIN CERTIFICATE REQUEST-----\n" + std::string(5000, 'A') +
                    "\n-----END CERTIFICATE REQUEST-----\n";
  expect_refused(*ca, big, "at most 4096 are allowed");
}

TEST_F(CaTest, CsrDigestsAndEncodings) {
  auto ca = make_ca();
  auto key = raw_key("EC", "P-256");
  // SHA-1 and SHA-384 self-signatures are accepted (the certificate is signed with SHA-256).
  EXPECT_TRUE(ca->issue_from_csr(make_csr(key.get(), "a", EVP_sha1()), {}).is_ok());
  EXPECT_TRUE(ca->issue_from_csr(make_csr(key.get(), "a", EVP_sha384()), {}).is_ok());
  auto rsa = rsa_key(2048);
  expect_refused(*ca, make_csr(rsa.get(), "a", EVP_md5()), "digest MD5 is not accepted");
  // The old "NEW CERTIFICATE REQUEST" armour is read too.
  std::string csr = make_csr(key.get());
  std::string old = csr;
  old.replace(old.find("BEGIN CERTIFICATE REQUEST"), 25, "BEGIN NEW CERTIFICATE REQUEST");
  old.replace(old.find("END CERTIFICATE REQUEST"), 23, "END NEW CERTIFICATE REQUEST");
  EXPECT_TRUE(ca->issue_from_csr(old, {}).is_ok());
  // The subject is reported field by field.
  auto info = parse_csr(make_csr(key.get(), "locker-9"));
  ASSERT_TRUE(info.is_ok());
  EXPECT_EQ(info->subject, "CN=locker-9");
  ASSERT_EQ(info->subject_fields.size(), 1u);
  EXPECT_EQ(info->subject_fields[0].second, "locker-9");
  EXPECT_EQ(info->key.description, "EC P-256");
}

TEST_F(CaTest, RefusesCorruptedDer) {
  auto ca = make_ca();
  auto key = raw_key("EC", "P-256");
  std::string csr = make_csr(key.get());
  // Flip one character inside the base64 body: either the DER breaks or the signature fails.
  for (std::size_t pos : {std::size_t{60}, std::size_t{120}, csr.size() - 60}) {
    std::string bad = csr;
    bad[pos] = bad[pos] == 'A' ? 'B' : 'A';
    auto r = ca->issue_from_csr(bad, {});
    EXPECT_FALSE(r.is_ok()) << pos;
    if (!r.is_ok()) {
      EXPECT_EQ(r.status().code(), ErrorCode::kCertificateValidation);
    }
  }
}

TEST(X509, ParseCertificateRefusesGarbage) {
  auto r = parse_certificate("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kCertificateValidation);
  EXPECT_FALSE(parse_certificate("junk").is_ok());
}

TEST_F(CaTest, ChainVerificationReportsExpiryAndWrongCa) {
  auto ca = make_ca();
  IssueOptions short_life;
  short_life.not_after = kNow + 60;
  auto key = raw_key("EC", "P-256");
  auto c = ca->issue_from_csr(make_csr(key.get()), short_life);
  ASSERT_TRUE(c.is_ok());
  std::vector<std::string> anchors = {ca->root_certificate().pem};
  std::vector<std::string> inter = {ca->issuing_certificate().pem};
  EXPECT_TRUE(verify_chain(c->pem, anchors, inter, kNow + 30).is_ok());
  Status expired = verify_chain(c->pem, anchors, inter, kNow + 120);
  EXPECT_NE(expired.message().find("expired"), std::string::npos) << expired.message();
  Status early = verify_chain(c->pem, anchors, inter, kNow - 3600);
  EXPECT_NE(early.message().find("not yet valid"), std::string::npos) << early.message();

  // A certificate of another CA does not chain to ours.
  auto other_dir = dir_.string() + "-other";
  auto other = OpensslCertificateAuthority::load_or_create(other_dir, {}, clock_);
  ASSERT_TRUE(other.is_ok());
  auto foreign = (*other)->issue_from_csr(make_csr(key.get()), {});
  EXPECT_FALSE(verify_chain(foreign->pem, anchors, inter, kNow).is_ok());
  EXPECT_FALSE(verify_signed_by(foreign->pem, ca->issuing_certificate().pem).is_ok());
  std::filesystem::remove_all(other_dir);
}

TEST_F(CaTest, RefusesToCreateARootOverAnExistingIssuingCa) {
  auto ca = make_ca();
  std::filesystem::remove(ca->paths().root_cert);
  auto again = OpensslCertificateAuthority::load_or_create(dir_.string(), {}, clock_);
  ASSERT_FALSE(again.is_ok());
  EXPECT_NE(again.status().message().find("refusing"), std::string::npos);
}

// The factory tool's pieces: a key, its CSR and its certificate share one public key
// fingerprint; keys encrypted at rest; PKCS#12 bundles that open only with their password.
TEST_F(CaTest, KeyFingerprintsEncryptedKeysAndPkcs12) {
  auto ca = make_ca();
  auto keys = generate_key_pair(KeySpec{KeyType::kEcP256, 0});
  ASSERT_TRUE(keys.is_ok());
  auto csr = crypto::make_csr(keys->private_key_pem, "locker-controller-101");
  ASSERT_TRUE(csr.is_ok());
  auto cert = ca->issue_from_csr(*csr, {});
  ASSERT_TRUE(cert.is_ok());
  auto fp_key = public_key_sha256(keys->private_key_pem);
  auto fp_csr = public_key_sha256(*csr);
  auto fp_cert = public_key_sha256(cert->pem);
  ASSERT_TRUE(fp_key.is_ok() && fp_csr.is_ok() && fp_cert.is_ok());
  EXPECT_EQ(*fp_key, *fp_csr);
  EXPECT_EQ(*fp_key, *fp_cert);
  EXPECT_EQ(fp_key->size(), 64u);
  auto other = generate_key_pair(KeySpec{KeyType::kEcP256, 0});
  EXPECT_NE(*public_key_sha256(other->private_key_pem), *fp_key);
  EXPECT_FALSE(public_key_sha256("not a pem").is_ok());

  auto sealed = encrypt_private_key(keys->private_key_pem, "s3cret");
  ASSERT_TRUE(sealed.is_ok());
  EXPECT_NE(sealed->find("ENCRYPTED PRIVATE KEY"), std::string::npos);
  EXPECT_FALSE(decrypt_private_key(*sealed, "wrong").is_ok());
  // Read as a plain key (no password), it is refused instead of prompting on the terminal.
  EXPECT_FALSE(check_key_matches(cert->pem, *sealed).is_ok());
  auto opened = decrypt_private_key(*sealed, "s3cret");
  ASSERT_TRUE(opened.is_ok());
  EXPECT_TRUE(check_key_matches(cert->pem, *opened).is_ok());

  auto p12 = make_pkcs12(cert->pem, keys->private_key_pem, ca->root_certificate().pem, "pw",
                         "locker-controller-101");
  ASSERT_TRUE(p12.is_ok());
  ossl::Bio bio = ossl::mem_bio(*p12);
  PKCS12* parsed = d2i_PKCS12_bio(bio.get(), nullptr);
  ASSERT_NE(parsed, nullptr);
  EXPECT_EQ(PKCS12_verify_mac(parsed, "wrong", -1), 0);
  EVP_PKEY* pkey = nullptr;
  X509* x = nullptr;
  STACK_OF(X509)* cas = nullptr;
  ASSERT_EQ(PKCS12_parse(parsed, "pw", &pkey, &x, &cas), 1);
  EXPECT_EQ(X509_check_private_key(x, pkey), 1);
  EXPECT_EQ(sk_X509_num(cas), 1);
  EVP_PKEY_free(pkey);
  X509_free(x);
  sk_X509_pop_free(cas, X509_free);
  PKCS12_free(parsed);
  // A key that is not the certificate's makes no bundle.
  EXPECT_FALSE(make_pkcs12(cert->pem, other->private_key_pem, "", "pw", "x").is_ok());
}

}  // namespace
}  // namespace fk::crypto
