// The admin credentials for SigV4: an access key id and secret made on first start and kept
// in the AWS shared-credentials file format (0600), so that
// `AWS_SHARED_CREDENTIALS_FILE=<file> aws iot ...` signs requests fleetkeyd accepts.
#pragma once

#include <string>

#include "base/status.h"

namespace fk::app {

struct AdminCredentials {
  std::string access_key_id;      // "AKIA" + 16 characters of [A-Z2-7]
  std::string secret_access_key;  // 40 characters
};

// Loads `path` ([default] profile) or creates it. Also writes `aws_config_path` with the region
// when it is missing, for AWS_CONFIG_FILE.
Result<AdminCredentials> load_or_create_admin_credentials(const std::string& path,
                                                          const std::string& aws_config_path,
                                                          const std::string& region);

Result<AdminCredentials> parse_shared_credentials(std::string_view text, std::string_view profile);

}  // namespace fk::app
