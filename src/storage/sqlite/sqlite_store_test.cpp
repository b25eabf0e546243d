// SQLite-only behaviour: what survives a reopen, and the schema version guard.
#include "storage/sqlite/sqlite_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>

namespace fk::storage {
namespace {

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("fk_sqlite_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "registry.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
  std::string path_;
};

TEST_F(SqliteStoreTest, CommittedDataSurvivesReopenAndSchemaIsVersioned) {
  {
    auto store = SqliteStore::open(path_);
    ASSERT_TRUE(store.is_ok()) << store.status().to_string();
    auto w = (*store)->begin_write();
    ASSERT_TRUE((*w)->put_thing({"t1", "id", "", {{"a", "b"}}, 1, 5}).is_ok());
    ASSERT_TRUE((*w)->commit().is_ok());
    auto lost = (*store)->begin_write();
    ASSERT_TRUE((*lost)->put_thing({"t2", "id", "", {}, 1, 5}).is_ok());
    // not committed
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(st, 0), SqliteStore::schema_version());
  sqlite3_finalize(st);
  sqlite3_close(db);

  auto store = SqliteStore::open(path_);
  ASSERT_TRUE(store.is_ok());
  EXPECT_TRUE((*store)->check_integrity().is_ok());
  auto r = (*store)->begin_read();
  auto t1 = (*r)->get_thing("t1");
  ASSERT_TRUE(t1.is_ok() && t1->has_value());
  EXPECT_EQ((*t1)->attributes.at("a"), "b");
  EXPECT_FALSE((*r)->get_thing("t2")->has_value());
}

TEST_F(SqliteStoreTest, RefusesAFileFromANewerFleetkey) {
  { ASSERT_TRUE(SqliteStore::open(path_).is_ok()); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version=999", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto store = SqliteStore::open(path_);
  ASSERT_FALSE(store.is_ok());
  EXPECT_NE(store.status().message().find("newer than this fleetkey"), std::string::npos);
}

TEST_F(SqliteStoreTest, RefusesAFileThatIsNotADatabase) {
  FILE* f = std::fopen(path_.c_str(), "w");
  std::fputs("this is not a database, just text that is long enough to have a header", f);
  std::fclose(f);
  auto store = SqliteStore::open(path_);
  ASSERT_FALSE(store.is_ok());
  EXPECT_NE(store.status().message().find("sqlite"), std::string::npos);
}

}  // namespace
}  // namespace fk::storage
