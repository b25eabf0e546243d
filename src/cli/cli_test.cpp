// The CLI's pure parts: where it finds fleetkeyd and credentials, names, durations, tables,
// manifests' fingerprints, exit codes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <map>

#include "base/files.h"
#include "cli/batch.h"
#include "cli/device_factory.h"
#include "cli/output.h"
#include "cli/settings.h"

namespace fk::cli {
namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/fk_cli_test_XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { (void)std::system(("rm -rf " + path).c_str()); }
};

EnvLookup env_of(std::map<std::string, std::string> m) {
  return [m](const std::string& k) -> std::optional<std::string> {
    auto it = m.find(k);
    if (it == m.end()) return std::nullopt;
    return it->second;
  };
}

// A fleetkeyd data folder: endpoints.json (with `extra` members) and its admin credentials.
void write_data_folder(const std::string& dir, const std::string& url, const std::string& extra) {
  ASSERT_TRUE(
      write_file_atomic(dir + "/credentials",
                        "[default]\naws_access_key_id = AKIAX\naws_secret_access_key = s1\n", 0600)
          .is_ok());
  ASSERT_TRUE(write_file_atomic(dir + "/endpoints.json",
                                R"({"api":{"url":")" + url + R"("},"credentials_file":")" + dir +
                                    R"(/credentials")" + extra + "}",
                                0644)
                  .is_ok());
}

TEST(Settings, DataFolderGivesEndpointCredentialsAndRegion) {
  TempDir d;
  write_data_folder(d.path, "http://127.0.0.1:9443", R"(,"region":"eu-west-1")");
  ConnectionFlags f;
  f.data_dir = d.path;
  auto c = resolve_connection(f, env_of({{"HOME", d.path}}));
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->endpoint_url, "http://127.0.0.1:9443");
  EXPECT_EQ(c->region, "eu-west-1");
  EXPECT_EQ(c->access_key_id, "AKIAX");
  EXPECT_EQ(c->secret_access_key, "s1");
  // Environment credentials and endpoint win, as with the aws CLI.
  auto e = resolve_connection(f, env_of({{"HOME", d.path},
                                         {"FLEETKEY_ENDPOINT_URL", "http://h:1/"},
                                         {"AWS_ACCESS_KEY_ID", "AKIAENV"},
                                         {"AWS_SECRET_ACCESS_KEY", "s2"},
                                         {"AWS_REGION", "ap-south-1"}}));
  ASSERT_TRUE(e.is_ok());
  EXPECT_EQ(e->endpoint_url, "http://h:1");
  EXPECT_EQ(e->access_key_id, "AKIAENV");
  EXPECT_EQ(e->region, "ap-south-1");
}

TEST(Settings, LocalHttpsEndpointTrustsTheDataFoldersRootCa) {
  TempDir d;
  write_data_folder(d.path, "https://127.0.0.1:9443", R"(,"root_ca":"/ca.pem")");
  ConnectionFlags f;
  f.data_dir = d.path;
  // AWS_CA_BUNDLE is for public CAs; fleetkeyd found locally is trusted by its own root CA.
  auto c = resolve_connection(f, env_of({{"AWS_CA_BUNDLE", "/system.pem"}}));
  ASSERT_TRUE(c.is_ok());
  EXPECT_EQ(c->ca_bundle, "/ca.pem");
  f.ca_bundle = "/flag.pem";
  EXPECT_EQ(resolve_connection(f, env_of({}))->ca_bundle, "/flag.pem");
  f.ca_bundle.clear();
  f.endpoint_url = "https://remote:8443";
  EXPECT_EQ(resolve_connection(f, env_of({{"AWS_CA_BUNDLE", "/system.pem"}}))->ca_bundle,
            "/system.pem");
}

TEST(Settings, ProfilesFromTheAwsFiles) {
  TempDir d;
  ASSERT_TRUE(write_file_atomic(d.path + "/creds",
                                "[default]\naws_access_key_id=A\naws_secret_access_key=B\n"
                                "[factory]\naws_access_key_id = F\naws_secret_access_key = G\n",
                                0600)
                  .is_ok());
  ASSERT_TRUE(write_file_atomic(d.path + "/config",
                                "[profile factory]\nregion = us-west-2\n"
                                "endpoint_url = http://fk:8443\n",
                                0600)
                  .is_ok());
  ConnectionFlags f;
  f.data_dir = d.path + "/none";
  f.profile = "factory";
  auto env = env_of({{"AWS_SHARED_CREDENTIALS_FILE", d.path + "/creds"},
                     {"AWS_CONFIG_FILE", d.path + "/config"},
                     {"AWS_ACCESS_KEY_ID", "ignored-with-profile"},
                     {"AWS_SECRET_ACCESS_KEY", "x"}});
  auto c = resolve_connection(f, env);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->access_key_id, "F");
  EXPECT_EQ(c->region, "us-west-2");
  EXPECT_EQ(c->endpoint_url, "http://fk:8443");
  f.profile = "missing";
  f.endpoint_url = "http://fk:8443";
  auto m = resolve_connection(f, env);
  ASSERT_FALSE(m.is_ok());
  EXPECT_NE(m.status().message().find("profile [missing]"), std::string::npos);
}

