// The locker controller of ../shared/background (an ESP32 in the original) as a Linux program
// on the fleetkey device SDK.
//
//   locker-controller fleet  --claim-dir D --serial SN --state-dir S [--endpoint H --port P]
//                            [--template T] [--format json|cbor] [--server-keys] [--rsa]
//   locker-controller direct --cert-dir D [--thing NAME] [--endpoint H --port P]
//   both: [--rotate-before-days N] [--rotate-now]
//
// fleet: provisions itself with the claim bundle (claim.cert.pem, claim.private.key,
// root-ca.pem, claim.json from `fleetkey create-claim`) and the serial number; progress and
// the device's own credentials are kept in the state folder, so a reboot resumes and a
// provisioned device connects directly. direct: loads device.cert.pem, device.private.key and
// root-ca.pem (from `fleetkey create-device`), checks them and connects at once.
//
// Then it subscribes to lockers/<thing>/commands (open, close, status; plain text or
// {"command": ...}), publishes {"thing","state","reason"} on lockers/<thing>/state after each
// command and after each (re)connect, and reconnects after a server restart. SIGINT/SIGTERM
// disconnect cleanly. Exit codes: 0 stopped, 1 usage, 2 credentials refused or unusable,
// 3 provisioning failed.
//
// Rotation: once connected, the controller renews its certificate over
// $fleetkey/certificates/rotate when it expires within --rotate-before-days (30; 0 = never),
// at once with --rotate-now, and resumes a rotation a power cut interrupted; the rotation
// record and the new credentials are kept in the state folder (fleet) or the certificate
// folder (direct).
//
// FLEETKEY_SDK_CRASH_AT (tests only) kills the process with SIGKILL, as a power cut would: at
// a provisioning or rotation state ("register", "device-connect", "rotation-send-request",
// ...), just before a save ("save-certificate-issued", "save-rotation-issued") or just after
// one ("saved-registered"), around the rotation's commit ("commit-rotation",
// "committed-rotation").
#include <fleetkey/credentials.h>
#include <fleetkey/mqtt_client.h>
#include <fleetkey/provisioning_runner.h>
#include <fleetkey/rotation_runner.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

