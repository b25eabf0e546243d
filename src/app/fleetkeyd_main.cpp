// fleetkeyd: the fleetkey server. See README.md and docs/configuration.md.
#include <fcntl.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "app/config.h"
#include "app/server.h"
#include "base/files.h"
#include "base/log.h"

namespace {

void install_log_sink(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("fleetkeyd");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
  fk::log::set_sink([logger](fk::log::Level l, std::string_view line) {
    switch (l) {
      case fk::log::Level::kDebug:
        logger->debug("{}", line);
        break;
      case fk::log::Level::kInfo:
        logger->info("{}", line);
        break;
      case fk::log::Level::kWarn:
        logger->warn("{}", line);
        break;
      case fk::log::Level::kError:
        logger->error("{}", line);
        break;
    }
  });
  logger->set_level(spdlog::level::debug);
  fk::log::Level min = fk::log::Level::kInfo;
  if (level == "debug") min = fk::log::Level::kDebug;
  if (level == "warn") min = fk::log::Level::kWarn;
  if (level == "error") min = fk::log::Level::kError;
  fk::log::set_min_level(min);
}

// Exit codes (docs/configuration.md): 0 clean stop; 1 the data folder or CA cannot be used;
// 2 bad configuration (also a node_id another running node has); 3 a port cannot be bound;
// 4 another fleetkeyd uses the data folder.
constexpr int kExitSetup = 1;
constexpr int kExitConfig = 2;
constexpr int kExitPort = 3;
constexpr int kExitLocked = 4;

int fail_start(int code, const std::string& why) {
  fk::log::error("fleetkeyd.start_failed", {{"error", why}});
  std::fprintf(stderr, "fleetkeyd: cannot start: %s\n", why.c_str());
  return code;
}

void print_banner(const fk::app::Config& config, const fk::app::Endpoints& e) {
  std::printf(
      "\nfleetkeyd is running.\n"
      "  MQTT (mutual TLS)  %s:%u   and ALPN x-amzn-mqtt-ca on port %u\n"
      "  control-plane API  %s   (AWS IoT REST, SigV4)\n"
      "  web console        %s/console/   (sign in with the admin credentials below)\n"
      "  root CA (devices trust this, like AmazonRootCA1.pem)  %s\n"
      "  admin credentials (AWS shared-credentials format)     %s\n"
      "  registry           %s\n\n"
      "Try next (in another shell):\n"
      "  export AWS_SHARED_CREDENTIALS_FILE=%s AWS_CONFIG_FILE=%s\n"
      "  aws iot create-keys-and-certificate --set-as-active --endpoint-url %s > cert.json\n"
      "  python3 -c \"import json; d=json.load(open('cert.json')); "
      "open('device.cert.pem','w').write(d['certificatePem']); "
      "open('device.private.key','w').write(d['keyPair']['PrivateKey'])\"\n"
      "  # IoT policies decide what a certificate may do (nothing without one, as on AWS):\n"
      "  aws iot create-policy --endpoint-url %s --policy-name lockers --policy-document "
      "'{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":"
      "\"iot:Connect\",\"Resource\":\"*\"},{\"Effect\":\"Allow\",\"Action\":[\"iot:Publish\","
      "\"iot:Receive\",\"iot:Subscribe\"],\"Resource\":[\"arn:aws:iot:*:*:topic/lockers/*\","
      "\"arn:aws:iot:*:*:topicfilter/lockers/*\"]}]}'\n"
      "  aws iot attach-policy --endpoint-url %s --policy-name lockers --target "
      "$(python3 -c \"import json; print(json.load(open('cert.json'))['certificateArn'])\")\n"
      "  mosquitto_sub -h %s -p %u --cafile %s --cert device.cert.pem --key device.private.key "
      "-t 'lockers/#' -v &\n"
      "  mosquitto_pub -h %s -p %u --cafile %s --cert device.cert.pem --key device.private.key "
      "-t lockers/101/state -m open\n"
      "  curl -s %s/health\n\n"
      "Or a locker controller that provisions itself (fleet provisioning, device SDK):\n"
      "  build/bin/fleetkey --data-dir %s create-claim --template LockerTemplate --out claim\n"
      "  build/bin/locker-controller --endpoint %s --port %u fleet --claim-dir claim "
      "--serial SN-0001 --state-dir sn-0001\n\n"
      "Stop with Ctrl-C (SIGINT) or SIGTERM. Endpoints: %s/endpoints.json\n",
      e.mqtt_host.c_str(), e.mqtt_port, e.mqtt_alpn_port, e.api_url.c_str(), e.api_url.c_str(),
      e.root_ca_path.c_str(), e.credentials_path.c_str(), e.registry_path.c_str(),
      e.credentials_path.c_str(), e.aws_config_path.c_str(), e.api_url.c_str(), e.api_url.c_str(),
      e.api_url.c_str(), e.mqtt_host.c_str(), e.mqtt_port, e.root_ca_path.c_str(),
      e.mqtt_host.c_str(), e.mqtt_port, e.root_ca_path.c_str(), e.api_url.c_str(),
      config.data_dir.c_str(), e.mqtt_host.c_str(), e.mqtt_port, config.data_dir.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);  // a vanished peer is an error code, not the end of the server
  CLI::App cli{"fleetkeyd: self-hosted device identity for AWS IoT-compatible fleets"};
  std::string config_file, data_dir, log_level, tls_engine;
  int mqtt_port = -1, api_port = -1, alpn_port = -2;
  bool quiet = false;
  cli.add_option("--config", config_file, "TOML configuration file")->check(CLI::ExistingFile);
  cli.add_option("--data-dir", data_dir, "data folder (default ./fleetkey-data)");
  cli.add_option("--mqtt-port", mqtt_port, "MQTT TLS port (0 = any free port)")
      ->check(CLI::Range(0, 65535));
  cli.add_option("--alpn-port", alpn_port,
                 "MQTT TLS port with ALPN x-amzn-mqtt-ca (AWS's 443 mode; -1 = off, 0 = any free)")
      ->check(CLI::Range(-1, 65535));
  cli.add_option("--api-port", api_port, "control-plane API port (0 = any free port)")
      ->check(CLI::Range(0, 65535));
  cli.add_option("--log-level", log_level, "debug, info, warn or error")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
  cli.add_option("--tls-engine", tls_engine, "TLS library of the MQTT ports: openssl or gnutls")
      ->check(CLI::IsMember({"openssl", "gnutls"}));
  cli.add_flag("--quiet", quiet, "do not print the start-up banner");
  CLI11_PARSE(cli, argc, argv);

  fk::app::Config config;
  if (!config_file.empty()) {
    fk::Status st = fk::app::load_config_file(config_file, config);
    if (!st.is_ok()) {
      std::fprintf(stderr, "fleetkeyd: bad configuration: %s\n", st.message().c_str());
      return 2;
    }
  }
  if (!data_dir.empty()) config.data_dir = data_dir;
  if (mqtt_port >= 0) config.mqtt.port = static_cast<std::uint16_t>(mqtt_port);
  if (api_port >= 0) config.api.port = static_cast<std::uint16_t>(api_port);
  if (alpn_port >= -1) config.mqtt.alpn_port = alpn_port;
  if (!log_level.empty()) config.log_level = log_level;
  if (!tls_engine.empty()) config.mqtt.tls_engine = *fk::net::parse_tls_engine(tls_engine);
  install_log_sink(config.log_level);

  // One server per data folder.
  if (fk::Status st = fk::make_dirs(config.data_dir, 0700); !st.is_ok())
    return fail_start(kExitSetup, "data folder " + config.data_dir + ": " + st.message());
  std::string lock_path = config.data_dir + "/fleetkeyd.lock";
  int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0)
    return fail_start(kExitSetup, "cannot write " + lock_path + ": " + std::strerror(errno));
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0)
    return fail_start(kExitLocked, "another fleetkeyd is using " + config.data_dir);

  // Signals are caught from here on, so a SIGTERM during start-up also ends cleanly.
  boost::asio::io_context io;
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  auto server = fk::app::Server::start(config, io);
  if (!server.is_ok()) {
    const fk::Status& st = server.status();
    const bool port = st.code() == fk::ErrorCode::kUnavailable &&
                      st.message().find("cannot listen") != std::string::npos;
    const bool config_error =
        (st.code() == fk::ErrorCode::kInvalidRequest && st.message().rfind("api.bind", 0) == 0) ||
        (st.code() == fk::ErrorCode::kAlreadyExists &&
         st.message().rfind("storage.node_id", 0) == 0);
    return fail_start(port ? kExitPort : config_error ? kExitConfig : kExitSetup, st.message());
  }
  const fk::app::Endpoints& e = (*server)->endpoints();
  std::string endpoints_path = config.data_dir + "/endpoints.json";
  if (fk::Status st = fk::write_file_atomic(endpoints_path, e.to_json(config), 0644); !st.is_ok())
    return fail_start(kExitSetup, endpoints_path + ": " + st.message());
  fk::log::info("fleetkeyd.ready", {{"mqtt_port", std::to_string(e.mqtt_port)},
                                    {"api", e.api_url},
                                    {"endpoints", endpoints_path}});
  if (!quiet) print_banner(config, e);

  signals.async_wait([&](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    fk::log::info("fleetkeyd.stopping", {{"signal", std::to_string(signo)}});
    ::unlink(endpoints_path.c_str());
    (*server)->stop();
    io.stop();
  });
  io.run();
  server->reset();  // drains and closes the registry
  fk::log::info("fleetkeyd.stopped");
  ::close(lock_fd);
  return 0;
}
