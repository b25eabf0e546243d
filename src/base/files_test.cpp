#include "base/files.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

namespace fk {
namespace {

TEST(Files, AtomicWriteSetsExactModeAndReplaces) {
  auto dir = std::filesystem::temp_directory_path() / ("fk_files_" + std::to_string(::getpid()));
  ASSERT_TRUE(make_dirs(dir.string()).is_ok());
  std::string path = (dir / "secret.key").string();
  ::umask(0);
  ASSERT_TRUE(write_file_atomic(path, "one", 0600).is_ok());
  ::umask(022);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_TRUE(write_file_atomic(path, "two", 0600).is_ok());
  EXPECT_EQ(*read_file(path), "two");
  // No temporary file is left behind.
  int entries = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
  std::filesystem::remove_all(dir);
}

TEST(Files, ReadMissingFails) {
  auto r = read_file("/nonexistent/fleetkey/file");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kNotFound);
}

TEST(Files, WriteIntoMissingFolderFails) {
  Status s = write_file_atomic("/nonexistent/fleetkey/file", "x", 0600);
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("cannot create"), std::string::npos);
}

}  // namespace
}  // namespace fk
