// Where the fleetkey CLI finds fleetkeyd and its credentials, the way the aws CLI does, plus
// fleetkeyd's own data folder for the machine it runs on. First found wins:
//   endpoint     --endpoint-url, FLEETKEY_ENDPOINT_URL, AWS_ENDPOINT_URL_IOT, AWS_ENDPOINT_URL,
//                endpoint_url of the profile in the config file, the data folder's endpoints.json
//   credentials  AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (unless --profile is given), the
//                profile (--profile, AWS_PROFILE, "default") in AWS_SHARED_CREDENTIALS_FILE or
//                ~/.aws/credentials, the data folder's credentials file
//   region       --region, AWS_REGION, AWS_DEFAULT_REGION, the profile's region in
//                AWS_CONFIG_FILE or ~/.aws/config, the data folder's, us-east-1
//   CA bundle    --ca-bundle, the data folder's root CA (endpoint from there), AWS_CA_BUNDLE
//   data folder  --data-dir, FLEETKEY_DATA_DIR, ./fleetkey-data
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "base/status.h"

namespace fk::cli {

struct ConnectionFlags {
  std::string endpoint_url;
  std::string profile;
  std::string region;
  std::string data_dir;
  std::string ca_bundle;  // extra CA file for an https endpoint (also AWS_CA_BUNDLE)
};

struct Connection {
  std::string endpoint_url;
  std::string region;
  std::string access_key_id;
  std::string secret_access_key;
  std::string ca_bundle;
  std::string credentials_source;  // for messages: "environment", a file path
};

using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

// The process environment.
std::optional<std::string> process_env(const std::string& name);

// Errors (kInvalidRequest) say what is missing and how to provide it.
Result<Connection> resolve_connection(const ConnectionFlags& flags, const EnvLookup& env);

}  // namespace fk::cli
