// One storage contract, the same assertions on every backend (memory, SQLite, PostgreSQL).
// PostgreSQL: the server scripts/postgres.sh started (CTest fixture `postgres`), whose URL is in
// the file FK_POSTGRES_URL_FILE names; each test gets a schema of its own.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "storage/group_committer.h"
#include "storage/memory/memory_store.h"
#include "storage/postgres/postgres_store.h"
#include "storage/sqlite/sqlite_store.h"
#include "support/postgres_url.h"

namespace fk::storage {
namespace {

using test::postgres_url;

struct Backend {
  std::string name;
  std::function<std::unique_ptr<Store>(const std::string& dir)> open;
};

void PrintTo(const Backend& b, std::ostream* os) {
  *os << b.name;
}

class StoreContract : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(name.begin(), name.end(), '/', '_');
    dir_ = (std::filesystem::temp_directory_path() /
            ("fk_contract_" + std::to_string(::getpid()) + "_" + name))
               .string();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    store_ = GetParam().open(dir_);
    if (!store_ && GetParam().name == "postgres" && postgres_url().empty())
      GTEST_FAIL() << "no PostgreSQL: FK_POSTGRES_URL_FILE names no file with a URL (ctest starts "
                      "one with scripts/postgres.sh)";
    ASSERT_TRUE(store_);
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::unique_ptr<Transaction> write() {
    auto t = store_->begin_write();
    EXPECT_TRUE(t.is_ok()) << t.status().to_string();
    return std::move(t).value();
  }
  std::unique_ptr<Transaction> read() {
    auto t = store_->begin_read();
    EXPECT_TRUE(t.is_ok()) << t.status().to_string();
    return std::move(t).value();
  }

  static ThingRecord thing(const std::string& name, const std::string& type = "",
                           Attributes attrs = {}) {
    return {name, "id-" + name, type, std::move(attrs), 1, 100};
  }
  static CertificateRecord cert(const std::string& id, EpochSeconds created,
                                const std::string& ca = "ca1") {
    CertificateRecord c;
    c.certificate_id = id;
    c.pem = "PEM-" + id;
    c.status = CertificateStatus::kPendingActivation;
    c.ca_certificate_id = ca;
    c.subject = "CN=" + id;
    c.issuer = "CN=issuer";
    c.serial_hex = "0a0b";
    c.not_before = 10;
    c.not_after = 2524607999;
    c.created_at = created;
    c.updated_at = created;
    c.customer_version = 3;
    c.generation_id = "gen";
    return c;
  }

  std::string dir_;
  std::unique_ptr<Store> store_;
};

TEST_P(StoreContract, ThingsRoundTripAndDelete) {
  auto w = write();
  ThingRecord t = thing("locker-1", "locker", {{"serial", "A1"}, {"site", "berlin"}});
  t.version = 7;
  ASSERT_TRUE(w->put_thing(t).is_ok());
  ASSERT_TRUE(w->commit().is_ok());
  auto r = read();
  auto got = r->get_thing("locker-1");
  ASSERT_TRUE(got.is_ok());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ(**got, t);
  EXPECT_FALSE(r->get_thing("locker-2")->has_value());
  ASSERT_TRUE(r->commit().is_ok());
  auto w2 = write();
  ASSERT_TRUE(w2->delete_thing("locker-1").is_ok());
  ASSERT_TRUE(w2->delete_thing("never-there").is_ok());
  ASSERT_TRUE(w2->commit().is_ok());
  EXPECT_FALSE(read()->get_thing("locker-1")->has_value());
}

TEST_P(StoreContract, ListThingsFiltersAndPages) {
  auto w = write();
  for (int i = 0; i < 10; ++i) {
    std::string n = "dev-" + std::to_string(i);
    ASSERT_TRUE(
        w->put_thing(thing(n, i % 2 ? "odd" : "even",
                           {{"batch", i < 5 ? "b1" : "b2"}, {"fw.ver", "1." + std::to_string(i)}}))
            .is_ok());
  }
  ASSERT_TRUE(w->put_thing(thing("zz")).is_ok());
  ASSERT_TRUE(w->commit().is_ok());
  auto r = read();
  ThingQuery all;
  EXPECT_EQ(r->list_things(all)->size(), 11u);
  ThingQuery page;
  page.page.limit = 4;
  auto p1 = *r->list_things(page);
  ASSERT_EQ(p1.size(), 4u);
  EXPECT_EQ(p1[0].name, "dev-0");
  page.page.after = p1.back().name;
  auto p2 = *r->list_things(page);
  ASSERT_EQ(p2.size(), 4u);
  EXPECT_EQ(p2[0].name, "dev-4");
  ThingQuery by_type;
  by_type.type_name = "odd";
  EXPECT_EQ(r->list_things(by_type)->size(), 5u);
  ThingQuery by_attr;
  by_attr.attribute_name = "batch";
  by_attr.attribute_value = "b2";
  EXPECT_EQ(r->list_things(by_attr)->size(), 5u);
  ThingQuery dotted;  // attribute names may contain '.'
  dotted.attribute_name = "fw.ver";
  dotted.attribute_value = "1.3";
  auto d = *r->list_things(dotted);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].name, "dev-3");
  ThingQuery prefix;
  prefix.attribute_name = "fw.ver";
  prefix.attribute_value = "1.";
  prefix.attribute_value_prefix = true;
  EXPECT_EQ(r->list_things(prefix)->size(), 10u);
  ThingQuery names;
  names.name_prefix = "dev-";
  EXPECT_EQ(r->list_things(names)->size(), 10u);
}

