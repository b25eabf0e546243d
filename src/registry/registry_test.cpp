// The registry's rules and status transitions, on the memory store with a real CA.
#include "registry/registry.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "crypto/openssl/openssl_certificate_authority.h"
#include "crypto/x509.h"
#include "registry/validation.h"
#include "storage/memory/memory_store.h"

namespace fk::registry {
namespace {

constexpr EpochSeconds kNow = 1795000000;
const char* kPolicy =
    R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]})";
const char* kTemplate = R"({"Parameters":{"SerialNumber":{"Type":"String"}},"Resources":{}})";
const char* kRole = "arn:aws:iam::123456789012:role/provisioning";

// CAs are slow to make: one per test binary.
crypto::CertificateAuthority& shared_ca(const std::string& name) {
  static std::map<std::string, std::unique_ptr<crypto::OpensslCertificateAuthority>> cas;
  static ManualClock clock(kNow - 86400);
  auto& slot = cas[name];
  if (!slot) {
    auto dir = std::filesystem::temp_directory_path() /
               ("fk_registry_test_" + name + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    auto ca = crypto::OpensslCertificateAuthority::load_or_create(dir.string(), {}, clock);
    EXPECT_TRUE(ca.is_ok()) << ca.status().to_string();
    slot = std::move(ca).value();
    std::filesystem::remove_all(dir);  // keys are in memory now
  }
  return *slot;
}

std::string csr_for(std::string_view cn) {
  auto key = crypto::generate_key_pair(crypto::KeySpec::ec_p256());
  return *crypto::make_csr(key->private_key_pem, cn);
}

class RegistryTest : public ::testing::Test {
 protected:
  RegistryTest() : registry_(store_, shared_ca("own"), clock_) {
    registry_.add_listener([this](const std::vector<RegistryEvent>& events) {
      for (const auto& e : events) events_.push_back(e);
    });
  }

  Status write(const std::function<Status(Txn&)>& fn) { return registry_.write(fn); }

  template <typename T>
  T must(Result<T> r) {
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return std::move(r).value();
  }

  CertificateRecord new_cert(CertificateStatus status = CertificateStatus::kActive) {
    return must(registry_.create_certificate_from_csr(csr_for("dev"), status));
  }

  std::string arn(const CertificateRecord& c) {
    return registry_.config().arns.certificate(c.certificate_id);
  }

  ErrorCode code_of(const std::function<Status(Txn&)>& fn) { return write(fn).code(); }

  storage::MemoryStore store_;
  ManualClock clock_{kNow};
  Registry registry_;
  std::vector<RegistryEvent> events_;
};

// ------------------------------------------------------------------ things

TEST_F(RegistryTest, ThingNameRules) {
  for (const std::string& bad : std::vector<std::string>{"", "has space", "slash/", "ünï",
                                                         std::string(129, 'a'), "dollar$"}) {
    Status st = write([&](Txn& t) { return t.create_thing({bad, "", {}}).status(); });
    EXPECT_EQ(st.code(), ErrorCode::kInvalidRequest) << bad;
  }
  EXPECT_TRUE(write([](Txn& t) { return t.create_thing({"a:b_c-D9", "", {}}).status(); }).is_ok());
  EXPECT_TRUE(write([](Txn& t) {
                return t.create_thing({std::string(128, 'x'), "", {}}).status();
              }).is_ok());
}

TEST_F(RegistryTest, AttributeLimits) {
  Attributes four{{"a", "1"}, {"b", "2"}, {"c", "3"}, {"d", "4"}};
  Status st = write([&](Txn& t) { return t.create_thing({"t", "", four}).status(); });
  EXPECT_EQ(st.code(), ErrorCode::kInvalidRequest);
  EXPECT_NE(st.message().find("at most 3 attributes"), std::string::npos) << st.message();
  // With a thing type, 50 are allowed.
  ASSERT_TRUE(write([](Txn& t) { return t.create_thing_type("locker", "", {}).status(); }).is_ok());
  Attributes fifty, fifty_one;
  for (int i = 0; i < 51; ++i) {
    if (i < 50) fifty["k" + std::to_string(i)] = "v";
    fifty_one["k" + std::to_string(i)] = "v";
  }
  EXPECT_TRUE(write([&](Txn& t) {
                return t.create_thing({"t50", "locker", fifty}).status();
              }).is_ok());
  EXPECT_EQ(code_of([&](Txn& t) {
              return t.create_thing({"t51", "locker", fifty_one}).status();
            }),
            ErrorCode::kInvalidRequest);
  // Oversize value and bad characters.
  Status big = write([](Txn& t) {
    return t.create_thing({"t", "", {{"serial", std::string(801, 'a')}}}).status();
  });
  EXPECT_NE(big.message().find("at most 800"), std::string::npos) << big.message();
  EXPECT_EQ(code_of([](Txn& t) {
              return t.create_thing({"t", "", {{"bad key", "v"}}}).status();
            }),
            ErrorCode::kInvalidRequest);
  EXPECT_EQ(code_of([](Txn& t) {
              return t.create_thing({"t", "", {{"k", "a b"}}}).status();
            }),
            ErrorCode::kInvalidRequest);
  // Nothing was stored by the refused calls.
  EXPECT_EQ(registry_.read([](Txn& t) { return t.describe_thing("t").status(); }).code(),
            ErrorCode::kNotFound);
}

TEST_F(RegistryTest, CreateThingIsIdempotentOnlyForTheSameConfig) {
  ThingRecord first;
  ASSERT_TRUE(write([&](Txn& t) {
                FK_ASSIGN_OR_RETURN(first, t.create_thing({"locker-101", "", {{"serial", "S1"}}}));
                return Status::ok();
              }).is_ok());
  ThingRecord again;
  ASSERT_TRUE(write([&](Txn& t) {
                FK_ASSIGN_OR_RETURN(again, t.create_thing({"locker-101", "", {{"serial", "S1"}}}));
                return Status::ok();
              }).is_ok());
  EXPECT_EQ(first.thing_id, again.thing_id);
  EXPECT_EQ(code_of([](Txn& t) {
              return t.create_thing({"locker-101", "", {{"serial", "S2"}}}).status();
            }),
            ErrorCode::kAlreadyExists);
}

TEST_F(RegistryTest, UpdateThingVersionsAndMerge) {
  ASSERT_TRUE(write([](Txn& t) {
                return t.create_thing({"t", "", {{"a", "1"}, {"b", "2"}}}).status();
              }).is_ok());
  UpdateThingRequest merge;
  merge.name = "t";
  merge.attributes = Attributes{{"a", ""}, {"c", "3"}};
  merge.merge_attributes = true;
  merge.expected_version = 1;
  ASSERT_TRUE(write([&](Txn& t) { return t.update_thing(merge); }).is_ok());
  ThingRecord after;
  ASSERT_TRUE(registry_
                  .read([&](Txn& t) {
                    FK_ASSIGN_OR_RETURN(after, t.describe_thing("t"));
                    return Status::ok();
                  })
                  .is_ok());
  EXPECT_EQ(after.version, 2);
  EXPECT_EQ(after.attributes, (Attributes{{"b", "2"}, {"c", "3"}}));
  // Stale expectedVersion.
  EXPECT_EQ(code_of([&](Txn& t) { return t.update_thing(merge); }), ErrorCode::kVersionConflict);
  UpdateThingRequest missing;
  missing.name = "nope";
  EXPECT_EQ(code_of([&](Txn& t) { return t.update_thing(missing); }), ErrorCode::kNotFound);
}

TEST_F(RegistryTest, DeleteThingRules) {
  EXPECT_TRUE(write([](Txn& t) { return t.delete_thing("never-existed"); }).is_ok());
  auto cert = new_cert();
  ASSERT_TRUE(write([&](Txn& t) -> Status {
                FK_RETURN_IF_ERROR(t.create_thing({"t", "", {}}).status());
                return t.attach_thing_principal("t", arn(cert));
              }).is_ok());
  Status st = write([](Txn& t) { return t.delete_thing("t"); });
  EXPECT_EQ(st.code(), ErrorCode::kInvalidRequest);
  EXPECT_EQ(st.message(), "Cannot delete. Thing t is still attached to one or more principals");
  EXPECT_EQ(code_of([](Txn& t) { return t.delete_thing("t", 7); }), ErrorCode::kVersionConflict);
  ASSERT_TRUE(write([&](Txn& t) -> Status {
                FK_RETURN_IF_ERROR(t.detach_thing_principal("t", arn(cert)));
                return t.delete_thing("t");
              }).is_ok());
}

TEST_F(RegistryTest, ThingTypeLifecycle) {
  ASSERT_TRUE(write([](Txn& t) -> Status {
                FK_RETURN_IF_ERROR(t.create_thing_type("locker", "lockers", {"serial"}).status());
                return t.create_thing({"l1", "locker", {}}).status();
              }).is_ok());
  EXPECT_EQ(code_of([](Txn& t) { return t.delete_thing_type("locker"); }),
            ErrorCode::kInvalidRequest);
  ASSERT_TRUE(write([](Txn& t) { return t.deprecate_thing_type("locker", false); }).is_ok());
  EXPECT_EQ(code_of([](Txn& t) {
              return t.create_thing({"l2", "locker", {}}).status();
            }),
            ErrorCode::kInvalidRequest);
  EXPECT_EQ(code_of([](Txn& t) { return t.delete_thing_type("locker"); }),
            ErrorCode::kInvalidRequest);  // still used by l1
  ASSERT_TRUE(write([](Txn& t) -> Status {
                FK_RETURN_IF_ERROR(t.delete_thing("l1"));
                return t.delete_thing_type("locker");
              }).is_ok());
  EXPECT_EQ(code_of([](Txn& t) {
              return t.create_thing({"l3", "nope", {}}).status();
            }),
            ErrorCode::kNotFound);
}

TEST_F(RegistryTest, ThingGroups) {
  ASSERT_TRUE(write([](Txn& t) -> Status {
                FK_RETURN_IF_ERROR(t.create_thing_group({"germany", "", "", {}}).status());
                FK_RETURN_IF_ERROR(t.create_thing_group({"berlin", "germany", "", {}}).status());
                FK_RETURN_IF_ERROR(t.create_thing({"l1", "", {}}).status());
                return t.add_thing_to_group("berlin", "l1");
              }).is_ok());
  EXPECT_EQ(code_of([](Txn& t) {
              return t.create_thing_group({"x", "missing", "", {}}).status();
            }),
            ErrorCode::kNotFound);
  EXPECT_EQ(code_of([](Txn& t) { return t.add_thing_to_group("berlin", "ghost"); }),
            ErrorCode::kNotFound);
  EXPECT_EQ(code_of([](Txn& t) { return t.delete_thing_group("germany"); }),
            ErrorCode::kInvalidRequest);  // has a child
  auto version = write([](Txn& t) {
    return t.update_thing_group("berlin", "the capital", std::nullopt, false, 1).status();
  });
  EXPECT_TRUE(version.is_ok());
  EXPECT_EQ(code_of([](Txn& t) {
              return t.update_thing_group("berlin", "x", std::nullopt, false, 1).status();
            }),
            ErrorCode::kVersionConflict);
  // At most 10 groups per thing.
  ASSERT_TRUE(write([](Txn& t) -> Status {
                for (int i = 0; i < 9; ++i) {
                  std::string g = "g" + std::to_string(i);
                  FK_RETURN_IF_ERROR(t.create_thing_group({g, "", "", {}}).status());
                  FK_RETURN_IF_ERROR(t.add_thing_to_group(g, "l1"));
                }
                return t.create_thing_group({"g9", "", "", {}}).status();
              }).is_ok());
  EXPECT_EQ(code_of([](Txn& t) { return t.add_thing_to_group("g9", "l1"); }),
            ErrorCode::kLimitExceeded);
  // Deleting the thing removes its memberships.
  ASSERT_TRUE(write([](Txn& t) -> Status {
                FK_RETURN_IF_ERROR(t.delete_thing("l1"));
                return t.delete_thing_group("berlin");
              }).is_ok());
  EXPECT_TRUE(write([](Txn& t) { return t.delete_thing_group("germany"); }).is_ok());
}

// ------------------------------------------------------------------ certificates

TEST_F(RegistryTest, CertificateFromCsrIsRecordedWithItsIssuer) {
  auto c = new_cert(CertificateStatus::kPendingActivation);
  EXPECT_EQ(c.status, CertificateStatus::kPendingActivation);
  EXPECT_EQ(c.ca_certificate_id, shared_ca("own").issuing_certificate().certificate_id);
  EXPECT_EQ(c.not_after, crypto::kAwsDefaultNotAfter);
  CertificateRecord stored;
  ASSERT_TRUE(registry_
                  .read([&](Txn& t) {
                    FK_ASSIGN_OR_RETURN(stored, t.describe_certificate(c.certificate_id));
                    return Status::ok();
                  })
                  .is_ok());
  EXPECT_EQ(stored, c);
  // A bad CSR stores nothing.
  auto bad = registry_.create_certificate_from_csr("garbage", CertificateStatus::kActive);
  EXPECT_EQ(bad.status().code(), ErrorCode::kCertificateValidation);
  storage::CertificateQuery q;
  std::size_t count = 0;
  ASSERT_TRUE(registry_
                  .read([&](Txn& t) {
                    FK_ASSIGN_OR_RETURN(auto all, t.store().list_certificates(q));
                    count = all.size();
                    return Status::ok();
                  })
                  .is_ok());
  EXPECT_EQ(count, 1u);
}

TEST_F(RegistryTest, KeysAndCertificate) {
  auto r = must(registry_.create_keys_and_certificate(crypto::KeySpec::rsa(2048),
                                                      CertificateStatus::kActive));
  EXPECT_TRUE(crypto::check_key_matches(r.certificate.pem, r.keys.private_key_pem).is_ok());
  EXPECT_EQ(r.certificate.status, CertificateStatus::kActive);
}

TEST_F(RegistryTest, CertificateStatusTransitions) {
  using S = CertificateStatus;
  auto c = new_cert(S::kPendingActivation);
  const std::string id = c.certificate_id;
  auto set = [&](S s) {
    return code_of([&](Txn& t) { return t.update_certificate_status(id, s); });
  };
  EXPECT_EQ(set(S::kPendingTransfer), ErrorCode::kInvalidRequest);
  EXPECT_EQ(set(S::kPendingActivation), ErrorCode::kInvalidRequest);
  EXPECT_EQ(set(S::kRegisterInactive), ErrorCode::kInvalidRequest);
  EXPECT_EQ(set(S::kActive), ErrorCode::kOk);
  EXPECT_EQ(set(S::kActive), ErrorCode::kOk);  // idempotent
  EXPECT_EQ(set(S::kInactive), ErrorCode::kOk);
  EXPECT_EQ(set(S::kActive), ErrorCode::kOk);
  EXPECT_EQ(set(S::kRevoked), ErrorCode::kOk);
  EXPECT_EQ(set(S::kActive), ErrorCode::kCertificateState);
  EXPECT_EQ(set(S::kInactive), ErrorCode::kCertificateState);
  EXPECT_EQ(
      code_of([](Txn& t) { return t.update_certificate_status(std::string(64, 'a'), S::kActive); }),
      ErrorCode::kNotFound);
  EXPECT_EQ(code_of([](Txn& t) { return t.update_certificate_status("xyz", S::kActive); }),
            ErrorCode::kInvalidRequest);
  // Listeners heard each change, after its commit, with the new status.
  std::vector<S> heard;
  for (const auto& e : events_) {
    if (e.kind == RegistryEvent::Kind::kCertificateStatusChanged && e.subject == id)
      heard.push_back(e.status);
  }
  EXPECT_EQ(heard, (std::vector<S>{S::kPendingActivation, S::kActive, S::kInactive, S::kActive,
                                   S::kRevoked}));
}

TEST_F(RegistryTest, DeleteCertificateRules) {
  auto c = new_cert(CertificateStatus::kActive);
  const std::string id = c.certificate_id;
  Status active = write([&](Txn& t) { return t.delete_certificate(id); });
  EXPECT_EQ(active.code(), ErrorCode::kCertificateState);
  EXPECT_EQ(active.message(),
            "Certificate must be deactivated (not ACTIVE) before deletion. Id: " + id);
  ASSERT_TRUE(write([&](Txn& t) -> Status {
                FK_RETURN_IF_ERROR(t.update_certificate_status(id, CertificateStatus::kInactive));
                FK_RETURN_IF_ERROR(t.create_policy("p", kPolicy).status());
                FK_RETURN_IF_ERROR(t.attach_policy("p", arn(c)));
                FK_RETURN_IF_ERROR(t.create_thing({"t", "", {}}).status());
                return t.attach_thing_principal("t", arn(c));
              }).is_ok());
  EXPECT_EQ(code_of([&](Txn& t) { return t.delete_certificate(id); }), ErrorCode::kDeleteConflict);
  EXPECT_EQ(code_of([&](Txn& t) { return t.delete_certificate(id, true); }),
            ErrorCode::kDeleteConflict);  // things still attached
  ASSERT_TRUE(write([&](Txn& t) { return t.detach_thing_principal("t", arn(c)); }).is_ok());
  Status policies = write([&](Txn& t) { return t.delete_certificate(id); });
  EXPECT_EQ(policies.code(), ErrorCode::kDeleteConflict);
  EXPECT_NE(policies.message().find("policies must be detached"), std::string::npos);
  ASSERT_TRUE(write([&](Txn& t) { return t.delete_certificate(id, /*force=*/true); }).is_ok());
  // forceDelete detached the policy, so the policy can go too.
  EXPECT_TRUE(write([](Txn& t) { return t.delete_policy("p"); }).is_ok());
}

// ------------------------------------------------------------------ policies

TEST_F(RegistryTest, PolicyDocumentChecks) {
  EXPECT_EQ(code_of([](Txn& t) { return t.create_policy("p", "{not json").status(); }),
            ErrorCode::kMalformedPolicy);
  EXPECT_EQ(code_of([](Txn& t) { return t.create_policy("p", "[]").status(); }),
            ErrorCode::kMalformedPolicy);
  EXPECT_EQ(code_of([](Txn& t) { return t.create_policy("p", R"({"Version":"x"})").status(); }),
            ErrorCode::kMalformedPolicy);
  std::string big = R"({"Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":")" +
                    std::string(2100, 'a') + "\"}]}";
  Status st = write([&](Txn& t) { return t.create_policy("p", big).status(); });
  EXPECT_EQ(st.code(), ErrorCode::kMalformedPolicy);
  EXPECT_NE(st.message().find("at most 2048"), std::string::npos);
  // Whitespace does not count.
  std::string spaced = std::string(kPolicy) + std::string(5000, ' ');
  EXPECT_TRUE(write([&](Txn& t) { return t.create_policy("spaced", spaced).status(); }).is_ok());
  EXPECT_EQ(code_of([](Txn& t) { return t.create_policy("bad name!", kPolicy).status(); }),
            ErrorCode::kInvalidRequest);
  EXPECT_EQ(code_of([](Txn& t) { return t.create_policy("spaced", kPolicy).status(); }),
            ErrorCode::kAlreadyExists);
}

