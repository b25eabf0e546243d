#include "app/admin_credentials.h"

#include "base/files.h"
#include "base/log.h"
#include "base/strings.h"
#include "crypto/x509.h"

namespace fk::app {
namespace {

std::string random_from(std::string_view alphabet, std::size_t n) {
  // Each random byte picks a character; alphabet sizes here divide 256 (32 and 64), so
  // there is no modulo bias.
  std::string hex = crypto::random_hex(n);
  std::string out;
  for (std::size_t i = 0; i < n; ++i) {
    unsigned byte = static_cast<unsigned>(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
    out.push_back(alphabet[byte % alphabet.size()]);
  }
  return out;
}

}  // namespace

Result<AdminCredentials> parse_shared_credentials(std::string_view text, std::string_view profile) {
  auto section = ini_section(text, profile);
  AdminCredentials c{section["aws_access_key_id"], section["aws_secret_access_key"]};
  if (c.access_key_id.empty() || c.secret_access_key.empty())
    return invalid_request("no aws_access_key_id and aws_secret_access_key in profile [" +
                           std::string(profile) + "]");
  return c;
}

Result<AdminCredentials> load_or_create_admin_credentials(const std::string& path,
                                                          const std::string& aws_config_path,
                                                          const std::string& region) {
  if (!file_exists(aws_config_path)) {
    FK_RETURN_IF_ERROR(write_file_atomic(
        aws_config_path, "[default]\nregion = " + region + "\noutput = json\n", 0644));
  }
  if (file_exists(path)) {
    FK_ASSIGN_OR_RETURN(std::string text, read_file(path));
    auto c = parse_shared_credentials(text, "default");
    if (!c.is_ok()) return invalid_request(path + ": " + c.status().message());
    return c;
  }
  AdminCredentials c;
  c.access_key_id = "AKIA" + random_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16);
  c.secret_access_key =
      random_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 40);
  std::string text =
      "# fleetkeyd admin credentials (AWS shared-credentials format). Keep secret.\n"
      "[default]\naws_access_key_id = " +
      c.access_key_id + "\naws_secret_access_key = " + c.secret_access_key + "\n";
  FK_RETURN_IF_ERROR(write_file_atomic(path, text, 0600));
  log::info("admin.credentials_created", {{"path", path}, {"access_key_id", c.access_key_id}});
  return c;
}

}  // namespace fk::app