TEST_P(StoreContract, ThingTypesAndGroups) {
  auto w = write();
  ThingTypeRecord type{"locker", "tid", "lockers", {"serial", "site"}, true, 55, 10};
  ASSERT_TRUE(w->put_thing_type(type).is_ok());
  ThingGroupRecord g{"berlin", "gid", "germany", "desc", {{"k", "v"}}, 3, 11};
  ASSERT_TRUE(w->put_thing_group(g).is_ok());
  ASSERT_TRUE(w->put_thing_group({"germany", "gid2", "", "", {}, 1, 9}).is_ok());
  ASSERT_TRUE(w->add_group_member("berlin", "t1").is_ok());
  ASSERT_TRUE(w->add_group_member("berlin", "t2").is_ok());
  ASSERT_TRUE(w->add_group_member("berlin", "t2").is_ok());  // idempotent
  ASSERT_TRUE(w->add_group_member("germany", "t2").is_ok());
  ASSERT_TRUE(w->commit().is_ok());
  auto r = read();
  EXPECT_EQ(**r->get_thing_type("locker"), type);
  EXPECT_EQ(**r->get_thing_group("berlin"), g);
  EXPECT_EQ(r->list_thing_types(Page{})->size(), 1u);
  EXPECT_EQ(r->list_thing_groups(Page{})->size(), 2u);
  EXPECT_EQ(*r->list_group_members("berlin", Page{}), (std::vector<std::string>{"t1", "t2"}));
  EXPECT_EQ(*r->list_groups_of_thing("t2", Page{}),
            (std::vector<std::string>{"berlin", "germany"}));
  EXPECT_EQ(*r->list_group_members("berlin", Page{"t1", 0}), (std::vector<std::string>{"t2"}));
  ASSERT_TRUE(r->commit().is_ok());
  auto w2 = write();
  ASSERT_TRUE(w2->remove_group_member("berlin", "t1").is_ok());
  ASSERT_TRUE(w2->delete_thing_type("locker").is_ok());
  ASSERT_TRUE(w2->commit().is_ok());
  auto r2 = read();
  EXPECT_EQ(*r2->list_group_members("berlin", Page{}), (std::vector<std::string>{"t2"}));
  EXPECT_FALSE(r2->get_thing_type("locker")->has_value());
}