TEST_F(RegistryTest, PolicyVersions) {
  ASSERT_TRUE(write([](Txn& t) { return t.create_policy("p", kPolicy).status(); }).is_ok());
  for (int i = 2; i <= 5; ++i) {
    PolicyVersionRecord v;
    ASSERT_TRUE(write([&](Txn& t) {
                  FK_ASSIGN_OR_RETURN(v, t.create_policy_version("p", kPolicy, i == 3));
                  return Status::ok();
                }).is_ok());
    EXPECT_EQ(v.version_id, i);
  }
  Status sixth =
      write([](Txn& t) { return t.create_policy_version("p", kPolicy, false).status(); });
  EXPECT_EQ(sixth.code(), ErrorCode::kVersionsLimitExceeded);
  PolicyRecord p;
  ASSERT_TRUE(registry_
                  .read([&](Txn& t) {
                    FK_ASSIGN_OR_RETURN(p, t.get_policy("p"));
                    return Status::ok();
                  })
                  .is_ok());
  EXPECT_EQ(p.default_version_id, 3);
  EXPECT_EQ(code_of([](Txn& t) { return t.delete_policy_version("p", 3); }),
            ErrorCode::kDeleteConflict);
  EXPECT_EQ(code_of([](Txn& t) { return t.delete_policy("p"); }), ErrorCode::kDeleteConflict);
  EXPECT_EQ(code_of([](Txn& t) { return t.set_default_policy_version("p", 9); }),
            ErrorCode::kNotFound);
  // Version ids are never reused.
  ASSERT_TRUE(write([](Txn& t) { return t.delete_policy_version("p", 5); }).is_ok());
  PolicyVersionRecord v6;
  ASSERT_TRUE(write([&](Txn& t) {
                FK_ASSIGN_OR_RETURN(v6, t.create_policy_version("p", kPolicy, false));
                return Status::ok();
              }).is_ok());
  EXPECT_EQ(v6.version_id, 6);
  events_.clear();
  ASSERT_TRUE(write([](Txn& t) { return t.set_default_policy_version("p", 6); }).is_ok());
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].kind, RegistryEvent::Kind::kPolicyChanged);
  ASSERT_TRUE(write([](Txn& t) -> Status {
                for (int id : {1, 2, 3, 4}) FK_RETURN_IF_ERROR(t.delete_policy_version("p", id));
                return t.delete_policy("p");
              }).is_ok());
}