TEST(Settings, SaysWhatIsMissing) {
  ConnectionFlags f;
  f.data_dir = "/nonexistent";
  auto c = resolve_connection(f, env_of({}));
  ASSERT_FALSE(c.is_ok());
  EXPECT_NE(c.status().message().find("--endpoint-url"), std::string::npos);
  f.endpoint_url = "http://x:1";
  auto n = resolve_connection(f, env_of({}));
  ASSERT_FALSE(n.is_ok());
  EXPECT_NE(n.status().message().find("no credentials"), std::string::npos);
}

TEST(Names, RangesAndFiles) {
  auto r = range_names("locker-controller-", 101, 103, 0);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(*r, (std::vector<std::string>{"locker-controller-101", "locker-controller-102",
                                          "locker-controller-103"}));
  auto padded = range_names("l-", 7, 8, 4);
  ASSERT_TRUE(padded.is_ok());
  EXPECT_EQ(padded->front(), "l-0007");
  EXPECT_FALSE(range_names("l-", 5, 4, 0).is_ok());
  EXPECT_FALSE(range_names("bad name ", 1, 2, 0).is_ok());

  TempDir d;
  ASSERT_TRUE(write_file_atomic(d.path + "/n", "# lockers\na-1\n\n  b-2 \n", 0644).is_ok());
  auto f = read_names_file(d.path + "/n");
  ASSERT_TRUE(f.is_ok());
  EXPECT_EQ(*f, (std::vector<std::string>{"a-1", "b-2"}));
  ASSERT_TRUE(write_file_atomic(d.path + "/dup", "a-1\na-1\n", 0644).is_ok());
  auto dup = read_names_file(d.path + "/dup");
  ASSERT_FALSE(dup.is_ok());
  EXPECT_NE(dup.status().message().find(":2: a-1 appears twice"), std::string::npos);
  ASSERT_TRUE(write_file_atomic(d.path + "/bad", "ok\nno/slash\n", 0644).is_ok());
  auto bad = read_names_file(d.path + "/bad");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find(":2: thing name 'no/slash' has '/'"), std::string::npos);
}

TEST(Names, ThingNameRule) {
  EXPECT_TRUE(check_thing_name("locker-controller-101").is_ok());
  EXPECT_TRUE(check_thing_name("a:b_c").is_ok());
  EXPECT_FALSE(check_thing_name("").is_ok());
  EXPECT_FALSE(check_thing_name(std::string(129, 'a')).is_ok());
  EXPECT_FALSE(check_thing_name("space here").is_ok());
}

TEST(Output, DurationsTablesFingerprintsExitCodes) {
  EXPECT_EQ(*parse_duration("30d"), 30 * 86400);
  EXPECT_EQ(*parse_duration("12h"), 12 * 3600);
  EXPECT_EQ(*parse_duration("90m"), 5400);
  EXPECT_EQ(*parse_duration("45"), 45);
  EXPECT_FALSE(parse_duration("d").is_ok());
  EXPECT_FALSE(parse_duration("3w").is_ok());
  EXPECT_FALSE(parse_duration("-1d").is_ok());

  EXPECT_EQ(render_table({"NAME", "STATUS"}, {{"a", "ACTIVE"}, {"longer-name", "REVOKED"}}),
            "NAME         STATUS\n"
            "a            ACTIVE\n"
            "longer-name  REVOKED\n");
  EXPECT_EQ(render_table({"NAME"}, {}), "(none)\n");

  EXPECT_EQ(colon_fingerprint("0a1bff"), "0A:1B:FF");

  EXPECT_EQ(exit_code_for(Status::ok()), kExitOk);
  EXPECT_EQ(exit_code_for(not_found("x")), kExitNotFound);
  EXPECT_EQ(exit_code_for(already_exists("x")), kExitConflict);
  EXPECT_EQ(exit_code_for(Status{ErrorCode::kUnavailable, "x"}), kExitUnreachable);
  EXPECT_EQ(exit_code_for(Status{ErrorCode::kUnauthorized, "x"}), kExitCredentials);
  EXPECT_EQ(exit_code_for(Status{ErrorCode::kInternal, "x"}), kExitLocalFiles);
  EXPECT_EQ(exit_code_for(invalid_request("x")), kExitUsage);
}

}  // namespace
}  // namespace fk::cli
