// The fleetkey CLI's subcommands, registered on one CLI11 app: the factory commands
// (create-device, create-devices, create-claim) and the everyday ones (templates, policies,
// things, certs, expiring, status). Each sets the process exit code (cli/output.h).
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "base/status.h"
#include "cli/iot_client.h"
#include "cli/output.h"
#include "cli/settings.h"

namespace fk::cli {

struct Globals {
  ConnectionFlags flags;
  std::string output = "table";
  int exit_code = kExitOk;

  OutputFormat format() const {
    return output == "json" ? OutputFormat::kJson : OutputFormat::kTable;
  }
  // The resolved connection and a client on it.
  Result<std::unique_ptr<IotClient>> client() const;
};

// The thing-scoped device policy `create-device` attaches when none is named (created on
// first use): connect as its own thing, topics under lockers/<thing>/ and $aws/things/<thing>/.
inline constexpr const char* kDefaultDevicePolicy = "fleetkey-device";
std::string default_device_policy_document();
// Creates the policy `name` with `document` unless it exists.
Status ensure_policy(IotClient& api, const std::string& name, const std::string& document);
// The CA file devices get for fleetkeyd: its root, then its issuing CA (older servers: the root).
Result<std::string> fetch_root_ca(IotClient& api);

void add_device_commands(CLI::App& app, Globals& g);
void add_admin_commands(CLI::App& app, Globals& g);

}  // namespace fk::cli