TEST_F(RegistryTest, PolicyAttachments) {
  auto c = new_cert();
  ASSERT_TRUE(write([](Txn& t) { return t.create_policy("p", kPolicy).status(); }).is_ok());
  EXPECT_EQ(code_of([&](Txn& t) {
              return t.attach_policy("p",
                                     registry_.config().arns.certificate(std::string(64, 'b')));
            }),
            ErrorCode::kNotFound);
  EXPECT_EQ(code_of([&](Txn& t) { return t.attach_policy("missing", arn(c)); }),
            ErrorCode::kNotFound);
  EXPECT_EQ(code_of([&](Txn& t) { return t.attach_policy("p", "arn:aws:iot:eu-west-1:1:cert/x"); }),
            ErrorCode::kInvalidRequest);
  ASSERT_TRUE(write([&](Txn& t) { return t.attach_policy("p", arn(c)); }).is_ok());
  EXPECT_EQ(code_of([](Txn& t) { return t.delete_policy("p"); }), ErrorCode::kDeleteConflict);
  // At most 10 policies per certificate.
  ASSERT_TRUE(write([&](Txn& t) -> Status {
                for (int i = 0; i < 10; ++i) {
                  std::string n = "q" + std::to_string(i);
                  FK_RETURN_IF_ERROR(t.create_policy(n, kPolicy).status());
                  if (i < 9) FK_RETURN_IF_ERROR(t.attach_policy(n, arn(c)));
                }
                return Status::ok();
              }).is_ok());
  EXPECT_EQ(code_of([&](Txn& t) { return t.attach_policy("q9", arn(c)); }),
            ErrorCode::kLimitExceeded);
  // Thing groups are targets too.
  ASSERT_TRUE(write([&](Txn& t) -> Status {
                FK_RETURN_IF_ERROR(t.create_thing_group({"g", "", "", {}}).status());
                return t.attach_policy("q9", registry_.config().arns.thing_group("g"));
              }).is_ok());
  EXPECT_EQ(code_of([](Txn& t) { return t.delete_thing_group("g"); }), ErrorCode::kDeleteConflict);
}

