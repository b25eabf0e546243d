// fleetkey: the command line for direct certificates and the factory (docs/cli.md).
#include <csignal>

#include "cli/commands.h"

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  fk::cli::Globals g;
  CLI::App app{"fleetkey: devices, claims, templates, revocation and expiry on fleetkeyd"};
  app.require_subcommand(1);
  // Global flags also after the subcommand (`fleetkey status --output json`): subcommands made
  // from here on hand the options they do not know to their parent.
  app.fallthrough();
  app.add_option("--endpoint-url", g.flags.endpoint_url,
                 "fleetkeyd's API, e.g. http://127.0.0.1:8443 (or FLEETKEY_ENDPOINT_URL)");
  app.add_option("--profile", g.flags.profile, "profile in the AWS credentials file");
  app.add_option("--region", g.flags.region, "region the requests are signed for");
  app.add_option("--data-dir", g.flags.data_dir,
                 "fleetkeyd's data folder on this machine (default ./fleetkey-data)");
  app.add_option("--ca-bundle", g.flags.ca_bundle, "CA file for an https endpoint");
  app.add_option("--output", g.output, "table (default) or json")
      ->check(CLI::IsMember({"table", "json"}));
  fk::cli::add_device_commands(app, g);
  fk::cli::add_admin_commands(app, g);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return fk::cli::kExitUsage;
  }
  return g.exit_code;
}