TEST_P(StoreContract, CertificatesOrderedByCreationWithCursorAndCaFilter) {
  auto w = write();
  ASSERT_TRUE(w->put_certificate(cert("cc", 300)).is_ok());
  ASSERT_TRUE(w->put_certificate(cert("aa", 100, "ca2")).is_ok());
  ASSERT_TRUE(w->put_certificate(cert("bb", 300)).is_ok());
  ASSERT_TRUE(w->put_certificate(cert("dd", 200)).is_ok());
  ASSERT_TRUE(w->commit().is_ok());
  auto r = read();
  EXPECT_EQ(**r->get_certificate("cc"), cert("cc", 300));
  CertificateQuery q;
  auto all = *r->list_certificates(q);
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[0].certificate_id, "aa");
  EXPECT_EQ(all[1].certificate_id, "dd");
  EXPECT_EQ(all[2].certificate_id, "bb");
  EXPECT_EQ(all[3].certificate_id, "cc");
  q.page.limit = 2;
  auto p1 = *r->list_certificates(q);
  q.page.after = certificate_page_key(p1.back());
  auto p2 = *r->list_certificates(q);
  ASSERT_EQ(p2.size(), 2u);
  EXPECT_EQ(p2[0].certificate_id, "bb");
  CertificateQuery desc;
  desc.ascending = false;
  desc.page.limit = 3;
  auto d = *r->list_certificates(desc);
  EXPECT_EQ(d[0].certificate_id, "cc");
  desc.page.after = certificate_page_key(d.back());
  auto d2 = *r->list_certificates(desc);
  ASSERT_EQ(d2.size(), 1u);
  EXPECT_EQ(d2[0].certificate_id, "aa");
  CertificateQuery by_ca;
  by_ca.ca_certificate_id = "ca2";
  auto c2 = *r->list_certificates(by_ca);
  ASSERT_EQ(c2.size(), 1u);
  EXPECT_EQ(c2[0].certificate_id, "aa");
}

TEST_P(StoreContract, CertificatesBySerialAndStatus) {
  auto w = write();
  auto with = [](CertificateRecord c, std::string serial, CertificateStatus st) {
    c.serial_hex = std::move(serial);
    c.status = st;
    return c;
  };
  ASSERT_TRUE(
      w->put_certificate(with(cert("aa", 100), "01ff", CertificateStatus::kRevoked)).is_ok());
  ASSERT_TRUE(
      w->put_certificate(with(cert("bb", 200), "02ff", CertificateStatus::kActive)).is_ok());
  ASSERT_TRUE(w->put_certificate(with(cert("cc", 300, "ca2"), "01ff", CertificateStatus::kRevoked))
                  .is_ok());
  ASSERT_TRUE(
      w->put_certificate(with(cert("dd", 400), "03ff", CertificateStatus::kRevoked)).is_ok());
  ASSERT_TRUE(w->commit().is_ok());
  auto r = read();
  auto ids = [&](const CertificateQuery& q) {
    std::vector<std::string> out;
    auto listed = r->list_certificates(q);
    EXPECT_TRUE(listed.is_ok());
    if (listed.is_ok())
      for (const auto& c : *listed) out.push_back(c.certificate_id);
    return out;
  };
  CertificateQuery serial;
  serial.serial_hex = "01ff";
  EXPECT_EQ(ids(serial), (std::vector<std::string>{"aa", "cc"}));
  serial.ca_certificate_id = "ca2";
  EXPECT_EQ(ids(serial), (std::vector<std::string>{"cc"}));
  serial.serial_hex = "0a0b";
  EXPECT_TRUE(ids(serial).empty());
  CertificateQuery revoked;
  revoked.status = CertificateStatus::kRevoked;
  revoked.ca_certificate_id = "ca1";
  EXPECT_EQ(ids(revoked), (std::vector<std::string>{"aa", "dd"}));
  revoked.page.limit = 1;
  auto first = *r->list_certificates(revoked);
  ASSERT_EQ(first.size(), 1u);
  revoked.page.after = certificate_page_key(first.back());
  EXPECT_EQ(ids(revoked), (std::vector<std::string>{"dd"}));
  CertificateQuery active;
  active.status = CertificateStatus::kActive;
  EXPECT_EQ(ids(active), (std::vector<std::string>{"bb"}));
}

TEST_P(StoreContract, CaCertificates) {
  auto w = write();
  CaCertificateRecord ca;
  ca.certificate_id = "ca1";
  ca.pem = "PEM";
  ca.status = CertificateStatus::kActive;
  ca.auto_registration = true;
  ca.subject = "CN=ca";
  ca.registration_config = "{}";
  ASSERT_TRUE(w->put_ca_certificate(ca).is_ok());
  ASSERT_TRUE(w->commit().is_ok());
  EXPECT_EQ(**read()->get_ca_certificate("ca1"), ca);
  EXPECT_EQ(read()->list_ca_certificates(Page{})->size(), 1u);
  auto w2 = write();
  ASSERT_TRUE(w2->delete_ca_certificate("ca1").is_ok());
  ASSERT_TRUE(w2->commit().is_ok());
  EXPECT_FALSE(read()->get_ca_certificate("ca1")->has_value());
}

