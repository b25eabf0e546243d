// fleetkey-fleet-sim: N devices powering on together (the factory floor, or a fleet after an
// outage), each running the SDK's fleet provisioning with its own serial number and then
// connecting with its new certificate. Reports the rate and latency percentiles.
//
//   fleetkey-fleet-sim --claim-dir D --devices N [--concurrency C] [--endpoint H --port P]
//                      [--template T] [--format json|cbor] [--server-keys] [--prefix SIM-]
//                      [--state-dir S] [--json]
//
// Credentials stay in memory unless --state-dir is given (one folder per device, as on real
// devices). Prints one line of JSON with --json. Exit 0 if every device completed.
#include <fleetkey/credentials.h>
#include <fleetkey/provisioning_runner.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

class MemoryStore : public fleetkey::CredentialStore {
 public:
  bool load(fleetkey::ProvisioningRecord& out, fleetkey::Error&) override {
    out = record_;
    return true;
  }
  bool save(const fleetkey::ProvisioningRecord& r, fleetkey::Error&) override {
    record_ = r;
    return true;
  }
  bool clear(fleetkey::Error&) override {
    record_ = {};
    return true;
  }

 private:
  fleetkey::ProvisioningRecord record_;
};

struct Device {
  std::unique_ptr<fleetkey::CredentialStore> store;
  std::unique_ptr<fleetkey::ProvisioningRunner> runner;
  std::unique_ptr<fleetkey::MqttClient> connection;
  Clock::time_point started;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fleetkey fleet simulator: devices provisioning together"};
  std::string host = "localhost", claim_dir, tmpl, format = "json", prefix, state_dir;
  int port = 8883, devices = 10, concurrency = 0;
  bool server_keys = false, as_json = false;
  auto* endpoint_option =
      app.add_option("--endpoint", host, "fleetkeyd's MQTT host (default: claim.json's)");
  auto* port_option =
      app.add_option("--port", port, "fleetkeyd's MQTT port (default: claim.json's)");
  app.add_option("--claim-dir", claim_dir, "claim bundle folder (fleetkey create-claim)")
      ->required();
  app.add_option("--devices", devices, "how many devices power on")->check(CLI::PositiveNumber);
  app.add_option("--concurrency", concurrency, "devices provisioning at once (default: all)");
  app.add_option("--template", tmpl, "provisioning template (default: claim.json's)");
  app.add_option("--format", format, "json or cbor")->check(CLI::IsMember({"json", "cbor"}));
  app.add_flag("--server-keys", server_keys, "CreateKeysAndCertificate instead of CSRs");
  app.add_option("--prefix", prefix, "serial number prefix (default: SIM-<time>-)");
  app.add_option("--state-dir", state_dir, "keep each device's credentials in a folder here");
  app.add_flag("--json", as_json, "print the report as one JSON line");
  CLI11_PARSE(app, argc, argv);
  if (concurrency <= 0 || concurrency > devices) concurrency = devices;
  if (prefix.empty()) prefix = "SIM-" + std::to_string(std::time(nullptr)) + "-";

  fleetkey::TlsIdentity claim;
  fleetkey::CertificateFacts facts;
  fleetkey::Error error;
  if (!fleetkey::load_direct_credentials(
          {claim_dir + "/claim.cert.pem", claim_dir + "/claim.private.key",
           claim_dir + "/root-ca.pem"},
          std::time(nullptr), claim, facts, error)) {
    std::fprintf(stderr, "claim bundle refused (%s): %s\n", error.error_code.c_str(),
                 error.message.c_str());
    return 2;
  }
  // claim.json (fleetkey create-claim) names the template and the server; flags override.
  if (std::FILE* f = std::fopen((claim_dir + "/claim.json").c_str(), "r")) {
    auto j = nlohmann::json::parse(f, nullptr, false);
    std::fclose(f);
    if (j.is_object()) {
      if (tmpl.empty() && j.contains("templateName") && j["templateName"].is_string())
        tmpl = j["templateName"];
      if (endpoint_option->count() == 0 && j.value("endpoint", "") != "")
        host = j["endpoint"].get<std::string>();
      if (port_option->count() == 0 && j.contains("port") && j["port"].is_number_unsigned() &&
          j["port"].get<unsigned>() <= 65535)
        port = static_cast<int>(j["port"].get<unsigned>());
    }
  }
  if (tmpl.empty()) tmpl = "LockerTemplate";
  if (!as_json)
    std::fprintf(stderr,
                 "fleet simulator: %d devices provisioning through %s:%d with template %s\n",
                 devices, host.c_str(), port, tmpl.c_str());