// ------------------------------------------------------------------ templates

TEST_F(RegistryTest, Templates) {
  CreateTemplateRequest req{
      "lockers", kTemplate, kRole, "locker controllers", false, "FLEET_PROVISIONING", ""};
  TemplateRecord t;
  ASSERT_TRUE(write([&](Txn& x) {
                FK_ASSIGN_OR_RETURN(t, x.create_template(req));
                return Status::ok();
              }).is_ok());
  EXPECT_FALSE(t.enabled);
  EXPECT_EQ(code_of([&](Txn& x) { return x.create_template(req).status(); }),
            ErrorCode::kAlreadyExists);
  auto bad = req;
  bad.name = "n";
  bad.body = "{oops";
  EXPECT_EQ(code_of([&](Txn& x) { return x.create_template(bad).status(); }),
            ErrorCode::kInvalidRequest);
  bad.body = "{\"x\":\"" + std::string(10240, 'a') + "\"}";
  Status big = write([&](Txn& x) { return x.create_template(bad).status(); });
  EXPECT_NE(big.message().find("at most 10240"), std::string::npos);
  bad = req;
  bad.name = std::string(37, 'a');
  EXPECT_EQ(code_of([&](Txn& x) { return x.create_template(bad).status(); }),
            ErrorCode::kInvalidRequest);
  bad = req;
  bad.name = "n2";
  bad.provisioning_role_arn = "short";
  EXPECT_EQ(code_of([&](Txn& x) { return x.create_template(bad).status(); }),
            ErrorCode::kInvalidRequest);
  bad = req;
  bad.name = "n3";
  bad.type = "JITP";
  bad.pre_provisioning_hook = R"({"targetArn":"x"})";
  EXPECT_EQ(code_of([&](Txn& x) { return x.create_template(bad).status(); }),
            ErrorCode::kInvalidRequest);

  ASSERT_TRUE(write([](Txn& x) {
                return x.create_template_version("lockers", kTemplate, true).status();
              }).is_ok());
  EXPECT_EQ(code_of([](Txn& x) { return x.delete_template_version("lockers", 2); }),
            ErrorCode::kDeleteConflict);
  ASSERT_TRUE(write([](Txn& x) { return x.delete_template_version("lockers", 1); }).is_ok());
  UpdateTemplateRequest enable;
  enable.name = "lockers";
  enable.enabled = true;
  ASSERT_TRUE(write([&](Txn& x) { return x.update_template(enable); }).is_ok());
  UpdateTemplateRequest bad_default;
  bad_default.name = "lockers";
  bad_default.default_version_id = 1;  // deleted
  EXPECT_EQ(code_of([&](Txn& x) { return x.update_template(bad_default); }), ErrorCode::kNotFound);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(write([](Txn& x) {
                  return x.create_template_version("lockers", kTemplate, false).status();
                }).is_ok());
  }
  EXPECT_EQ(code_of([](Txn& x) {
              return x.create_template_version("lockers", kTemplate, false).status();
            }),
            ErrorCode::kVersionsLimitExceeded);
  ASSERT_TRUE(write([](Txn& x) { return x.delete_template("lockers"); }).is_ok());
}

