// The broker's authorizer over a real registry: certificate status, IoT policies, thing and
// group policies, and changes reaching live connections.
#include "app/policy_authorizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <future>
#include <thread>

#include "crypto/openssl/openssl_certificate_authority.h"
#include "crypto/x509.h"
#include "storage/memory/memory_store.h"

namespace fk::app {
namespace {

constexpr const char* kDevicePolicy = R"({"Version":"2012-10-17","Statement":[
  {"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:us-east-1:123456789012:client/${iot:Connection.Thing.ThingName}"},
  {"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":"arn:aws:iot:us-east-1:123456789012:topic/things/${iot:Connection.Thing.ThingName}/*"},
  {"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:us-east-1:123456789012:topicfilter/things/${iot:Connection.Thing.ThingName}/*"}]})";

class PolicyAuthorizerTest : public ::testing::Test {
 protected:
  PolicyAuthorizerTest()
      : dir_(std::filesystem::temp_directory_path() /
             ("fk_authz_" + std::to_string(::getpid()) + "_" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name())),
        clock_(1795000000) {
    auto ca = crypto::OpensslCertificateAuthority::load_or_create(dir_.string(), {}, clock_);
    EXPECT_TRUE(ca.is_ok());
    ca_ = std::move(*ca);
    reg_ = std::make_unique<registry::Registry>(store_, *ca_, clock_);
  }
  ~PolicyAuthorizerTest() override { std::filesystem::remove_all(dir_); }

  std::string make_certificate(storage::CertificateStatus st) {
    auto key = crypto::generate_key_pair(crypto::KeySpec::ec_p256());
    auto c = reg_->create_certificate_from_csr(*crypto::make_csr(key->private_key_pem, "d"), st);
    EXPECT_TRUE(c.is_ok());
    return c->certificate_id;
  }
  void write(const std::function<Status(registry::Txn&)>& fn) {
    Status st = reg_->write(fn);
    ASSERT_TRUE(st.is_ok()) << st.to_string();
  }
  // A device as the article makes it: thing, ACTIVE certificate, device policy, attached.
  std::string make_device(const std::string& name) {
    std::string id = make_certificate(storage::CertificateStatus::kActive);
    write([&](registry::Txn& t) -> Status {
      FK_RETURN_IF_ERROR(t.create_thing({name, "", {}}).status());
      FK_RETURN_IF_ERROR(t.attach_policy("device", arns().certificate(id)));
      return t.attach_thing_principal(name, arns().certificate(id));
    });
    return id;
  }
  const registry::ArnScope& arns() { return reg_->config().arns; }
  static broker::ClientIdentity who(const std::string& cert, const std::string& client) {
    broker::ClientIdentity c;
    auto peer = std::make_shared<net::PeerCertificate>();
    peer->certificate_id = cert;
    c.peer = std::move(peer);
    c.client_id = client;
    c.remote_address = "127.0.0.1:50000";
    return c;
  }
  broker::ConnectDecision connect(PolicyAuthorizer& a, const std::string& cert,
                                  const std::string& client) {
    std::promise<broker::ConnectDecision> p;
    a.authorize_connect(who(cert, client), [&](broker::ConnectDecision d) { p.set_value(d); });
    return p.get_future().get();
  }

  std::filesystem::path dir_;
  ManualClock clock_;
  std::unique_ptr<crypto::OpensslCertificateAuthority> ca_;
  storage::MemoryStore store_;
  std::unique_ptr<registry::Registry> reg_;
};

TEST_F(PolicyAuthorizerTest, RefusesCertificatesThatAreNotActive) {
  PolicyAuthorizer authz(*reg_);
  for (auto st : {storage::CertificateStatus::kInactive, storage::CertificateStatus::kRevoked,
                  storage::CertificateStatus::kPendingActivation}) {
    auto d = authz.decide(who(make_certificate(st), "c"));
    EXPECT_FALSE(d.decision.allowed);
    EXPECT_NE(d.decision.reason.find(std::string(storage::to_string(st))), std::string::npos)
        << d.decision.reason;
  }
  auto unknown = authz.decide(who(std::string(64, 'a'), "c"));
  EXPECT_FALSE(unknown.decision.allowed);
  EXPECT_NE(unknown.decision.reason.find("is not registered"), std::string::npos);
}