TEST_P(StoreContract, PoliciesVersionsAndAttachments) {
  auto w = write();
  ASSERT_TRUE(w->put_policy({"device", 2, 3, 1, 2, "g"}).is_ok());
  ASSERT_TRUE(w->put_policy_version({"device", 1, "{v1}", 1}).is_ok());
  ASSERT_TRUE(w->put_policy_version({"device", 2, "{v2}", 2}).is_ok());
  ASSERT_TRUE(w->put_policy_version({"other", 1, "{o}", 2}).is_ok());
  ASSERT_TRUE(w->attach_policy("device", "arn:cert/1").is_ok());
  ASSERT_TRUE(w->attach_policy("device", "arn:cert/2").is_ok());
  ASSERT_TRUE(w->attach_policy("other", "arn:cert/1").is_ok());
  ASSERT_TRUE(w->commit().is_ok());
  auto r = read();
  EXPECT_EQ((**r->get_policy("device")).default_version_id, 2);
  auto versions = *r->list_policy_versions("device");
  ASSERT_EQ(versions.size(), 2u);
  EXPECT_EQ(versions[1].document, "{v2}");
  EXPECT_EQ((**r->get_policy_version("device", 1)).document, "{v1}");
  EXPECT_EQ(*r->list_policy_targets("device", Page{}),
            (std::vector<std::string>{"arn:cert/1", "arn:cert/2"}));
  EXPECT_EQ(*r->list_target_policies("arn:cert/1", Page{}),
            (std::vector<std::string>{"device", "other"}));
  EXPECT_EQ(*r->list_target_policies("arn:cert/1", Page{"", 1}),
            (std::vector<std::string>{"device"}));
  ASSERT_TRUE(r->commit().is_ok());
  auto w2 = write();
  ASSERT_TRUE(w2->detach_policy("device", "arn:cert/1").is_ok());
  ASSERT_TRUE(w2->delete_policy_version("device", 1).is_ok());
  ASSERT_TRUE(w2->delete_policy("other").is_ok());
  ASSERT_TRUE(w2->commit().is_ok());
  auto r2 = read();
  EXPECT_EQ(*r2->list_target_policies("arn:cert/1", Page{}), (std::vector<std::string>{"other"}));
  EXPECT_EQ(r2->list_policy_versions("device")->size(), 1u);
  EXPECT_FALSE(r2->get_policy_version("other", 1)->has_value());  // versions go with the policy
}

TEST_P(StoreContract, ThingPrincipals) {
  auto w = write();
  ASSERT_TRUE(w->attach_thing_principal("t1", "arn:cert/1").is_ok());
  ASSERT_TRUE(w->attach_thing_principal("t2", "arn:cert/1").is_ok());
  ASSERT_TRUE(w->attach_thing_principal("t1", "arn:cert/2").is_ok());
  ASSERT_TRUE(w->commit().is_ok());
  auto r = read();
  EXPECT_EQ(*r->list_thing_principals("t1", Page{}),
            (std::vector<std::string>{"arn:cert/1", "arn:cert/2"}));
  EXPECT_EQ(*r->list_principal_things("arn:cert/1", Page{}),
            (std::vector<std::string>{"t1", "t2"}));
  ASSERT_TRUE(r->commit().is_ok());
  auto w2 = write();
  ASSERT_TRUE(w2->detach_thing_principal("t1", "arn:cert/1").is_ok());
  ASSERT_TRUE(w2->commit().is_ok());
  EXPECT_EQ(*read()->list_principal_things("arn:cert/1", Page{}), (std::vector<std::string>{"t2"}));
}

