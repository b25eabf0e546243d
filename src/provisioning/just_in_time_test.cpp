// Just-in-time registration against a real registry and two real CAs: fleetkey's own, and a
// "customer" CA registered with auto-registration whose device certificates arrive as DER.
#include "provisioning/just_in_time.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "crypto/openssl/openssl_certificate_authority.h"
#include "crypto/x509.h"
#include "provisioning/fleet_provisioning.h"
#include "storage/memory/memory_store.h"

namespace fk::provisioning {
namespace {

using storage::CertificateStatus;

class JustInTimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("fk_jit_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    ours_ = std::move(
        crypto::OpensslCertificateAuthority::load_or_create((dir_ / "ours").string(), {}, clock_)
            .value());
    customer_ = std::move(crypto::OpensslCertificateAuthority::load_or_create(
                              (dir_ / "customer").string(), {}, clock_)
                              .value());
    registry_ = std::make_unique<registry::Registry>(store_, *ours_, clock_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // The customer's issuing CA registered (SNI_ONLY: no verification certificate needed here).
  std::string register_customer_ca(bool auto_registration, std::string config = {}) {
    auto ca =
        registry_->register_ca_certificate(customer_->issuing_certificate().pem, std::nullopt, true,
                                           auto_registration, "SNI_ONLY", std::move(config));
    EXPECT_TRUE(ca.is_ok()) << ca.status().to_string();
    return ca.is_ok() ? ca->certificate_id : "";
  }
  // A device certificate the customer CA signed, as DER (what the TLS layer hands over).
  std::string customer_device(const std::string& cn) {
    auto keys = crypto::generate_key_pair(crypto::KeySpec::ec_p256()).value();
    auto csr = crypto::make_csr(keys.private_key_pem, cn).value();
    auto cert = customer_->issue_from_csr(csr, {}).value();
    return crypto::pem_to_der(cert.pem);
  }
  CertificateStatus status_of(const std::string& id) {
    CertificateStatus s = CertificateStatus::kRevoked;
    EXPECT_TRUE(registry_
                    ->read([&](registry::Txn& t) -> Status {
                      FK_ASSIGN_OR_RETURN(auto c, t.describe_certificate(id));
                      s = c.status;
                      return Status::ok();
                    })
                    .is_ok());
    return s;
  }
  bool exists(const std::string& id) {
    bool found = false;
    (void)registry_->read([&](registry::Txn& t) -> Status {
      FK_ASSIGN_OR_RETURN(auto c, t.store().get_certificate(id));
      found = c.has_value();
      return Status::ok();
    });
    return found;
  }

  ManualClock clock_{1795000000};
  std::filesystem::path dir_;
  std::unique_ptr<crypto::OpensslCertificateAuthority> ours_;
  std::unique_ptr<crypto::OpensslCertificateAuthority> customer_;
  storage::MemoryStore store_;
  std::unique_ptr<registry::Registry> registry_;
  std::vector<std::pair<std::string, std::string>> published_;
  JustInTime jit(bool accept = false) {
    return JustInTime(*registry_, {accept}, [this](const std::string& topic, std::string payload) {
      published_.emplace_back(topic, std::move(payload));
    });
  }
};

TEST_F(JustInTimeTest, JitrRecordsPendingActivationAndPublishesOnce) {
  const std::string ca_id = register_customer_ca(true);
  auto j = jit();
  const std::string der = customer_device("locker-1");
  auto first = j.on_unregistered_certificate(der);
  ASSERT_EQ(first.kind, JustInTimeOutcome::Kind::kRegistered) << first.reason;
  EXPECT_FALSE(first.accept_now);
  EXPECT_EQ(first.certificate_id, crypto::sha256_hex(der));
  EXPECT_EQ(first.ca_certificate_id, ca_id);
  EXPECT_EQ(status_of(first.certificate_id), CertificateStatus::kPendingActivation);
  ASSERT_EQ(published_.size(), 1u);
  EXPECT_EQ(published_[0].first, "$aws/events/certificates/registered/" + ca_id);
  auto event = nlohmann::json::parse(published_[0].second);
  EXPECT_EQ(event["certificateId"], first.certificate_id);
  EXPECT_EQ(event["caCertificateId"], ca_id);
  EXPECT_EQ(event["certificateStatus"], "PENDING_ACTIVATION");
  EXPECT_EQ(event["awsAccountId"], "123456789012");

  auto again = j.on_unregistered_certificate(der);
  EXPECT_EQ(again.kind, JustInTimeOutcome::Kind::kAlreadyKnown);
  EXPECT_EQ(published_.size(), 1u);
}

TEST_F(JustInTimeTest, RefusalsKeepNothing) {
  auto j = jit();
  // No registered CA signed it (the customer CA is not registered yet).
  auto none = j.on_unregistered_certificate(customer_device("locker-2"));
  EXPECT_EQ(none.kind, JustInTimeOutcome::Kind::kNotApplicable);
  // Registered without auto-registration.
  register_customer_ca(false);
  auto off = j.on_unregistered_certificate(customer_device("locker-3"));
  EXPECT_EQ(off.kind, JustInTimeOutcome::Kind::kRefused);
  EXPECT_NE(off.reason.find("does not allow auto-registration"), std::string::npos) << off.reason;
  EXPECT_FALSE(exists(off.certificate_id));
  // Not a certificate at all.
  EXPECT_EQ(j.on_unregistered_certificate("not DER").kind, JustInTimeOutcome::Kind::kNotApplicable);
  EXPECT_TRUE(published_.empty());
}

TEST_F(JustInTimeTest, JitpAppliesTheTemplateInOneTransactionOrNothing) {
  const nlohmann::json body = {
      {"Parameters", {{"AWS::IoT::Certificate::CommonName", {{"Type", "String"}}}}},
      {"Resources",
       {{"thing",
         {{"Type", "AWS::IoT::Thing"},
          {"Properties", {{"ThingName", {{"Ref", "AWS::IoT::Certificate::CommonName"}}}}}}},
        {"certificate",
         {{"Type", "AWS::IoT::Certificate"},
          {"Properties",
           {{"CertificateId", {{"Ref", "AWS::IoT::Certificate::Id"}}}, {"Status", "ACTIVE"}}}}},
        {"policy",
         {{"Type", "AWS::IoT::Policy"}, {"Properties", {{"PolicyName", "device-policy"}}}}}}}};
  const nlohmann::json config = {{"templateBody", body.dump()},
                                 {"roleArn", "arn:aws:iam::123456789012:role/JITP"}};
  std::string text;
  ASSERT_TRUE(registry_
                  ->read([&](registry::Txn& t) -> Status {
                    FK_ASSIGN_OR_RETURN(text, check_registration_config(t, config));
                    return Status::ok();
                  })
                  .is_ok());
  register_customer_ca(true, text);
  auto j = jit(/*accept=*/true);
  // The policy does not exist yet: the template fails, nothing is kept.
  auto failed = j.on_unregistered_certificate(customer_device("locker-4"));
  EXPECT_EQ(failed.kind, JustInTimeOutcome::Kind::kRefused);
  EXPECT_NE(failed.reason.find("device-policy"), std::string::npos) << failed.reason;
  EXPECT_FALSE(exists(failed.certificate_id));
  ASSERT_TRUE(registry_
                  ->write([](registry::Txn& t) {
                    return t
                        .create_policy("device-policy", R"({"Version":"2012-10-17",
                      "Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]})")
                        .status();
                  })
                  .is_ok());
  auto done = j.on_unregistered_certificate(customer_device("locker-5"));
  ASSERT_EQ(done.kind, JustInTimeOutcome::Kind::kProvisioned) << done.reason;
  EXPECT_TRUE(done.accept_now);
  EXPECT_EQ(status_of(done.certificate_id), CertificateStatus::kActive);
  EXPECT_TRUE(
      registry_->read([](registry::Txn& t) { return t.describe_thing("locker-5").status(); })
          .is_ok());
  EXPECT_TRUE(published_.empty());  // the registration event is JITR's
}

TEST_F(JustInTimeTest, RegistrationConfigIsChecked) {
  auto check = [&](const nlohmann::json& config) {
    Status st = registry_->read(
        [&](registry::Txn& t) { return check_registration_config(t, config).status(); });
    return st.code();
  };
  const std::string role = "arn:aws:iam::123456789012:role/JITP";
  EXPECT_EQ(check(nlohmann::json::object()), ErrorCode::kOk);
  EXPECT_EQ(check({{"templateBody", "{"}, {"roleArn", role}}), ErrorCode::kInvalidRequest);
  EXPECT_EQ(check({{"templateBody", R"({"Resources":{}})"}}), ErrorCode::kInvalidRequest);
  EXPECT_EQ(check({{"templateName", "missing"}}), ErrorCode::kNotFound);
  EXPECT_EQ(check({{"templateName", 3}}), ErrorCode::kInvalidRequest);
  EXPECT_EQ(check({{"roleArn", "short"}}), ErrorCode::kInvalidRequest);
  EXPECT_EQ(check({{"evil", "x"}}), ErrorCode::kInvalidRequest);
  EXPECT_EQ(check(nlohmann::json::array()), ErrorCode::kInvalidRequest);
}

// Fleet provisioning's hourly sweep deletes its own unclaimed certificates, never a JITR one
// waiting for its owner's activation.
TEST_F(JustInTimeTest, TheProvisioningSweepKeepsJitrCertificates) {
  register_customer_ca(true);
  auto j = jit();
  auto jitr = j.on_unregistered_certificate(customer_device("locker-6"));
  ASSERT_EQ(jitr.kind, JustInTimeOutcome::Kind::kRegistered);
  auto unclaimed = registry_->create_keys_and_certificate(crypto::KeySpec::ec_p256(),
                                                          CertificateStatus::kPendingActivation);
  ASSERT_TRUE(unclaimed.is_ok());
  auto fp = FleetProvisioning::create(*registry_, clock_, {});
  ASSERT_TRUE(fp.is_ok());
  clock_.advance(2 * 3600);
  auto swept = (*fp)->sweep();
  ASSERT_TRUE(swept.is_ok());
  EXPECT_EQ(*swept, 1u);
  EXPECT_FALSE(exists(unclaimed->certificate.certificate_id));
  EXPECT_EQ(status_of(jitr.certificate_id), CertificateStatus::kPendingActivation);
}

}  // namespace
}  // namespace fk::provisioning
