// The broker's connect decision: registered, ACTIVE certificate; ACTIVE CA.
#include "app/connect_check.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "crypto/openssl/openssl_certificate_authority.h"
#include "crypto/x509.h"
#include "storage/memory/memory_store.h"

namespace fk::app {
namespace {

TEST(RegistryConnectCheck, DecidesFromTheRegistry) {
  ManualClock clock(1795000000);
  auto dir = std::filesystem::temp_directory_path() / ("fk_connect_" + std::to_string(::getpid()));
  auto ca = crypto::OpensslCertificateAuthority::load_or_create(dir.string(), {}, clock);
  ASSERT_TRUE(ca.is_ok());
  storage::MemoryStore store;
  registry::Registry reg(store, **ca, clock);
  RegistryConnectCheck check(reg);
  auto make = [&](storage::CertificateStatus st) {
    auto key = crypto::generate_key_pair(crypto::KeySpec::ec_p256());
    auto c = reg.create_certificate_from_csr(*crypto::make_csr(key->private_key_pem, "d"), st);
    EXPECT_TRUE(c.is_ok());
    return c->certificate_id;
  };
  EXPECT_TRUE(check.decide(make(storage::CertificateStatus::kActive)).allowed);
  for (auto st : {storage::CertificateStatus::kInactive, storage::CertificateStatus::kRevoked,
                  storage::CertificateStatus::kPendingActivation}) {
    std::string id = make(st);
    auto d = check.decide(id);
    EXPECT_FALSE(d.allowed);
    EXPECT_NE(d.reason.find(std::string(storage::to_string(st))), std::string::npos) << d.reason;
  }
  auto unknown = check.decide(std::string(64, 'a'));
  EXPECT_FALSE(unknown.allowed);
  EXPECT_NE(unknown.reason.find("is not registered"), std::string::npos);
  // The asynchronous path answers the same.
  std::promise<broker::AuthDecision> p;
  broker::ClientIdentity who;
  who.certificate.certificate_id = std::string(64, 'a');
  check.check(who, [&](broker::AuthDecision d) { p.set_value(d); });
  EXPECT_FALSE(p.get_future().get().allowed);
  // Cached answers are dropped on change: a revoked certificate is refused at once.
  std::string active = make(storage::CertificateStatus::kActive);
  auto ask = [&](const std::string& id) {
    std::promise<broker::AuthDecision> pr;
    broker::ClientIdentity c;
    c.certificate.certificate_id = id;
    check.check(c, [&](broker::AuthDecision d) { pr.set_value(d); });
    return pr.get_future().get();
  };
  EXPECT_TRUE(ask(active).allowed);
  EXPECT_TRUE(ask(active).allowed);  // from the cache
  EXPECT_GE(check.cached(), 2u);
  ASSERT_TRUE(reg.write([&](registry::Txn& t) {
                   return t.update_certificate_status(active, storage::CertificateStatus::kRevoked);
                 })
                  .is_ok());
  check.invalidate(active);  // what fleetkeyd's registry listener does
  EXPECT_FALSE(ask(active).allowed);
  check.invalidate_all();
  EXPECT_EQ(check.cached(), 0u);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace fk::app
