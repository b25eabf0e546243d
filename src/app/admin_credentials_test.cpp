#include "app/admin_credentials.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

namespace fk::app {
namespace {

TEST(AdminCredentials, ParsesTheProfile) {
  auto c = parse_shared_credentials(
      "# c\n[other]\naws_access_key_id = X\n[default]\naws_access_key_id = AKIAXX\n"
      "aws_secret_access_key=  s3cr3t \n",
      "default");
  ASSERT_TRUE(c.is_ok());
  EXPECT_EQ(c->access_key_id, "AKIAXX");
  EXPECT_EQ(c->secret_access_key, "s3cr3t");
  EXPECT_FALSE(parse_shared_credentials("[default]\n", "default").is_ok());
}

TEST(AdminCredentials, CreatedOnceWith0600AndReloaded) {
  auto dir = std::filesystem::temp_directory_path() / ("fk_creds_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::string path = (dir / "credentials").string();
  std::string cfg = (dir / "aws-config").string();
  auto a = load_or_create_admin_credentials(path, cfg, "eu-west-1");
  ASSERT_TRUE(a.is_ok()) << a.status().message();
  EXPECT_EQ(a->access_key_id.size(), 20u);
  EXPECT_EQ(a->access_key_id.substr(0, 4), "AKIA");
  EXPECT_EQ(a->secret_access_key.size(), 40u);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto b = load_or_create_admin_credentials(path, cfg, "eu-west-1");
  ASSERT_TRUE(b.is_ok());
  EXPECT_EQ(a->access_key_id, b->access_key_id);
  EXPECT_EQ(a->secret_access_key, b->secret_access_key);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace fk::app