  boost::asio::io_context io;
  const fleetkey::Endpoint endpoint{host, static_cast<std::uint16_t>(port), false};
  std::vector<Device> fleet(static_cast<std::size_t>(devices));
  std::vector<double> latencies_ms;
  std::map<std::string, int> failures;
  std::uint64_t connects = 0, throttled = 0;
  int next = 0, running = 0;
  const auto t0 = Clock::now();

  std::function<void()> launch = [&] {
    while (running < concurrency && next < devices) {
      const int i = next++;
      ++running;
      Device& d = fleet[static_cast<std::size_t>(i)];
      const std::string serial = prefix + std::to_string(i);
      fleetkey::ProvisioningConfig c;
      c.template_name = tmpl;
      c.parameters = {{"SerialNumber", serial}};
      c.claim_client_id = "claim-" + serial;
      c.format = format == "cbor" ? fleetkey::PayloadFormat::kCbor : fleetkey::PayloadFormat::kJson;
      c.key_source =
          server_keys ? fleetkey::KeySource::kServerKeys : fleetkey::KeySource::kDeviceCsr;
      c.jitter_seed = std::hash<std::string>{}(serial);
      c.retry.max_attempts = 8;
      if (state_dir.empty()) {
        d.store = std::make_unique<MemoryStore>();
      } else {
        d.store = std::make_unique<fleetkey::FileCredentialStore>(state_dir + "/" + serial);
      }
      d.runner = std::make_unique<fleetkey::ProvisioningRunner>(io, endpoint, claim, c, *d.store);
      d.started = Clock::now();
      d.runner->start([&, i](fleetkey::ProvisioningResult r) {
        Device& dev = fleet[static_cast<std::size_t>(i)];
        connects += r.connects;
        throttled += r.throttled;
        if (r.ok) {
          latencies_ms.push_back(
              std::chrono::duration<double, std::milli>(Clock::now() - dev.started).count());
          dev.connection = std::move(r.connection);
          dev.connection->disconnect();
        } else {
          ++failures[std::string(fleetkey::to_string(r.error.kind)) +
                     (r.error.error_code.empty() ? "" : "/" + r.error.error_code)];
          if (failures.size() <= 3 && !as_json)
            std::fprintf(stderr, "%s: %s\n", c.parameters.at("SerialNumber").c_str(),
                         r.error.message.c_str());
        }
        --running;
        launch();
      });
    }
  };
  launch();
  io.run();
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::sort(latencies_ms.begin(), latencies_ms.end());
  auto pct = [&](double q) {
    if (latencies_ms.empty()) return 0.0;
    return latencies_ms[static_cast<std::size_t>(q * static_cast<double>(latencies_ms.size() - 1))];
  };
  const auto completed = latencies_ms.size();
  nlohmann::json report = {
      {"devices", devices},
      {"concurrency", concurrency},
      {"format", format},
      {"keys", server_keys ? "server" : "csr"},
      {"completed", completed},
      {"failed", failures},
      {"seconds", secs},
      {"provisioned_per_s", static_cast<double>(completed) / secs},
      {"p50_ms", pct(0.5)},
      {"p90_ms", pct(0.9)},
      {"p99_ms", pct(0.99)},
      {"max_ms", latencies_ms.empty() ? 0.0 : latencies_ms.back()},
      {"connects_per_device", static_cast<double>(connects) / static_cast<double>(devices)},
      {"throttled_replies", throttled}};
  if (as_json) {
    std::printf("%s\n", report.dump().c_str());
  } else {
    std::printf(
        "%zu of %d devices provisioned in %.2f s: %.1f/s; latency p50 %.0f ms, p90 %.0f "
        "ms, p99 %.0f ms, max %.0f ms; %.2f connections per device\n",
        completed, devices, secs, static_cast<double>(completed) / secs, pct(0.5), pct(0.9),
        pct(0.99), report["max_ms"].get<double>(), report["connects_per_device"].get<double>());
    if (throttled > 0)
      std::printf("  %llu requests answered Throttled (429) and retried after a backoff\n",
                  static_cast<unsigned long long>(throttled));
    for (const auto& [why, n] : failures) std::printf("  failed: %d x %s\n", n, why.c_str());
  }
  return completed == static_cast<std::size_t>(devices) ? 0 : 1;
}