// ------------------------------------------------------------------ registered CAs

TEST_F(RegistryTest, RegisterCaWithVerificationCertificateThenItsDevices) {
  crypto::CertificateAuthority& external = shared_ca("external");
  const std::string& ca_pem = external.issuing_certificate().pem;
  std::string code;
  ASSERT_TRUE(write([&](Txn& t) {
                FK_ASSIGN_OR_RETURN(code, t.registration_code());
                return Status::ok();
              }).is_ok());
  EXPECT_EQ(code.size(), 64u);
  // Wrong code in the verification certificate.
  auto wrong = must(external.issue_from_csr(csr_for("not-the-code"), {}));
  auto r1 = registry_.register_ca_certificate(ca_pem, wrong.pem, true, false, "DEFAULT");
  EXPECT_EQ(r1.status().code(), ErrorCode::kRegistrationCode);
  // Verification certificate signed by another CA.
  auto foreign = must(shared_ca("own").issue_from_csr(csr_for(code), {}));
  auto r2 = registry_.register_ca_certificate(ca_pem, foreign.pem, true, false, "DEFAULT");
  EXPECT_EQ(r2.status().code(), ErrorCode::kCertificateValidation);
  // Missing verification certificate.
  EXPECT_EQ(registry_.register_ca_certificate(ca_pem, std::nullopt, true, false, "DEFAULT")
                .status()
                .code(),
            ErrorCode::kInvalidRequest);
  // A device certificate is not a CA.
  EXPECT_EQ(registry_.register_ca_certificate(wrong.pem, std::nullopt, true, false, "SNI_ONLY")
                .status()
                .code(),
            ErrorCode::kCertificateValidation);
  // Device certificates of an unregistered CA are refused.
  auto device = must(external.issue_from_csr(csr_for("d1"), {}));
  EXPECT_EQ(registry_.register_certificate(device.pem, std::nullopt, CertificateStatus::kActive)
                .status()
                .code(),
            ErrorCode::kCertificateValidation);

  auto good = must(external.issue_from_csr(csr_for(code), {}));
  auto ca = must(registry_.register_ca_certificate(ca_pem, good.pem, true, false, "DEFAULT"));
  EXPECT_EQ(ca.status, CertificateStatus::kActive);
  EXPECT_EQ(
      registry_.register_ca_certificate(ca_pem, good.pem, true, false, "DEFAULT").status().code(),
      ErrorCode::kAlreadyExists);

  auto reg = must(registry_.register_certificate(device.pem, ca_pem, CertificateStatus::kActive));
  EXPECT_EQ(reg.ca_certificate_id, ca.certificate_id);
  EXPECT_EQ(registry_.register_certificate(device.pem, std::nullopt, CertificateStatus::kActive)
                .status()
                .code(),
            ErrorCode::kAlreadyExists);
  // Without caCertificatePem the issuer is found among the registered CAs.
  auto device2 = must(external.issue_from_csr(csr_for("d2"), {}));
  auto reg2 =
      must(registry_.register_certificate(device2.pem, std::nullopt, CertificateStatus::kInactive));
  EXPECT_EQ(reg2.ca_certificate_id, ca.certificate_id);
  // While the CA is INACTIVE, its certificates cannot be registered or activated.
  ASSERT_TRUE(write([&](Txn& t) {
                return t.update_ca_certificate(ca.certificate_id, CertificateStatus::kInactive,
                                               std::nullopt);
              }).is_ok());
  auto device3 = must(external.issue_from_csr(csr_for("d3"), {}));
  EXPECT_EQ(registry_.register_certificate(device3.pem, std::nullopt, CertificateStatus::kActive)
                .status()
                .code(),
            ErrorCode::kCertificateState);
  EXPECT_EQ(code_of([&](Txn& t) {
              return t.update_certificate_status(reg2.certificate_id, CertificateStatus::kActive);
            }),
            ErrorCode::kCertificateState);
  // A CA with registered certificates cannot be deleted.
  EXPECT_EQ(code_of([&](Txn& t) { return t.delete_ca_certificate(ca.certificate_id); }),
            ErrorCode::kDeleteConflict);
  // Without a CA at all.
  auto device4 = must(external.issue_from_csr(csr_for("d4"), {}));
  auto reg4 =
      must(registry_.register_certificate_without_ca(device4.pem, CertificateStatus::kActive));
  EXPECT_EQ(reg4.ca_certificate_id, "");
  // Certificates fleetkey issued itself can be registered elsewhere-style too.
  auto own = must(shared_ca("own").issue_from_csr(csr_for("own"), {}));
  auto reg5 =
      must(registry_.register_certificate(own.pem, std::nullopt, CertificateStatus::kActive));
  EXPECT_EQ(reg5.ca_certificate_id, shared_ca("own").issuing_certificate().certificate_id);
}

