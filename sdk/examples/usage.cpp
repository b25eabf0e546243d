// The smallest complete device program on the fleetkey SDK (compiled in CI so that this
// example and the public headers cannot drift apart):
//
//   fleetkey-sdk-usage HOST PORT CLAIM_FOLDER STATE_FOLDER SERIAL
//
// First run: provisions with the claim bundle in CLAIM_FOLDER (claim.cert.pem,
// claim.private.key, root-ca.pem) and template LockerTemplate, keeping progress in
// STATE_FOLDER. Later runs: STATE_FOLDER holds device.cert.pem and device.private.key, so the
// device connects directly. Either way it publishes "hello" on lockers/<thing>/state.
#include <fleetkey/credentials.h>
#include <fleetkey/mqtt_client.h>
#include <fleetkey/provisioning_runner.h>

#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <ctime>
#include <string>

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s HOST PORT CLAIM_FOLDER STATE_FOLDER SERIAL\n", argv[0]);
    return 2;
  }
  boost::asio::io_context io;
  fleetkey::Endpoint endpoint{argv[1], static_cast<std::uint16_t>(std::stoi(argv[2])), false};
  const std::string claim_folder = argv[3], state_folder = argv[4], serial = argv[5];

  // The claim bundle: direct-certificate checks work on it too.
  fleetkey::CredentialPaths claim_paths{claim_folder + "/claim.cert.pem",
                                        claim_folder + "/claim.private.key",
                                        claim_folder + "/root-ca.pem"};
  fleetkey::TlsIdentity claim;
  fleetkey::CertificateFacts facts;
  fleetkey::Error error;
  if (!fleetkey::load_direct_credentials(claim_paths, std::time(nullptr), claim, facts, error)) {
    std::fprintf(stderr, "claim bundle unusable (%s): %s\n", error.error_code.c_str(),
                 error.message.c_str());
    return 1;
  }

  fleetkey::ProvisioningConfig config;
  config.template_name = "LockerTemplate";
  config.parameters = {{"SerialNumber", serial}};
  config.claim_client_id = "claim-" + serial;
  config.expected_thing_name = "locker-controller-" + serial;
  fleetkey::FileCredentialStore store(state_folder);
  fleetkey::ProvisioningRunner runner(io, endpoint, claim, config, store);

  int exit_code = 1;
  std::unique_ptr<fleetkey::MqttClient> device;
  runner.start([&](fleetkey::ProvisioningResult r) {
    if (!r.ok) {
      std::fprintf(stderr, "provisioning failed (%s): %s\n", fleetkey::to_string(r.error.kind),
                   r.error.message.c_str());
      return;
    }
    device = std::move(r.connection);
    const std::string thing = r.record.thing_name;
    device->publish("lockers/" + thing + "/state", "hello", 1, false,
                    [&, thing](bool ok, const fleetkey::Error& e) {
                      std::printf("%s: %s\n", thing.c_str(), ok ? "published" : e.message.c_str());
                      exit_code = ok ? 0 : 1;
                      device->disconnect();
                    });
  });
  io.run();
  return exit_code;
}
