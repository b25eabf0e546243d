#include "cli/settings.h"

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "base/files.h"
#include "base/strings.h"

namespace fk::cli {
namespace {

std::string first_set(const EnvLookup& env, std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (auto v = env(n); v && !v->empty()) return *v;
  return {};
}

std::string home_file(const EnvLookup& env, const char* override_var, const char* name) {
  if (auto v = env(override_var); v && !v->empty()) return *v;
  if (auto home = env("HOME"); home && !home->empty()) return *home + "/.aws/" + name;
  return {};
}

// The data folder's endpoints.json, when fleetkeyd runs there.
struct DataFolder {
  std::string api_url, credentials_file, aws_config_file, region, root_ca;
  bool found = false;
};

Result<DataFolder> read_data_folder(const std::string& dir) {
  DataFolder d;
  const std::string path = dir + "/endpoints.json";
  if (!file_exists(path)) return d;
  FK_ASSIGN_OR_RETURN(std::string text, read_file(path));
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return invalid_request(path + " is not valid JSON; is fleetkeyd's data folder damaged?");
  d.found = true;
  d.api_url = j.value("/api/url"_json_pointer, std::string());
  d.credentials_file = j.value("credentials_file", std::string());
  d.aws_config_file = j.value("aws_config_file", std::string());
  d.region = j.value("region", std::string());
  d.root_ca = j.value("root_ca", std::string());
  return d;
}

std::map<std::string, std::string> ini_file_section(const std::string& path,
                                                    const std::string& section) {
  if (path.empty() || !file_exists(path)) return {};
  auto text = read_file(path);
  if (!text.is_ok()) return {};
  return ini_section(*text, section);
}

}  // namespace

std::optional<std::string> process_env(const std::string& name) {
  const char* v = std::getenv(name.c_str());
  if (v == nullptr) return std::nullopt;
  return std::string(v);
}

Result<Connection> resolve_connection(const ConnectionFlags& flags, const EnvLookup& env) {
  Connection c;
  std::string data_dir = flags.data_dir;
  if (data_dir.empty()) data_dir = first_set(env, {"FLEETKEY_DATA_DIR"});
  if (data_dir.empty()) data_dir = "./fleetkey-data";
  FK_ASSIGN_OR_RETURN(DataFolder local, read_data_folder(data_dir));

  std::string profile = flags.profile;
  if (profile.empty()) profile = first_set(env, {"AWS_PROFILE"});
  if (profile.empty()) profile = "default";
  const std::string config_file = home_file(env, "AWS_CONFIG_FILE", "config");
  auto profile_config =
      ini_file_section(config_file, profile == "default" ? "default" : "profile " + profile);

  c.endpoint_url = flags.endpoint_url;
  if (c.endpoint_url.empty())
    c.endpoint_url =
        first_set(env, {"FLEETKEY_ENDPOINT_URL", "AWS_ENDPOINT_URL_IOT", "AWS_ENDPOINT_URL"});
  if (c.endpoint_url.empty()) c.endpoint_url = profile_config["endpoint_url"];
  const bool local_endpoint = c.endpoint_url.empty();
  if (local_endpoint) c.endpoint_url = local.api_url;
  if (c.endpoint_url.empty())
    return invalid_request(
        "no fleetkeyd endpoint: pass --endpoint-url http://HOST:PORT (or set "
        "FLEETKEY_ENDPOINT_URL), or run where fleetkeyd's data folder is (--data-dir; " +
        data_dir + "/endpoints.json was not found)");
  while (!c.endpoint_url.empty() && c.endpoint_url.back() == '/') c.endpoint_url.pop_back();

  c.region = flags.region;
  if (c.region.empty()) c.region = first_set(env, {"AWS_REGION", "AWS_DEFAULT_REGION"});
  if (c.region.empty()) c.region = profile_config["region"];
  if (c.region.empty() && local.found) c.region = local.region;
  if (c.region.empty()) c.region = "us-east-1";

  // fleetkeyd's https API found through its data folder: its server certificate chains to its
  // root CA (the system's trust store is always loaded too).
  c.ca_bundle = flags.ca_bundle;
  if (c.ca_bundle.empty() && local_endpoint) c.ca_bundle = local.root_ca;
  if (c.ca_bundle.empty()) c.ca_bundle = first_set(env, {"AWS_CA_BUNDLE"});

  if (flags.profile.empty()) {
    c.access_key_id = first_set(env, {"AWS_ACCESS_KEY_ID"});
    c.secret_access_key = first_set(env, {"AWS_SECRET_ACCESS_KEY"});
    if (!c.access_key_id.empty() && !c.secret_access_key.empty()) {
      c.credentials_source = "environment (AWS_ACCESS_KEY_ID)";
      return c;
    }
  }
  // fleetkeyd found through its data folder: its own admin credentials come first.
  auto local_admin = local.credentials_file.empty()
                         ? std::map<std::string, std::string>()
                         : ini_file_section(local.credentials_file, "default");
  if (local_endpoint && flags.profile.empty() && !local_admin["aws_access_key_id"].empty()) {
    c.access_key_id = local_admin["aws_access_key_id"];
    c.secret_access_key = local_admin["aws_secret_access_key"];
    c.credentials_source = local.credentials_file;
    return c;
  }
  const std::string credentials_file = home_file(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials");
  auto section = ini_file_section(credentials_file, profile);
  if (!section["aws_access_key_id"].empty() && !section["aws_secret_access_key"].empty()) {
    c.access_key_id = section["aws_access_key_id"];
    c.secret_access_key = section["aws_secret_access_key"];
    c.credentials_source = credentials_file + " [" + profile + "]";
    return c;
  }
  if (!flags.profile.empty())
    return invalid_request("profile [" + profile + "] has no aws_access_key_id and " +
                           "aws_secret_access_key in " + credentials_file);
  if (!local_admin["aws_access_key_id"].empty()) {
    c.access_key_id = local_admin["aws_access_key_id"];
    c.secret_access_key = local_admin["aws_secret_access_key"];
    c.credentials_source = local.credentials_file;
    return c;
  }
  return invalid_request(
      "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
      "AWS_SHARED_CREDENTIALS_FILE=<fleetkeyd data folder>/credentials, or pass --profile");
}

}  // namespace fk::cli