TEST_F(PolicyAuthorizerTest, DefaultDenyWithoutAPolicy) {
  PolicyAuthorizer authz(*reg_);
  std::string id = make_certificate(storage::CertificateStatus::kActive);
  auto d = connect(authz, id, "locker-101");
  EXPECT_FALSE(d.decision.allowed);
  EXPECT_EQ(d.decision.reason,
            "iot:Connect on client/locker-101 for certificate " + id + ": no statement allowed it");
  // With authorization off, an ACTIVE certificate may do anything.
  PolicyAuthorizer off(*reg_, /*enforce_policies=*/false);
  auto o = connect(off, id, "locker-101");
  ASSERT_TRUE(o.decision.allowed);
  EXPECT_TRUE(o.permissions->publish("anything", true).allowed);
}

TEST_F(PolicyAuthorizerTest, ThingScopedDevicePolicy) {
  write([&](registry::Txn& t) { return t.create_policy("device", kDevicePolicy).status(); });
  PolicyAuthorizer authz(*reg_);
  std::string a = make_device("locker-101");
  std::string b = make_device("locker-102");
  auto da = connect(authz, a, "locker-101");
  ASSERT_TRUE(da.decision.allowed) << da.decision.reason;
  const broker::Permissions& pa = *da.permissions;
  EXPECT_TRUE(pa.publish("things/locker-101/state", false).allowed);
  EXPECT_TRUE(pa.subscribe("things/locker-101/commands").allowed);
  EXPECT_TRUE(pa.receive("things/locker-101/commands").allowed);
  auto other = pa.publish("things/locker-102/state", false);
  EXPECT_FALSE(other.allowed);
  EXPECT_EQ(other.reason, "iot:Publish on topic/things/locker-102/state for certificate " + a +
                              " (client locker-101): no statement allowed it");
  EXPECT_FALSE(pa.subscribe("things/+/commands").allowed);
  EXPECT_FALSE(pa.receive("things/locker-102/commands").allowed);
  // Retained publishes need iot:RetainPublish too.
  auto retained = pa.publish("things/locker-101/state", true);
  EXPECT_FALSE(retained.allowed);
  EXPECT_NE(retained.reason.find("iot:RetainPublish"), std::string::npos);
  // Device A's certificate with device B's client id: the thing is not A's, so Connect fails.
  auto stolen = connect(authz, a, "locker-102");
  EXPECT_FALSE(stolen.decision.allowed);
  EXPECT_TRUE(connect(authz, b, "locker-102").decision.allowed);
  // Again from the cache: the same answers.
  EXPECT_GE(authz.cached(), 2u);
  EXPECT_TRUE(connect(authz, a, "locker-101").decision.allowed);
}

