// Direct-certificate checks, device key generation and the credential file store, on
// certificates from a real (OpenSSL) fleetkey CA in a temporary folder.
#include "fleetkey/credentials.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "base/clock.h"
#include "crypto/openssl/openssl_certificate_authority.h"
#include "crypto/x509.h"

namespace fleetkey {
namespace {

constexpr std::int64_t kNow = 1800000000;  // 2027-01-15
constexpr std::int64_t kDay = 86400;

class CredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("fk_sdk_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    fk::crypto::CaConfig config;
    config.device_validity_days = 30;
    auto ca = fk::crypto::OpensslCertificateAuthority::load_or_create((dir_ / "ca").string(),
                                                                      config, clock_);
    ASSERT_TRUE(ca.is_ok()) << ca.status().to_string();
    ca_ = std::move(ca).value();
    // The bundle the CLI writes: root, then issuing CA.
    root_bundle_ = ca_->root_certificate().pem + ca_->issuing_certificate().pem;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  TlsIdentity device(const std::string& cn = "locker-controller-101") {
    std::string key, csr;
    Error e;
    EXPECT_TRUE(generate_key_and_csr(KeyType::kEcP256, cn, key, csr, e)) << e.message;
    auto cert = ca_->issue_from_csr(csr, {});
    EXPECT_TRUE(cert.is_ok());
    return {cert->pem, key, root_bundle_};
  }

  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }

