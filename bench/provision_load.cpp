// provision_load: complete fleet provisionings end to end, as devices do them: make a key and
// CSR (EC P-256), connect with the claim certificate, CreateCertificateFromCsr, RegisterThing,
// disconnect, connect with the new certificate. `--concurrency` devices at a time on one
// thread; prints one JSON line: completed/s, p50/p99 latency of the whole flow, errors.
//
//   provision_load --port P --ca ROOT --cert CLAIM --key CLAIMKEY --template NAME
//                  --concurrency N --seconds S
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <vector>

#include "bench/mqtt_client.h"

namespace {

using fk::bench::Client;
namespace asio = boost::asio;
namespace ssl = asio::ssl;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string ca, cert, key, host = "127.0.0.1", tmpl = "LockerTemplate";
  int port = 8883, concurrency = 1;
  double seconds = 5;
};

std::string bio_text(BIO* b) {
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  return std::string(data, static_cast<std::size_t>(n));
}

// An EC P-256 key and a CSR for it: what the device makes on first boot.
std::pair<std::string, std::string> make_key_and_csr(const std::string& cn) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509_REQ* req = X509_REQ_new();
  X509_NAME* name = X509_NAME_new();
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_REQ_set_subject_name(req, name);
  X509_REQ_set_pubkey(req, key);
  X509_REQ_sign(req, key, EVP_sha256());
  BIO* csr_bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509_REQ(csr_bio, req);
  BIO* key_bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(key_bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  auto out = std::make_pair(bio_text(key_bio), bio_text(csr_bio));
  BIO_free(csr_bio);
  BIO_free(key_bio);
  X509_NAME_free(name);
  X509_REQ_free(req);
  EVP_PKEY_free(key);
  return out;
}

struct Run {
  asio::io_context io;
  Options o;
  std::unique_ptr<ssl::context> claim_ctx;
  Clock::time_point end;
  std::vector<double> latencies_ms;
  std::uint64_t completed = 0, errors = 0;
  std::atomic<std::uint64_t> serial{0};
  std::string run_id = std::to_string(std::chrono::system_clock::now().time_since_epoch().count());

  void start_device() {
    if (Clock::now() >= end) return;
    const auto t0 = Clock::now();
    const std::string serial_no = run_id + "-" + std::to_string(serial++);
    auto [key_pem, csr_pem] = make_key_and_csr("dev-" + serial_no);
    auto claim = std::make_shared<Client>(io, *claim_ctx, o.host, o.port, "claim-" + serial_no);
    const std::string csr_topic = "$aws/certificates/create-from-csr/json";
    const std::string reg_topic = "$aws/provisioning-templates/" + o.tmpl + "/provision/json";
    auto subacks = std::make_shared<int>(0);
    auto failed = [this, claim](const std::string& why) {
      if (++errors <= 5) std::fprintf(stderr, "provisioning error: %s\n", why.c_str());
      claim->on_error = nullptr;
      claim->on_publish = nullptr;
      asio::post(io, [this] { start_device(); });
    };
    claim->on_error = failed;
    claim->on_suback = [=, csr = csr_pem] {
      if (++*subacks == 2)
        claim->publish(csr_topic, nlohmann::json{{"certificateSigningRequest", csr}}.dump(), 0, 0);
    };
    // One handler for both replies (never replaced while it runs).
    auto cert_pem = std::make_shared<std::string>();
    claim->on_publish = [=, this, key = key_pem](const fk::mqtt::Publish& p) {
      if (p.topic == csr_topic + "/accepted") {
        auto j = nlohmann::json::parse(p.payload);
        *cert_pem = j["certificatePem"].get<std::string>();
        claim->publish(reg_topic,
                       nlohmann::json{{"certificateOwnershipToken", j["certificateOwnershipToken"]},
                                      {"parameters", {{"SerialNumber", serial_no}}}}
                           .dump(),
                       0, 0);
      } else if (p.topic == reg_topic + "/accepted") {
        const std::string thing = nlohmann::json::parse(p.payload)["thingName"];
        const std::string cert = *cert_pem;
        claim->disconnect_and_close([=, this] { reconnect(thing, cert, key, t0); });
      } else {
        failed(p.topic + ": " + p.payload);
      }
    };
    claim->connect([=] {
      claim->subscribe(csr_topic + "/+", 1);
      claim->subscribe(reg_topic + "/+", 1);
    });
  }

  // The device's first connection with its own certificate.
  void reconnect(const std::string& thing, const std::string& cert, const std::string& key,
                 Clock::time_point t0) {
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
    ctx->load_verify_file(o.ca);
    ctx->use_certificate_chain(asio::buffer(cert));
    ctx->use_private_key(asio::buffer(key), ssl::context::pem);
    ctx->set_verify_mode(ssl::verify_peer);
    auto dev = std::make_shared<Client>(io, *ctx, o.host, o.port, thing);
    dev->on_error = [this, ctx](const std::string& why) {
      if (++errors <= 5) std::fprintf(stderr, "device connect error: %s\n", why.c_str());
      asio::post(io, [this] { start_device(); });
    };
    dev->connect([this, dev, ctx, t0] {
      latencies_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      ++completed;
      dev->on_error = nullptr;
      dev->disconnect_and_close([this, dev, ctx] { start_device(); });
    });
  }
};

}  // namespace

int main(int argc, char** argv) {
  Run run;
  Options& o = run.o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--port")
      o.port = std::stoi(val());
    else if (a == "--host")
      o.host = val();
    else if (a == "--ca")
      o.ca = val();
    else if (a == "--cert")
      o.cert = val();
    else if (a == "--key")
      o.key = val();
    else if (a == "--template")
      o.tmpl = val();
    else if (a == "--concurrency")
      o.concurrency = std::stoi(val());
    else if (a == "--seconds")
      o.seconds = std::stod(val());
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  run.claim_ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  run.claim_ctx->load_verify_file(o.ca);
  run.claim_ctx->use_certificate_chain_file(o.cert);
  run.claim_ctx->use_private_key_file(o.key, ssl::context::pem);
  run.claim_ctx->set_verify_mode(ssl::verify_peer);
  const auto start = Clock::now();
  run.end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds));
  for (int i = 0; i < o.concurrency; ++i) run.start_device();
  run.io.run();
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  auto& l = run.latencies_ms;
  std::sort(l.begin(), l.end());
  auto pct = [&](double q) {
    return l.empty() ? 0.0 : l[static_cast<std::size_t>(q * static_cast<double>(l.size() - 1))];
  };
  std::printf(
      "{\"concurrency\":%d,\"completed\":%llu,\"completed_per_s\":%.1f,\"p50_ms\":%.1f,"
      "\"p99_ms\":%.1f,\"errors\":%llu}\n",
      o.concurrency, static_cast<unsigned long long>(run.completed),
      static_cast<double>(run.completed) / secs, pct(0.5), pct(0.99),
      static_cast<unsigned long long>(run.errors));
  return 0;
}