// ------------------------------------------------------------------ atomicity

TEST_F(RegistryTest, MultiRecordChangeIsAllOrNothing) {
  auto c = new_cert(CertificateStatus::kPendingActivation);
  ASSERT_TRUE(write([](Txn& t) { return t.create_policy("device", kPolicy).status(); }).is_ok());
  events_.clear();
  // Thing + activation + policy + principal, then a failure at the very end.
  Status st = write([&](Txn& t) -> Status {
    FK_RETURN_IF_ERROR(t.create_thing({"locker-7", "", {{"serial", "S7"}}}).status());
    FK_RETURN_IF_ERROR(t.update_certificate_status(c.certificate_id, CertificateStatus::kActive));
    FK_RETURN_IF_ERROR(t.attach_policy("device", arn(c)));
    FK_RETURN_IF_ERROR(t.attach_thing_principal("locker-7", arn(c)));
    return t.attach_policy("no-such-policy", arn(c));
  });
  EXPECT_EQ(st.code(), ErrorCode::kNotFound);
  EXPECT_TRUE(events_.empty());  // nothing was committed, nothing was announced
  ASSERT_TRUE(registry_
                  .read([&](Txn& t) -> Status {
                    EXPECT_EQ(t.describe_thing("locker-7").status().code(), ErrorCode::kNotFound);
                    FK_ASSIGN_OR_RETURN(auto cert, t.describe_certificate(c.certificate_id));
                    EXPECT_EQ(cert.status, CertificateStatus::kPendingActivation);
                    FK_ASSIGN_OR_RETURN(auto pols, t.store().list_target_policies(arn(c), {}));
                    EXPECT_TRUE(pols.empty());
                    return Status::ok();
                  })
                  .is_ok());
}

}  // namespace
}  // namespace fk::registry
