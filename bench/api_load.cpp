// api_load: control-plane requests per second with keep-alive, SigV4-signed clients (the
// fleetkey CLI's IotClient), one connection per thread. Used by bench/api_vs_moto.sh against
// fleetkeyd and moto's server alike.
//   fk_api_load ENDPOINT OP N THREADS [ACCESS_KEY SECRET]
//   OP: create-thing | describe-thing | create-keys
#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "cli/iot_client.h"

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s ENDPOINT OP N THREADS [ACCESS_KEY SECRET]\n", argv[0]);
    return 2;
  }
  fk::cli::Connection c;
  c.endpoint_url = argv[1];
  const std::string op = argv[2];
  const long n = std::stol(argv[3]);
  const int threads = std::stoi(argv[4]);
  c.access_key_id = argc > 6 ? argv[5] : "AKIAIOSFODNN7EXAMPLE";
  c.secret_access_key = argc > 6 ? argv[6] : "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
  c.region = "us-east-1";
  std::vector<std::unique_ptr<fk::cli::IotClient>> clients;
  for (int i = 0; i < threads; ++i) {
    auto client = fk::cli::IotClient::create(c);
    if (!client.is_ok()) {
      std::fprintf(stderr, "%s\n", client.status().to_string().c_str());
      return 1;
    }
    clients.push_back(std::move(*client));
  }
  // describe-thing reads things made beforehand (not timed).
  if (op == "describe-thing") {
    for (long i = 0; i < 100; ++i)
      (void)clients[0]->call("POST", "/things/read-" + std::to_string(i), nlohmann::json::object());
  }
  std::atomic<long> next{0}, failed{0};
  const std::string run =
      std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  auto work = [&](fk::cli::IotClient* api) {
    for (;;) {
      long i = next.fetch_add(1);
      if (i >= n) return;
      fk::Result<nlohmann::json> r = fk::Status{fk::ErrorCode::kInternal, "unknown op"};
      if (op == "create-thing") {
        r = api->call("POST", "/things/t-" + run + "-" + std::to_string(i),
                      nlohmann::json::object());
      } else if (op == "describe-thing") {
        r = api->call("GET", "/things/read-" + std::to_string(i % 100));
      } else if (op == "create-keys") {
        r = api->call("POST", "/keys-and-certificate?setAsActive=true", nlohmann::json::object());
      }
      if (!r.is_ok()) {
        if (failed.fetch_add(1) == 0)
          std::fprintf(stderr, "first failure: %s\n", r.status().to_string().c_str());
      }
    }
  };
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back(work, clients[i].get());
  work(clients[0].get());
  for (auto& t : pool) t.join();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s %ld requests in %.2f s = %.0f/s, %ld failed\n", op.c_str(), n, secs,
              static_cast<double>(n) / secs, failed.load());
  return failed.load() == 0 ? 0 : 1;
}