TEST_F(PolicyAuthorizerTest, ChangesReachLiveConnections) {
  write([&](registry::Txn& t) { return t.create_policy("device", kDevicePolicy).status(); });
  PolicyAuthorizer authz(*reg_);
  int listener = reg_->add_listener([&](const auto& events) { authz.on_registry_events(events); });
  std::string a = make_device("locker-101");
  auto d = connect(authz, a, "locker-101");
  ASSERT_TRUE(d.decision.allowed);
  EXPECT_EQ(authz.live_connections(), 1u);
  EXPECT_TRUE(d.permissions->publish("things/locker-101/state", false).allowed);

  // Detach the policy: the live connection loses it.
  write([&](registry::Txn& t) { return t.detach_policy("device", arns().certificate(a)); });
  authz.wait_for_rebinds();
  EXPECT_FALSE(d.permissions->publish("things/locker-101/state", false).allowed);
  EXPECT_FALSE(connect(authz, a, "locker-101").decision.allowed);

  // A group policy (through the thing's group) gives it back, as the thing's client id only.
  write([&](registry::Txn& t) -> Status {
    FK_RETURN_IF_ERROR(t.create_thing_group({"lockers", "", "", {}}).status());
    FK_RETURN_IF_ERROR(t.create_thing_group({"berlin", "lockers", "", {}}).status());
    FK_RETURN_IF_ERROR(t.add_thing_to_group("berlin", "locker-101"));
    return t.attach_policy("device", arns().thing_group("lockers"));  // on the parent
  });
  authz.wait_for_rebinds();
  EXPECT_TRUE(d.permissions->publish("things/locker-101/state", false).allowed);

  // A new default version narrows it at once.
  write([&](registry::Txn& t) {
    return t
        .create_policy_version(
            "device",
            R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]})",
            true)
        .status();
  });
  authz.wait_for_rebinds();
  EXPECT_FALSE(d.permissions->publish("things/locker-101/state", false).allowed);
  EXPECT_TRUE(connect(authz, a, "locker-101").decision.allowed);

  // The thing leaves the group: its group policies stop applying.
  write([&](registry::Txn& t) { return t.remove_thing_from_group("berlin", "locker-101"); });
  EXPECT_FALSE(connect(authz, a, "locker-101").decision.allowed);
  reg_->remove_listener(listener);
}

TEST_F(PolicyAuthorizerTest, ConnectAttributesAndSourceIp) {
  write([&](registry::Txn& t) {
    return t
        .create_policy("no-persistent", R"({"Version":"2012-10-17","Statement":[
          {"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"127.0.0.0/8"}}},
          {"Effect":"Deny","Action":"iot:Connect","Resource":"*","Condition":{"ForAnyValue:StringEquals":{"iot:ConnectAttributes":"PersistentConnect"}}}]})")
        .status();
  });
  std::string id = make_certificate(storage::CertificateStatus::kActive);
  write([&](registry::Txn& t) { return t.attach_policy("no-persistent", arns().certificate(id)); });
  PolicyAuthorizer authz(*reg_);
  EXPECT_TRUE(authz.decide(who(id, "x")).decision.allowed);
  auto persistent = who(id, "x");
  persistent.persistent_connect = true;
  auto d = authz.decide(persistent);
  EXPECT_FALSE(d.decision.allowed);
  EXPECT_NE(d.decision.reason.find("denied by policy no-persistent statement 1"), std::string::npos)
      << d.decision.reason;
  auto remote = who(id, "x");
  remote.remote_address = "198.51.100.4:1234";
  EXPECT_FALSE(authz.decide(remote).decision.allowed);
}

// A certificate whose policy allows any client id, connecting with a new id each time (a
// flood, or a fleet of short-lived clients): what the authorizer keeps for connections that
// ended stays bounded, and live connections keep theirs.
TEST_F(PolicyAuthorizerTest, ConnectionsThatEndedAreForgotten) {
  write([&](registry::Txn& t) {
    return t
        .create_policy("any-client", R"({"Version":"2012-10-17","Statement":[
          {"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]})")
        .status();
  });
  std::string id = make_certificate(storage::CertificateStatus::kActive);
  write([&](registry::Txn& t) { return t.attach_policy("any-client", arns().certificate(id)); });
  PolicyAuthorizer authz(*reg_);
  std::vector<broker::PermissionsPtr> held;
  for (int i = 0; i < 3000; ++i) {
    auto d = connect(authz, id, "client-" + std::to_string(i));
    ASSERT_TRUE(d.decision.allowed) << d.decision.reason;
    if (i % 600 == 0) held.push_back(d.permissions);  // five stay connected
  }
  // The worker thread that answered the last connect lets go of its copy just after.
  auto live_becomes = [&](std::size_t n) {
    for (int i = 0; i < 200 && authz.live_connections() != n; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return authz.live_connections();
  };
  EXPECT_EQ(live_becomes(5), 5u);
  EXPECT_LE(authz.live_entries(), 1024u);
  EXPECT_GE(authz.live_entries(), 5u);
  held.clear();
  EXPECT_EQ(live_becomes(0), 0u);
}

}  // namespace
}  // namespace fk::app