TEST_P(StoreContract, TemplatesAndVersions) {
  auto w = write();
  TemplateRecord t;
  t.name = "lockers";
  t.template_id = "x";
  t.enabled = true;
  t.provisioning_role_arn = "arn:aws:iam::123456789012:role/p";
  t.pre_provisioning_hook = R"({"targetArn":"http://h"})";
  t.default_version_id = 2;
  t.next_version_id = 3;
  ASSERT_TRUE(w->put_template(t).is_ok());
  ASSERT_TRUE(w->put_template_version({"lockers", 1, "{}", 1}).is_ok());
  ASSERT_TRUE(w->put_template_version({"lockers", 2, "{\"a\":1}", 2}).is_ok());
  ASSERT_TRUE(w->commit().is_ok());
  auto r = read();
  EXPECT_EQ(**r->get_template("lockers"), t);
  EXPECT_EQ((**r->get_template_version("lockers", 2)).body, "{\"a\":1}");
  EXPECT_EQ(r->list_template_versions("lockers")->size(), 2u);
  EXPECT_EQ(r->list_templates(Page{})->size(), 1u);
  ASSERT_TRUE(r->commit().is_ok());
  auto w2 = write();
  ASSERT_TRUE(w2->delete_template("lockers").is_ok());
  ASSERT_TRUE(w2->commit().is_ok());
  EXPECT_FALSE(read()->get_template_version("lockers", 1)->has_value());
}

TEST_P(StoreContract, Settings) {
  auto w = write();
  ASSERT_TRUE(w->put_setting("registration_code", "abc").is_ok());
  ASSERT_TRUE(w->commit().is_ok());
  EXPECT_EQ(**read()->get_setting("registration_code"), "abc");
  EXPECT_FALSE(read()->get_setting("missing")->has_value());
  w = write();
  ASSERT_TRUE(w->delete_setting("registration_code").is_ok());
  ASSERT_TRUE(w->delete_setting("missing").is_ok());
  ASSERT_TRUE(w->commit().is_ok());
  EXPECT_FALSE(read()->get_setting("registration_code")->has_value());
  EXPECT_TRUE(read()->list_settings("registration", {})->empty());
}

TEST_P(StoreContract, AuditLogAppendsInOrderAndFilters) {
  auto rec = [](std::int64_t at, const char* key, const char* op, const char* resource) {
    AuditRecord r;
    r.at_ms = at;
    r.access_key = key;
    r.source = "127.0.0.1";
    r.operation = op;
    r.resource = resource;
    r.request = R"({"thingName":"x"})";
    r.status = 200;
    return r;
  };
  auto w = write();
  ASSERT_TRUE(w->append_audit(rec(1000, "AKIA1", "CreateThing", "locker-1")).is_ok());
  ASSERT_TRUE(w->append_audit(rec(2000, "AKIA2", "UpdateThing", "locker-1")).is_ok());
  ASSERT_TRUE(w->commit().is_ok());
  // A rolled-back change leaves no record.
  w = write();
  ASSERT_TRUE(w->append_audit(rec(2500, "AKIA1", "DeleteThing", "locker-1")).is_ok());
  w.reset();
  w = write();
  AuditRecord failed = rec(3000, "AKIA1", "DeleteThing", "locker-2");
  failed.status = 404;
  failed.error_code = "ResourceNotFoundException";
  ASSERT_TRUE(w->append_audit(failed).is_ok());
  ASSERT_TRUE(w->commit().is_ok());

  auto all = read()->list_audit({});
  ASSERT_TRUE(all.is_ok()) << all.status().message();
  ASSERT_EQ(all->size(), 3u);
  EXPECT_LT((*all)[0].sequence, (*all)[1].sequence);
  EXPECT_LT((*all)[1].sequence, (*all)[2].sequence);
  EXPECT_EQ((*all)[0].operation, "CreateThing");
  EXPECT_EQ((*all)[2].error_code, "ResourceNotFoundException");
  EXPECT_EQ((*all)[2].status, 404);
  EXPECT_EQ((*all)[0].request, R"({"thingName":"x"})");

  AuditQuery by_time;
  by_time.from_ms = 1500;
  by_time.to_ms = 3000;
  auto t = read()->list_audit(by_time);
  ASSERT_EQ(t->size(), 1u);
  EXPECT_EQ((*t)[0].operation, "UpdateThing");
  AuditQuery by_key;
  by_key.access_key = "AKIA1";
  EXPECT_EQ(read()->list_audit(by_key)->size(), 2u);
  AuditQuery by_resource;
  by_resource.resource = "locker-2";
  EXPECT_EQ(read()->list_audit(by_resource)->size(), 1u);
  AuditQuery page;
  page.limit = 2;
  auto first = read()->list_audit(page);
  ASSERT_EQ(first->size(), 2u);
  page.after_sequence = first->back().sequence;
  auto rest = read()->list_audit(page);
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_EQ((*rest)[0].resource, "locker-2");
}

