// What the PostgreSQL backend promises beyond the shared contract: several stores (nodes) on
// one database keep the registry's read-check-write rules (one writer at a time across them),
// migrations run once when nodes start together, a newer schema is refused, and a store
// recovers by itself after the server restarted.
#include "storage/postgres/postgres_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "support/postgres_url.h"

namespace fk::storage {
namespace {

using test::postgres_url;

PostgresOptions options(const std::string& schema) {
  PostgresOptions o;
  o.url = postgres_url();
  o.schema = schema + "_" + std::to_string(::getpid());
  return o;
}

class PostgresStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (postgres_url().empty()) GTEST_FAIL() << "no PostgreSQL (FK_POSTGRES_URL_FILE)";
  }
};

// Two nodes each consume "tokens" (a setting read, checked and written in one write
// transaction) as fast as they can: every token is consumed exactly once.
TEST_F(PostgresStoreTest, TwoNodesNeverBothConsumeOneToken) {
  auto a = PostgresStore::open(options("race"));
  auto b = PostgresStore::open(options("race"));
  ASSERT_TRUE(a.is_ok() && b.is_ok()) << a.status().to_string() << b.status().to_string();
  constexpr int kTokens = 200;
  {
    auto w = (*a)->begin_write();
    ASSERT_TRUE(w.is_ok());
    for (int i = 0; i < kTokens; ++i)
      ASSERT_TRUE((*w)->put_setting("token." + std::to_string(i), "unused").is_ok());
    ASSERT_TRUE((*w)->commit().is_ok());
  }
  std::atomic<int> won_a{0}, won_b{0}, ready{0};
  // Opposite orders, so that they meet in the middle (in the same order the one behind would
  // only ever find used tokens).
  auto race = [&](PostgresStore& s, std::atomic<int>& won, bool downwards) {
    {  // connected before the start, so neither runs ahead while the other connects
      auto warm = s.begin_write();
      ASSERT_TRUE(warm.is_ok());
      ASSERT_TRUE((*warm)->commit().is_ok());
    }
    ++ready;
    while (ready.load() < 2) std::this_thread::yield();
    for (int n = 0; n < kTokens; ++n) {
      const int i = downwards ? kTokens - 1 - n : n;
      auto w = s.begin_write();
      ASSERT_TRUE(w.is_ok()) << w.status().to_string();
      const std::string key = "token." + std::to_string(i);
      auto v = (*w)->get_setting(key);
      ASSERT_TRUE(v.is_ok());
      if (**v == "unused") {
        ASSERT_TRUE((*w)->put_setting(key, "used").is_ok());
        ASSERT_TRUE((*w)->commit().is_ok());
        ++won;
      }
    }
  };
  std::thread ta([&] { race(**a, won_a, false); });
  std::thread tb([&] { race(**b, won_b, true); });
  ta.join();
  tb.join();
  EXPECT_EQ(won_a + won_b, kTokens) << "a token consumed twice, or not at all";
  EXPECT_GT(won_a, 0);
  EXPECT_GT(won_b, 0);
}

TEST_F(PostgresStoreTest, NodesStartingTogetherMigrateOnce) {
  std::vector<std::thread> nodes;
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i)
    nodes.emplace_back([&] {
      auto s = PostgresStore::open(options("together"));
      if (s.is_ok()) ++ok;
    });
  for (auto& t : nodes) t.join();
  EXPECT_EQ(ok, 4);
  auto s = PostgresStore::open(options("together"));
  ASSERT_TRUE(s.is_ok());
  auto r = (*s)->begin_read();
  ASSERT_TRUE(r.is_ok());
  EXPECT_TRUE((*r)->list_settings("", {}).is_ok());
}

TEST_F(PostgresStoreTest, ANewerSchemaIsRefused) {
  auto o = options("newer");
  ASSERT_TRUE(PostgresStore::open(o).is_ok());
  {
    auto s = PostgresStore::open(o);
    ASSERT_TRUE(s.is_ok());
    // What a later fleetkeyd would have written.
    auto w = (*s)->begin_write();
    ASSERT_TRUE(w.is_ok());
    ASSERT_TRUE((*w)->commit().is_ok());
  }
  const std::string sql = "psql -q \"" + postgres_url() + "\" -c 'INSERT INTO \"" + o.schema +
                          "\".fleetkey_schema VALUES (99)' >/dev/null";
  ASSERT_EQ(std::system(sql.c_str()), 0);
  auto again = PostgresStore::open(o);
  ASSERT_FALSE(again.is_ok());
  EXPECT_NE(again.status().message().find("schema version 99"), std::string::npos)
      << again.status().message();
}

// `pg_ctl restart -m immediate` (a crash): what was committed is there, and the store's next
// transactions work without anyone reopening it.
TEST_F(PostgresStoreTest, RecoversByItselfAfterTheServerRestarted) {
  const char* script = std::getenv("FK_POSTGRES_SCRIPT");
  ASSERT_NE(script, nullptr) << "FK_POSTGRES_SCRIPT names scripts/postgres.sh";
  const std::string dir =
      std::string(std::getenv("FK_POSTGRES_URL_FILE"))
          .substr(0, std::string(std::getenv("FK_POSTGRES_URL_FILE")).rfind('/'));
  auto s = PostgresStore::open(options("restart"));
  ASSERT_TRUE(s.is_ok());
  for (const char* key : {"before", "pooled"}) {
    auto w = (*s)->begin_write();
    ASSERT_TRUE(w.is_ok());
    ASSERT_TRUE((*w)->put_setting(key, "1").is_ok());
    ASSERT_TRUE((*w)->commit().is_ok());
  }
  ASSERT_EQ(std::system((std::string(script) + " restart " + dir).c_str()), 0);
  auto w = (*s)->begin_write();
  ASSERT_TRUE(w.is_ok()) << w.status().to_string();
  ASSERT_TRUE((*w)->put_setting("after", "1").is_ok());
  ASSERT_TRUE((*w)->commit().is_ok());
  auto r = (*s)->begin_read();
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE((*r)->get_setting("before")->has_value());
  EXPECT_TRUE((*r)->get_setting("after")->has_value());
}

TEST_F(PostgresStoreTest, AWrongServerIsAClearErrorNotAHang) {
  PostgresOptions o;
  o.url = "postgresql://postgres@127.0.0.1:1/postgres";
  o.connect_timeout_seconds = 2;
  auto s = PostgresStore::open(o);
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.status().code(), ErrorCode::kUnavailable);
  EXPECT_NE(s.status().message().find("cannot connect"), std::string::npos);
}

}  // namespace
}  // namespace fk::storage