namespace {

using nlohmann::json;

void say(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

const char* crash_point() {
  const char* v = std::getenv("FLEETKEY_SDK_CRASH_AT");
  return v && *v ? v : nullptr;
}

void maybe_crash(const std::string& point) {
  if (const char* at = crash_point(); at && point == at) {
    say("crash point " + point + ": SIGKILL");
    std::raise(SIGKILL);
  }
}

// The file store, with the test crash points around each save.
class CrashingStore : public fleetkey::CredentialStore {
 public:
  explicit CrashingStore(const std::string& folder) : files_(folder) {}
  bool load(fleetkey::ProvisioningRecord& out, fleetkey::Error& error) override {
    return files_.load(out, error);
  }
  bool save(const fleetkey::ProvisioningRecord& r, fleetkey::Error& error) override {
    maybe_crash(std::string("save-") + fleetkey::to_string(r.stage));
    const bool ok = files_.save(r, error);
    maybe_crash(std::string("saved-") + fleetkey::to_string(r.stage));
    return ok;
  }
  bool clear(fleetkey::Error& error) override { return files_.clear(error); }
  bool load_rotation(fleetkey::RotationRecord& out, fleetkey::Error& error) override {
    return files_.load_rotation(out, error);
  }
  bool save_rotation(const fleetkey::RotationRecord& r, fleetkey::Error& error) override {
    maybe_crash(std::string("save-") + fleetkey::to_string(r.stage));
    const bool ok = files_.save_rotation(r, error);
    maybe_crash(std::string("saved-") + fleetkey::to_string(r.stage));
    return ok;
  }
  bool commit_rotation(const fleetkey::RotationRecord& r, fleetkey::Error& error) override {
    maybe_crash("commit-rotation");
    const bool ok = files_.commit_rotation(r, error);
    maybe_crash("committed-rotation");
    return ok;
  }

 private:
  fleetkey::FileCredentialStore files_;
};

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string common_name(const std::string& subject) {
  // RFC 2253 one-line form: "CN=locker-controller-101,O=..."
  const auto at = subject.find("CN=");
  if (at == std::string::npos) return "";
  const auto end = subject.find(',', at);
  return subject.substr(at + 3, end == std::string::npos ? std::string::npos : end - at - 3);
}

// When and how the controller renews its certificate.
struct RotationSettings {
  std::int64_t before_days = 30;  // 0: not because of the expiry date
  bool now = false;               // --rotate-now
  fleetkey::PayloadFormat format = fleetkey::PayloadFormat::kJson;
};

class Locker {
 public:
  Locker(boost::asio::io_context& io, fleetkey::Endpoint endpoint, fleetkey::TlsIdentity identity,
         std::string thing, fleetkey::MqttVersion version, fleetkey::CredentialStore& store,
         RotationSettings rotation)
      : thing_(std::move(thing)), identity_(identity), store_(store), rotation_(rotation) {
    fleetkey::ConnectOptions options;
    options.client_id = thing_;
    options.version = version;
    options.keep_alive_s = 30;
    fleetkey::RetryPolicy retry;
    retry.initial_delay_ms = 1000;
    retry.max_delay_ms = 30000;
    retry.max_attempts = 0;  // a locker keeps trying
    fleetkey::DeviceConnection::Handlers h;
    h.on_connected = [this] {
      say("connected as " + thing_ + " (reconnects: " + std::to_string(connection_->reconnects()) +
          ")");
      report("connected");
      if (rotator_->running()) {
        rotator_->on_connected();
      } else {
        maybe_rotate();
      }
    };
    h.on_disconnected = [this](const fleetkey::Error& e, bool permanent) {
      say(std::string(permanent ? "refused" : "disconnected") + " (" + fleetkey::to_string(e.kind) +
          "): " + e.message);
      if (rotator_->on_disconnected(e, permanent)) return;  // back to the previous certificate
      if (permanent) {
        exit_code_ = 2;
        if (on_stop_) on_stop_();
      }
    };
    h.on_message = [this](const std::string& topic, const std::string& payload) {
      if (!rotator_->on_message(topic, payload)) on_command(topic, payload);
    };
    connection_ = std::make_unique<fleetkey::DeviceConnection>(
        io, std::move(endpoint), std::move(identity), options, retry, std::move(h));
    connection_->subscribe("lockers/" + thing_ + "/commands");
    fleetkey::RotationConfig rc;
    rc.format = rotation_.format;
    rc.common_name = thing_;
    rc.renew_before_seconds = rotation_.before_days * 86400;
    rc.retry.max_attempts = 0;  // a locker keeps trying through an outage
    rc.jitter_seed = std::hash<std::string>{}(thing_);
    rotator_ = std::make_unique<fleetkey::RotationRunner>(io, *connection_, store_, rc,
                                                          identity_.root_ca_pem);
  }

  void start(std::unique_ptr<fleetkey::MqttClient> connected) {
    connection_->start(std::move(connected));
  }
  void stop() { connection_->stop(); }
  void on_stop(std::function<void()> f) { on_stop_ = std::move(f); }
  int exit_code() const { return exit_code_; }

 private:
  // Once connected: a rotation a power cut interrupted is resumed; a new one starts when asked
  // (--rotate-now, once) or when the certificate expires within --rotate-before-days.
  void maybe_rotate() {
    fleetkey::CertificateFacts facts;
    fleetkey::Error error;
    const std::int64_t now = std::time(nullptr);
    const bool checked = fleetkey::check_credentials(identity_, now, facts, error);
    fleetkey::RotationConfig due_config;
    due_config.renew_before_seconds = rotation_.before_days * 86400;
    const bool due = rotation_.before_days > 0 && checked &&
                     fleetkey::rotation_due(due_config, facts.not_after, now);
    const bool resume = fleetkey::RotationRunner::pending(store_);
    if (!resume && !rotate_now_ && !due) return;
    say(std::string("rotation: ") + (resume        ? "resuming"
                                     : rotate_now_ ? "asked"
                                                   : "certificate expires within the window"));
    rotate_now_ = false;
    rotator_->start(
        identity_,
        [this](fleetkey::RotationResult r) {
          if (!r.ok) {
            say(std::string("rotation failed (") + fleetkey::to_string(r.error.kind) +
                "): " + r.error.message);
            return;
          }
          identity_.certificate_pem = r.record.certificate_pem;
          identity_.private_key_pem = r.record.private_key_pem;
          say("rotated: certificate " + r.record.certificate_id.substr(0, 12) +
              "... is this locker's identity now");
          report("rotated");
        },
        [](fleetkey::RotationState s) {
          say(std::string("rotation state: ") + fleetkey::to_string(s));
          maybe_crash(fleetkey::to_string(s));
        });
  }

  void on_command(const std::string& topic, const std::string& payload) {
    std::string command = payload;
    json j = json::parse(payload, nullptr, false);
    if (!j.is_discarded() && j.is_object() && j.contains("command") && j["command"].is_string())
      command = j["command"].get<std::string>();
    say("command on " + topic + ": " + command);
    if (command == "open") {
      state_ = "open";
    } else if (command == "close") {
      state_ = "closed";
    } else if (command != "status") {
      report("unknown command");
      return;
    }
    report(command);
  }

  void report(const std::string& reason) {
    const std::string topic = "lockers/" + thing_ + "/state";
    connection_->publish(topic,
                         json{{"thing", thing_}, {"state", state_}, {"reason", reason}}.dump(), 1,
                         false, [topic, state = state_](bool ok, const fleetkey::Error& e) {
                           say(ok ? "state " + state + " published on " + topic
                                  : "state not published: " + e.message);
                         });
  }

  std::string thing_;
  fleetkey::TlsIdentity identity_;
  fleetkey::CredentialStore& store_;
  RotationSettings rotation_;
  bool rotate_now_ = rotation_.now;
  std::string state_ = "closed";
  std::unique_ptr<fleetkey::DeviceConnection> connection_;
  std::unique_ptr<fleetkey::RotationRunner> rotator_;
  std::function<void()> on_stop_;
  int exit_code_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fleetkey locker controller (the article's ESP32 program, on Linux)"};
  app.require_subcommand(1);
  std::string host = "localhost", claim_dir, serial, state_dir, cert_dir, thing,
              tmpl = "LockerTemplate", format = "json";
  int port = 8883;
  bool server_keys = false, rsa = false, mqtt5 = false, alpn = false;
  auto* endpoint_option =
      app.add_option("--endpoint", host, "fleetkeyd's MQTT host (fleet: default claim.json's)");
  auto* port_option = app.add_option("--port", port, "fleetkeyd's MQTT port (fleet: claim.json's)");
  app.add_flag("--mqtt5", mqtt5, "MQTT 5 instead of 3.1.1");
  app.add_flag("--alpn", alpn, "offer ALPN x-amzn-mqtt-ca (AWS port 443 mode)");
  RotationSettings rotation;
  app.add_option("--rotate-before-days", rotation.before_days,
                 "renew the certificate when it expires within this many days (0: never)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--rotate-now", rotation.now, "renew the certificate once connected");
  auto* fleet = app.add_subcommand("fleet", "provision with the claim bundle, then run");
  fleet->add_option("--claim-dir", claim_dir, "claim bundle folder")->required();
  fleet->add_option("--serial", serial, "serial number (template parameter SerialNumber)")
      ->required();
  fleet->add_option("--state-dir", state_dir, "where progress and device credentials are kept")
      ->required();
  fleet->add_option("--template", tmpl, "provisioning template (default: claim.json's)");
  fleet->add_option("--format", format, "json or cbor")->check(CLI::IsMember({"json", "cbor"}));
  fleet->add_flag("--server-keys", server_keys, "CreateKeysAndCertificate instead of a CSR");
  fleet->add_flag("--rsa", rsa, "RSA 2048 device key instead of EC P-256");
  auto* direct = app.add_subcommand("direct", "connect with direct certificates");
  direct
      ->add_option("--cert-dir", cert_dir,
                   "folder with device.cert.pem, device.private.key, root-ca.pem")
      ->required();
  direct->add_option("--thing", thing, "thing name (default: the certificate's CN)");
  CLI11_PARSE(app, argc, argv);

  boost::asio::io_context io;
  fleetkey::Endpoint endpoint{host, static_cast<std::uint16_t>(port), alpn};
  const auto version = mqtt5 ? fleetkey::MqttVersion::kV5 : fleetkey::MqttVersion::kV311;
  std::unique_ptr<Locker> locker;
  std::unique_ptr<fleetkey::ProvisioningRunner> runner;
  std::unique_ptr<CrashingStore> store;
  int exit_code = 0;
  rotation.format =
      format == "cbor" ? fleetkey::PayloadFormat::kCbor : fleetkey::PayloadFormat::kJson;

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (ec) return;
    say("stopping");
    if (locker) locker->stop();
    runner.reset();
    io.stop();
  });

  if (direct->parsed()) {
    fleetkey::TlsIdentity id;
    fleetkey::CertificateFacts facts;
    fleetkey::Error error;
    store = std::make_unique<CrashingStore>(cert_dir);
    // A rotation that received its certificate before a power cut: that certificate first (the
    // files may be half rewritten by an interrupted commit; the record holds both identities).
    fleetkey::RotationRecord rotating;
    if (store->load_rotation(rotating, error) &&
        rotating.stage == fleetkey::RotationStage::kIssued) {
      id = {rotating.certificate_pem, rotating.private_key_pem,
            read_text(fleetkey::CredentialPaths::in_folder(cert_dir).root_ca)};
      if (!fleetkey::check_credentials(id, std::time(nullptr), facts, error)) {
        say("rotated credentials refused (" + error.error_code + "): " + error.message);
        return 2;
      }
      say("resuming a certificate rotation");
    } else if (!fleetkey::load_direct_credentials(fleetkey::CredentialPaths::in_folder(cert_dir),
                                                  std::time(nullptr), id, facts, error)) {
      say("credentials refused (" + error.error_code + "): " + error.message);
      return 2;
    }
    if (thing.empty()) thing = common_name(facts.subject);
    const auto days = (facts.not_after - std::time(nullptr)) / 86400;
    say("direct certificates ok: certificate " + facts.certificate_id.substr(0, 12) +
        "..., valid " + std::to_string(days) + " more days, thing " + thing);
    locker =
        std::make_unique<Locker>(io, endpoint, std::move(id), thing, version, *store, rotation);
    locker->on_stop([&] {
      signals.cancel();
      io.stop();
    });
    locker->start(nullptr);
  } else {
    fleetkey::TlsIdentity claim;
    fleetkey::CertificateFacts facts;
    fleetkey::Error error;
    const fleetkey::CredentialPaths claim_paths{claim_dir + "/claim.cert.pem",
                                                claim_dir + "/claim.private.key",
                                                claim_dir + "/root-ca.pem"};
    if (!fleetkey::load_direct_credentials(claim_paths, std::time(nullptr), claim, facts, error)) {
      say("claim bundle refused (" + error.error_code + "): " + error.message);
      return 2;
    }
    json claim_json = json::parse(read_text(claim_dir + "/claim.json"), nullptr, false);
    std::string prefix = "locker-controller-";
    if (claim_json.is_object()) {
      if (!fleet->count("--template") && claim_json.contains("templateName"))
        tmpl = claim_json["templateName"].get<std::string>();
      if (claim_json.contains("thingNamePrefix") && claim_json["thingNamePrefix"].is_string())
        prefix = claim_json["thingNamePrefix"].get<std::string>();
      // The factory's bundle says where the fleet's server is; the flags override it.
      if (endpoint_option->count() == 0 && claim_json.value("endpoint", "") != "")
        endpoint.host = claim_json["endpoint"].get<std::string>();
      if (port_option->count() == 0 && claim_json.contains("port") &&
          claim_json["port"].is_number_unsigned() && claim_json["port"].get<unsigned>() <= 65535)
        endpoint.port = static_cast<std::uint16_t>(claim_json["port"].get<unsigned>());
    }
    say("provisioning through " + endpoint.host + ":" + std::to_string(endpoint.port));
    fleetkey::ProvisioningConfig config;
    config.template_name = tmpl;
    config.parameters = {{"SerialNumber", serial}};
    config.claim_client_id = "claim-" + serial;
    config.expected_thing_name = prefix + serial;
    config.format =
        format == "cbor" ? fleetkey::PayloadFormat::kCbor : fleetkey::PayloadFormat::kJson;
    config.key_source =
        server_keys ? fleetkey::KeySource::kServerKeys : fleetkey::KeySource::kDeviceCsr;
    config.key_type = rsa ? fleetkey::KeyType::kRsa2048 : fleetkey::KeyType::kEcP256;
    config.jitter_seed = std::hash<std::string>{}(serial);
    // A locker on a wall keeps trying through an outage (backoff capped at a minute); what
    // cannot succeed (a refused claim, a 4xx rejection) still stops it at once.
    config.retry.max_attempts = 0;
    store = std::make_unique<CrashingStore>(state_dir);
    // Provisioned, and a rotation received its certificate before a power cut: run as the
    // thing with that certificate (the old one may be INACTIVE by now).
    fleetkey::ProvisioningRecord provisioned;
    fleetkey::RotationRecord rotating;
    if (store->load(provisioned, error) && provisioned.stage == fleetkey::Stage::kRegistered &&
        store->load_rotation(rotating, error) &&
        rotating.stage == fleetkey::RotationStage::kIssued) {
      say("provisioned as " + provisioned.thing_name + "; resuming a certificate rotation");
      locker = std::make_unique<Locker>(
          io, endpoint,
          fleetkey::RotationRunner::boot_identity(
              *store,
              {provisioned.certificate_pem, provisioned.private_key_pem, claim.root_ca_pem}),
          provisioned.thing_name, version, *store, rotation);
      locker->on_stop([&] {
        signals.cancel();
        io.stop();
      });
      locker->start(nullptr);
      io.run();
      return locker->exit_code();
    }
    fleetkey::ConnectOptions options;
    options.version = version;
    runner = std::make_unique<fleetkey::ProvisioningRunner>(io, endpoint, claim, config, *store,
                                                            options);
    const std::string root_ca = claim.root_ca_pem;
    runner->start(
        [&, root_ca](fleetkey::ProvisioningResult r) {
          if (!r.ok) {
            say(std::string("provisioning failed (") + fleetkey::to_string(r.error.kind) +
                "): " + r.error.message);
            exit_code = r.error.kind == fleetkey::ErrorKind::kDeviceRejected ? 2 : 3;
            signals.cancel();
            io.stop();
            return;
          }
          say("provisioned: thing " + r.record.thing_name + ", certificate " +
              r.record.certificate_id.substr(0, 12) + "... (" + std::to_string(r.connects) +
              " connections)");
          locker = std::make_unique<Locker>(
              io, endpoint,
              fleetkey::TlsIdentity{r.record.certificate_pem, r.record.private_key_pem, root_ca},
              r.record.thing_name, version, *store, rotation);
          locker->on_stop([&] {
            signals.cancel();
            io.stop();
          });
          locker->start(std::move(r.connection));
        },
        [&runner](fleetkey::State s) {
          std::string line = std::string("provisioning state: ") + fleetkey::to_string(s);
          if (s == fleetkey::State::kBackoff) {
            const fleetkey::Error& e = runner->last_error();
            line += std::string(" (") + fleetkey::to_string(e.kind) + ": " + e.message + ")";
          }
          say(line);
          maybe_crash(fleetkey::to_string(s));
        });
  }
  io.run();
  if (locker && locker->exit_code() != 0) return locker->exit_code();
  return exit_code;
}