TEST_P(StoreContract, TimelineFindsAnyIdentityNewestFirstAndPrunes) {
  auto ev = [](std::int64_t at, const char* thing, const char* cert, const char* client,
               const char* event) {
    DeviceEvent e;
    e.at_ms = at;
    e.thing = thing;
    e.certificate_id = cert;
    e.client_id = client;
    e.source = "127.0.0.1:5000";
    e.event = event;
    e.reason = "why";
    e.detail = "a sentence";
    e.actor = "AKIA1";
    return e;
  };
  auto w = write();
  ASSERT_TRUE(w->append_timeline({ev(1000, "", "c1", "locker-1", "connected"),
                                  ev(2000, "", "c1", "locker-1", "disconnected"),
                                  ev(3000, "locker-1", "", "", "certificate_status"),
                                  ev(4000, "", "c2", "other", "connect_refused"),
                                  ev(5000, "", "", "locker-1", "connect_refused")})
                  .is_ok());
  ASSERT_TRUE(w->commit().is_ok());
  w = write();  // rolled back: nothing kept
  ASSERT_TRUE(w->append_timeline({ev(6000, "locker-1", "c1", "locker-1", "connected")}).is_ok());
  w.reset();

  TimelineQuery q;
  q.things = {"locker-1"};
  q.certificate_ids = {"c1"};
  q.client_ids = {"locker-1", ""};
  auto all = read()->list_timeline(q);
  ASSERT_TRUE(all.is_ok()) << all.status().message();
  ASSERT_EQ(all->size(), 4u);        // not c2's
  EXPECT_EQ((*all)[0].at_ms, 5000);  // newest first
  EXPECT_EQ((*all)[3].at_ms, 1000);
  EXPECT_GT((*all)[0].sequence, (*all)[1].sequence);
  EXPECT_EQ((*all)[3], [&] {
    DeviceEvent e = ev(1000, "", "c1", "locker-1", "connected");
    e.sequence = (*all)[3].sequence;
    return e;
  }());
  // An empty identity matches nothing, even events that lack it.
  TimelineQuery none;
  none.things = {""};
  EXPECT_TRUE(read()->list_timeline(none)->empty());
  // Time range, then pages.
  TimelineQuery range = q;
  range.from_ms = 2000;
  range.to_ms = 5000;
  EXPECT_EQ(read()->list_timeline(range)->size(), 2u);
  TimelineQuery page = q;
  page.limit = 3;
  auto first = read()->list_timeline(page);
  ASSERT_EQ(first->size(), 3u);
  page.before_sequence = first->back().sequence;
  auto rest = read()->list_timeline(page);
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_EQ((*rest)[0].at_ms, 1000);

  // Counted by (event, reason) since a time.
  auto counts = read()->count_timeline(2000);
  ASSERT_TRUE(counts.is_ok()) << counts.status().message();
  EXPECT_EQ(*counts, (std::vector<TimelineCount>{{"certificate_status", "why", 1},
                                                 {"connect_refused", "why", 2},
                                                 {"disconnected", "why", 1}}));
  // Pruning: older than 1500 ms, then all but the newest 2.
  w = write();
  auto gone = w->prune_timeline(1500, 100);
  ASSERT_TRUE(gone.is_ok()) << gone.status().message();
  EXPECT_EQ(*gone, 1);
  gone = w->prune_timeline(0, 2);
  ASSERT_TRUE(gone.is_ok());
  EXPECT_EQ(*gone, 2);
  ASSERT_TRUE(w->commit().is_ok());
  TimelineQuery everyone = q;
  everyone.certificate_ids = {"c1", "c2"};
  auto left = read()->list_timeline(everyone);
  ASSERT_EQ(left->size(), 2u);
  EXPECT_EQ((*left)[0].at_ms, 5000);
  EXPECT_EQ((*left)[1].at_ms, 4000);
  // New events after a prune still come after the old ones.
  w = write();
  ASSERT_TRUE(w->append_timeline({ev(7000, "", "c2", "", "connected")}).is_ok());
  ASSERT_TRUE(w->commit().is_ok());
  left = read()->list_timeline(everyone);
  ASSERT_EQ(left->size(), 3u);
  EXPECT_EQ((*left)[0].at_ms, 7000);
  EXPECT_GT((*left)[0].sequence, (*left)[1].sequence);
}