  std::filesystem::path dir_;
  fk::ManualClock clock_{kNow};
  std::unique_ptr<fk::crypto::OpensslCertificateAuthority> ca_;
  std::string root_bundle_;
};

TEST_F(CredentialsTest, AGoodBundlePassesWithItsFacts) {
  TlsIdentity id = device();
  CertificateFacts facts;
  Error e;
  ASSERT_TRUE(check_credentials(id, kNow + kDay, facts, e)) << e.message;
  EXPECT_EQ(facts.not_after - facts.not_before, 30 * kDay);
  EXPECT_NE(facts.subject.find("CN=locker-controller-101"), std::string::npos);
  EXPECT_EQ(facts.certificate_id.size(), 64u);
}

TEST_F(CredentialsTest, DatesAreCheckedWithTheirTimesInTheMessage) {
  TlsIdentity id = device();
  CertificateFacts facts;
  Error e;
  EXPECT_FALSE(check_credentials(id, kNow - kDay, facts, e));
  EXPECT_EQ(e.kind, ErrorKind::kInvalidCredentials);
  EXPECT_EQ(e.error_code, "NotYetValid");
  EXPECT_NE(e.message.find("2027-01-15"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("clock"), std::string::npos);
  EXPECT_FALSE(check_credentials(id, kNow + 31 * kDay, facts, e));
  EXPECT_EQ(e.error_code, "Expired");
  EXPECT_NE(e.message.find("expired at 2027-02-14"), std::string::npos) << e.message;
}

TEST_F(CredentialsTest, AnotherKeyIsAMismatch) {
  TlsIdentity id = device();
  TlsIdentity other = device("other");
  id.private_key_pem = other.private_key_pem;
  CertificateFacts facts;
  Error e;
  EXPECT_FALSE(check_credentials(id, kNow + kDay, facts, e));
  EXPECT_EQ(e.error_code, "KeyMismatch");
}

TEST_F(CredentialsTest, ACertificateOfAnotherCaDoesNotChain) {
  fk::crypto::CaConfig config;
  fk::ManualClock clock{kNow};
  auto other = fk::crypto::OpensslCertificateAuthority::load_or_create((dir_ / "other").string(),
                                                                       config, clock);
  ASSERT_TRUE(other.is_ok());
  std::string key, csr;
  Error e;
  ASSERT_TRUE(generate_key_and_csr(KeyType::kEcP256, "rogue", key, csr, e));
  auto cert = (*other)->issue_from_csr(csr, {});
  ASSERT_TRUE(cert.is_ok());
  CertificateFacts facts;
  EXPECT_FALSE(check_credentials({cert->pem, key, root_bundle_}, kNow + kDay, facts, e));
  EXPECT_EQ(e.error_code, "UntrustedChain");
  EXPECT_NE(e.message.find("does not chain to the root CA"), std::string::npos);
  // With the root alone (no issuing CA anywhere) our own certificate cannot chain either,
  // unless the certificate file carries the issuing CA (a full-chain file).
  TlsIdentity id = device();
  id.root_ca_pem = ca_->root_certificate().pem;
  EXPECT_FALSE(check_credentials(id, kNow + kDay, facts, e));
  EXPECT_EQ(e.error_code, "UntrustedChain");
  id.certificate_pem += ca_->issuing_certificate().pem;
  EXPECT_TRUE(check_credentials(id, kNow + kDay, facts, e)) << e.message;
}

TEST_F(CredentialsTest, FilesAreNamedInErrors) {
  TlsIdentity id = device();
  const auto paths = CredentialPaths::in_folder(dir_.string());
  TlsIdentity out;
  CertificateFacts facts;
  Error e;
  EXPECT_FALSE(load_direct_credentials(paths, kNow, out, facts, e));
  EXPECT_EQ(e.error_code, "MissingFile");
  EXPECT_NE(e.message.find("device.cert.pem"), std::string::npos);
  write("device.cert.pem", id.certificate_pem);
  write("device.private.key", device("x").private_key_pem);
  write("root-ca.pem", id.root_ca_pem);
  EXPECT_FALSE(load_direct_credentials(paths, kNow + kDay, out, facts, e));
  EXPECT_EQ(e.error_code, "KeyMismatch");
  EXPECT_EQ(e.message.find(paths.private_key), 0u) << e.message;
  write("device.private.key", id.private_key_pem);
  write("root-ca.pem", "nothing here");
  EXPECT_FALSE(load_direct_credentials(paths, kNow + kDay, out, facts, e));
  EXPECT_EQ(e.error_code, "Malformed");
  EXPECT_EQ(e.message.find(paths.root_ca), 0u) << e.message;
  write("root-ca.pem", id.root_ca_pem);
  EXPECT_TRUE(load_direct_credentials(paths, kNow + kDay, out, facts, e)) << e.message;
  EXPECT_EQ(out.private_key_pem, id.private_key_pem);
}

TEST_F(CredentialsTest, GeneratedKeysMatchTheirCsr) {
  for (KeyType t : {KeyType::kEcP256, KeyType::kRsa2048}) {
    std::string key, csr;
    Error e;
    ASSERT_TRUE(generate_key_and_csr(t, "SN-1", key, csr, e)) << e.message;
    auto info = fk::crypto::parse_csr(csr);
    ASSERT_TRUE(info.is_ok());
    EXPECT_EQ(info->subject, "CN=SN-1");
    EXPECT_EQ(info->key.description, t == KeyType::kEcP256 ? "EC P-256" : "RSA 2048");
    EXPECT_EQ(*fk::crypto::public_key_sha256(key), *fk::crypto::public_key_sha256(csr));
  }
}

ProvisioningRecord registered() {
  ProvisioningRecord r;
  r.stage = Stage::kRegistered;
  r.private_key_pem = "KEY";
  r.csr_pem = "CSR";
  r.certificate_pem = "CERT";
  r.certificate_id = "id";
  r.thing_name = "locker-controller-7";
  r.device_configuration = {{"FallbackUrl", "https://example.com"}};
  return r;
}

TEST_F(CredentialsTest, FileStoreRoundTripsEachStageWithSecretsPrivate) {
  FileCredentialStore store((dir_ / "state").string());
  ProvisioningRecord r;
  Error e;
  ASSERT_TRUE(store.load(r, e));
  EXPECT_EQ(r.stage, Stage::kNone) << "nothing saved yet";
  ProvisioningRecord in = registered();
  ASSERT_TRUE(store.save(in, e)) << e.message;
  ProvisioningRecord out;
  ASSERT_TRUE(store.load(out, e)) << e.message;
  EXPECT_EQ(out.stage, Stage::kRegistered);
  EXPECT_EQ(out.thing_name, in.thing_name);
  EXPECT_EQ(out.private_key_pem, "KEY");
  EXPECT_EQ(out.device_configuration, in.device_configuration);
  struct stat st {};
  for (const char* f : {"provisioning.json", "device.private.key"}) {
    ASSERT_EQ(::stat((dir_ / "state" / f).c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << f;
  }
  // The direct layout is there once registered.
  std::ifstream cert(dir_ / "state" / "device.cert.pem");
  std::string text((std::istreambuf_iterator<char>(cert)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "CERT");
  ASSERT_TRUE(store.clear(e));
  ASSERT_TRUE(store.load(out, e));
  EXPECT_EQ(out.stage, Stage::kNone);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "state" / "device.private.key"));
}

TEST_F(CredentialsTest, FileStoreRefusesRecordsItCannotTrust) {
  FileCredentialStore store(dir_.string());
  ProvisioningRecord out;
  Error e;
  write("provisioning.json", "{not json");
  EXPECT_FALSE(store.load(out, e));
  EXPECT_EQ(e.kind, ErrorKind::kStorage);
  write("provisioning.json", R"({"stage": "registered", "privateKey": "k"})");
  EXPECT_FALSE(store.load(out, e));
  EXPECT_NE(e.message.find("lacks members"), std::string::npos);
  write("provisioning.json", R"({"stage": "half-done"})");
  EXPECT_FALSE(store.load(out, e));
  // No temporary files are left beside a good save.
  ASSERT_TRUE(store.save(registered(), e));
  for (const auto& f : std::filesystem::directory_iterator(dir_))
    EXPECT_EQ(f.path().filename().string().find(".tmp"), std::string::npos) << f.path();
}

}  // namespace
}  // namespace fleetkey