TEST_P(StoreContract, SettingsListedByPrefixInPages) {
  auto w = write();
  for (const char* k : {"allow.t.1.b", "allow.t.1.a", "allow.t.1.c", "allow.t.10.x", "allow.u.1.a",
                        "allow.t.1", "allov"})
    ASSERT_TRUE(w->put_setting(k, std::string(k) + "=v").is_ok());
  ASSERT_TRUE(w->commit().is_ok());
  auto keys = [](const std::vector<std::pair<std::string, std::string>>& rows) {
    std::vector<std::string> out;
    for (const auto& [k, v] : rows) {
      EXPECT_EQ(v, k + "=v");
      out.push_back(k);
    }
    return out;
  };
  auto all = read()->list_settings("allow.t.1.", {});
  ASSERT_TRUE(all.is_ok()) << all.status().message();
  EXPECT_EQ(keys(*all), (std::vector<std::string>{"allow.t.1.a", "allow.t.1.b", "allow.t.1.c"}));
  auto first = read()->list_settings("allow.t.1.", Page{"", 2});
  EXPECT_EQ(keys(*first), (std::vector<std::string>{"allow.t.1.a", "allow.t.1.b"}));
  auto rest = read()->list_settings("allow.t.1.", Page{"allow.t.1.b", 2});
  EXPECT_EQ(keys(*rest), (std::vector<std::string>{"allow.t.1.c"}));
  EXPECT_TRUE(read()->list_settings("nothing.", {})->empty());
}

TEST_P(StoreContract, UncommittedWriteIsRolledBackAndInvisible) {
  {
    auto w = write();
    ASSERT_TRUE(w->put_thing(thing("ghost")).is_ok());
    // A concurrent reader does not see the uncommitted change.
    auto r = read();
    EXPECT_FALSE(r->get_thing("ghost")->has_value());
    EXPECT_TRUE(w->get_thing("ghost")->has_value());
  }  // destroyed without commit
  EXPECT_FALSE(read()->get_thing("ghost")->has_value());
  // The writer is free again.
  auto w = write();
  ASSERT_TRUE(w->put_thing(thing("real")).is_ok());
  ASSERT_TRUE(w->commit().is_ok());
  EXPECT_TRUE(read()->get_thing("real")->has_value());
}

TEST_P(StoreContract, ReaderKeepsItsSnapshot) {
  auto w0 = write();
  ASSERT_TRUE(w0->put_thing(thing("a")).is_ok());
  ASSERT_TRUE(w0->commit().is_ok());
  auto r = read();
  EXPECT_TRUE(r->get_thing("a")->has_value());
  auto w = write();
  ASSERT_TRUE(w->delete_thing("a").is_ok());
  ASSERT_TRUE(w->commit().is_ok());
  EXPECT_TRUE(r->get_thing("a")->has_value());  // still its snapshot
  ASSERT_TRUE(r->commit().is_ok());
  EXPECT_FALSE(read()->get_thing("a")->has_value());
}

TEST_P(StoreContract, WriteInReadTransactionFails) {
  auto r = read();
  EXPECT_FALSE(r->put_thing(thing("x")).is_ok());
}

TEST_P(StoreContract, SavepointsUndoOnlyTheirPart) {
  auto w = write();
  ASSERT_TRUE(w->put_thing(thing("kept")).is_ok());
  ASSERT_TRUE(w->savepoint().is_ok());
  ASSERT_TRUE(w->put_thing(thing("undone")).is_ok());
  ASSERT_TRUE(w->attach_policy("p", "t").is_ok());
  ASSERT_TRUE(w->rollback_to_savepoint().is_ok());
  ASSERT_TRUE(w->savepoint().is_ok());
  ASSERT_TRUE(w->put_thing(thing("released")).is_ok());
  ASSERT_TRUE(w->release_savepoint().is_ok());
  EXPECT_FALSE(w->release_savepoint().is_ok());  // none left
  ASSERT_TRUE(w->commit().is_ok());
  auto r = read();
  EXPECT_TRUE(r->get_thing("kept")->has_value());
  EXPECT_TRUE(r->get_thing("released")->has_value());
  EXPECT_FALSE(r->get_thing("undone")->has_value());
  EXPECT_TRUE(r->list_policy_targets("p", Page{})->empty());
}

TEST_P(StoreContract, GroupCommitterBatchesAndIsolatesFailures) {
  std::atomic<int> ok{0};
  {
    GroupCommitter committer(*store_, 64);
    std::vector<std::future<Status>> futures;
    for (int i = 0; i < 200; ++i) {
      futures.push_back(committer.submit([i](Transaction& t) -> Status {
        FK_RETURN_IF_ERROR(t.put_thing(thing("t" + std::to_string(i))));
        if (i % 10 == 0) return invalid_request("refused " + std::to_string(i));
        return t.attach_thing_principal("t" + std::to_string(i), "arn:cert/" + std::to_string(i));
      }));
    }
    for (int i = 0; i < 200; ++i) {
      Status st = futures[static_cast<std::size_t>(i)].get();
      if (i % 10 == 0) {
        EXPECT_EQ(st.code(), ErrorCode::kInvalidRequest);
      } else {
        EXPECT_TRUE(st.is_ok()) << st.to_string();
        ++ok;
      }
    }
    EXPECT_LE(committer.commits(), 200u);
  }
  auto r = read();
  ThingQuery q;
  EXPECT_EQ(r->list_things(q)->size(), 180u);  // the refused changes left nothing
  EXPECT_FALSE(r->get_thing("t10")->has_value());
  EXPECT_TRUE(r->get_thing("t11")->has_value());
  EXPECT_EQ(ok.load(), 180);
}

TEST_P(StoreContract, ConcurrentReadersAndWriter) {
  std::atomic<bool> stop{false};
  std::atomic<int> reads{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < 3; ++i) {
    readers.emplace_back([&] {
      while (!stop) {
        auto r = store_->begin_read();
        ASSERT_TRUE(r.is_ok());
        // Invariant written below: a thing and its principal come together.
        auto things = (*r)->list_things(ThingQuery{});
        ASSERT_TRUE(things.is_ok());
        for (const auto& t : *things) {
          auto p = (*r)->list_thing_principals(t.name, Page{});
          ASSERT_TRUE(p.is_ok());
          EXPECT_EQ(p->size(), 1u) << t.name;
        }
        ++reads;
      }
    });
  }
  // Wait until the readers are running, so reads and writes overlap.
  while (reads.load() == 0) std::this_thread::yield();
  for (int i = 0; i < 50; ++i) {
    auto w = write();
    ASSERT_TRUE(w->put_thing(thing("c" + std::to_string(i))).is_ok());
    ASSERT_TRUE(w->attach_thing_principal("c" + std::to_string(i), "arn:x").is_ok());
    ASSERT_TRUE(w->commit().is_ok());
  }
  stop = true;
  for (auto& t : readers) t.join();
}

INSTANTIATE_TEST_SUITE_P(
    Backends, StoreContract,
    ::testing::Values(Backend{"memory",
                              [](const std::string&) -> std::unique_ptr<Store> {
                                return std::make_unique<MemoryStore>();
                              }},
                      Backend{"sqlite",
                              [](const std::string& dir) -> std::unique_ptr<Store> {
                                auto s = SqliteStore::open(dir + "/registry.db");
                                EXPECT_TRUE(s.is_ok()) << s.status().to_string();
                                return s.is_ok() ? std::move(s).value() : nullptr;
                              }},
                      Backend{"postgres",
                              [](const std::string& dir) -> std::unique_ptr<Store> {
                                const std::string url = postgres_url();
                                if (url.empty()) return nullptr;
                                // A fresh schema per test (the folder name is unique).
                                PostgresOptions o;
                                o.url = url;
                                o.schema = std::filesystem::path(dir).filename().string();
                                auto s = PostgresStore::open(o);
                                EXPECT_TRUE(s.is_ok()) << s.status().to_string();
                                return s.is_ok() ? std::move(s).value() : nullptr;
                              }}),
    [](const ::testing::TestParamInfo<Backend>& p) { return p.param.name; });

}  // namespace
}  // namespace fk::storage
