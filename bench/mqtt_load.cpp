// mqtt_load: the same MQTT-over-mutual-TLS load client for fleetkeyd and Mosquitto (bench/
// mqtt_vs_mosquitto.sh runs it against both, in one run, and prints the ratios).
//
//   mqtt_load connect --port P --ca CA --cert C --key K --concurrency N --seconds S [--resume]
//                     [--client-prefix P]   (client ids P0, P1, ...; default load-c)
//   mqtt_load idle    --port P ... --connections N --seconds S
//   mqtt_load pubsub  --port P ... --publishers P --subscribers S --shared-topic|--pairs
//                     --qos Q --size B --seconds S [--sub-port P2]  (subscribers on P2: another
//                     node of a cluster); QoS 1 also reports the PUBACK latency
//   mqtt_load hold    --port P ... --connections N --seconds S
//                     keeps N connections (client ids hold-<n>), each reconnecting after a
//                     jittered 0-1 s when it drops; prints {"t_ms", "connected"} every 100 ms
//   mqtt_load storm   --port P ... --connections N --jitter S [--resume] [--seconds LIMIT]
//                     N devices (client ids storm-<n>) connect, 64 at a time; then every
//                     connection is cut at once (RST, as a network drop does) and each device
//                     reconnects after a uniform 0..S s delay, retrying a failure after 1, 2,
//                     4 ... 30 s (with jitter); --resume offers each device's TLS session.
//                     Prints the time until 50/90/99/100% were back and every failure by kind
//
// One thread, one io_context: the client spends as little CPU as it can, since it shares the
// machine with the server. Output: one JSON line with the figures.
#include <openssl/ssl.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/mqtt_client.h"
#include "mqtt/codec.h"

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace fk::mqtt;  // NOLINT(google-build-using-namespace)
using fk::bench::Client;

namespace {

struct Options {
  std::string mode, ca, cert, key, host = "127.0.0.1";
  std::string client_prefix = "load-c";  // connect mode: client ids are <prefix><n>
  int port = 8883, sub_port = 0, concurrency = 1, connections = 100, publishers = 1,
      subscribers = 1, qos = 0;
  int size = 64;
  double seconds = 5, jitter = 5;
  bool resume = false, pairs = false;
};

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

std::unique_ptr<ssl::context> make_ctx(const Options& o) {
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  ctx->load_verify_file(o.ca);
  ctx->use_certificate_chain_file(o.cert);
  ctx->use_private_key_file(o.key, ssl::context::pem);
  ctx->set_verify_mode(ssl::verify_peer);
  SSL_CTX_set_session_cache_mode(ctx->native_handle(), SSL_SESS_CACHE_CLIENT);
  return ctx;
}

int run_connect(const Options& o) {
  asio::io_context io;
  auto ctx = make_ctx(o);
  std::uint64_t done = 0, errors = 0, resumed = 0;
  auto end = Clock::now() + std::chrono::duration<double>(o.seconds);
  int counter = 0;
  std::function<void(SSL_SESSION*)> start_one;
  start_one = [&](SSL_SESSION* session) {
    if (Clock::now() >= end) {
      if (session) SSL_SESSION_free(session);
      return;
    }
    auto c = std::make_shared<Client>(io, *ctx, o.host, o.port,
                                      o.client_prefix + std::to_string(counter++));
    c->session = o.resume ? session : nullptr;
    if (!o.resume && session) SSL_SESSION_free(session);
    c->on_error = [&, c](const std::string& why) {
      if (++errors < 5) std::fprintf(stderr, "connect error: %s\n", why.c_str());
      asio::post(io, [&] { start_one(nullptr); });
    };
    c->connect([&, c] {
      if (c->reused()) ++resumed;
      c->disconnect_and_close([&, c] {
        ++done;
        SSL_SESSION* s = c->session;
        c->session = nullptr;
        start_one(s);
      });
    });
  };
  auto t0 = Clock::now();
  for (int i = 0; i < o.concurrency; ++i) start_one(nullptr);
  io.run();
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf(
      "{\"mode\":\"connect\",\"concurrency\":%d,\"resume\":%s,\"connects\":%llu,\"errors\":%llu,"
      "\"resumed\":%llu,\"seconds\":%.2f,\"connects_per_s\":%.1f}\n",
      o.concurrency, o.resume ? "true" : "false", static_cast<unsigned long long>(done),
      static_cast<unsigned long long>(errors), static_cast<unsigned long long>(resumed), secs,
      static_cast<double>(done) / secs);
  return 0;
}

int run_idle(const Options& o) {
  asio::io_context io;
  auto ctx = make_ctx(o);
  std::vector<std::shared_ptr<Client>> clients;
  int connected = 0, errors = 0;
  int next = 0;
  const int window = 64;
  std::function<void()> open_next = [&] {
    if (next >= o.connections) return;
    auto c = std::make_shared<Client>(io, *ctx, o.host, o.port, "idle-" + std::to_string(next++));
    clients.push_back(c);
    c->on_error = [&](const std::string& why) {
      if (++errors < 5) std::fprintf(stderr, "idle error: %s\n", why.c_str());
      open_next();
    };
    c->connect([&] {
      ++connected;
      if (connected % 1000 == 0) std::fprintf(stderr, "idle: %d connected\n", connected);
      if (connected + errors == o.connections) {
        std::printf("{\"mode\":\"idle\",\"connected\":%d,\"errors\":%d}\n", connected, errors);
        std::fflush(stdout);
      }
      open_next();
    });
  };
  for (int i = 0; i < window; ++i) open_next();
  asio::steady_timer stop(io);
  // Hold: run until all are up, then `seconds` more.
  std::function<void()> check;
  check = [&] {
    if (connected + errors < o.connections) {
      stop.expires_after(std::chrono::milliseconds(100));
      stop.async_wait([&](const boost::system::error_code&) { check(); });
      return;
    }
    stop.expires_after(
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds)));
    stop.async_wait([&](const boost::system::error_code&) { io.stop(); });
  };
  check();
  io.run();
  return 0;
}

int run_pubsub(const Options& o) {
  asio::io_context io;
  auto ctx = make_ctx(o);
  std::vector<std::shared_ptr<Client>> subs, pubs;
  std::vector<std::int64_t> latencies, ack_latencies;
  latencies.reserve(1 << 20);
  ack_latencies.reserve(1 << 20);
  std::vector<std::int64_t> sent_at(65536, 0);  // per packet id: when it was published
  std::uint64_t received = 0, sent = 0;
  int ready_subs = 0, ready_pubs = 0;
  bool running = false;
  auto deadline = Clock::now();
  const std::string payload_pad(static_cast<std::size_t>(std::max(0, o.size - 8)), 'x');
  auto topic_of = [&](int i) {
    return o.pairs ? "bench/t" + std::to_string(i) : std::string("bench/all");
  };

  std::function<void(Client&, int, std::uint16_t)> pump;
  std::vector<int> outstanding(static_cast<std::size_t>(o.publishers), 0);
  const int window = o.qos == 1 ? 100 : 64;
  pump = [&](Client& c, int i, std::uint16_t) {
    if (!running || Clock::now() >= deadline) return;
    // Keep `window` messages in flight (QoS 1: unacknowledged; QoS 0: a batch per turn).
    while (outstanding[static_cast<std::size_t>(i)] < window) {
      std::int64_t t = now_ns();
      std::string payload(reinterpret_cast<const char*>(&t), 8);
      payload += payload_pad;
      const auto id = static_cast<std::uint16_t>(sent % 60000 + 1);
      sent_at[id] = t;
      c.publish(topic_of(i), std::move(payload), static_cast<std::uint8_t>(o.qos), id);
      ++sent;
      ++outstanding[static_cast<std::size_t>(i)];
    }
    if (o.qos == 0) {
      outstanding[static_cast<std::size_t>(i)] = 0;
      asio::post(io, [&, i, cp = pubs[static_cast<std::size_t>(i)]] { pump(*cp, i, 0); });
    }
  };
  auto start = [&] {
    running = true;
    deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(o.seconds));
    for (int i = 0; i < o.publishers; ++i) pump(*pubs[static_cast<std::size_t>(i)], i, 0);
  };
  for (int i = 0; i < o.subscribers; ++i) {
    auto c = std::make_shared<Client>(io, *ctx, o.host, o.sub_port ? o.sub_port : o.port,
                                      "sub-" + std::to_string(i));
    c->on_error = [](const std::string& why) {
      std::fprintf(stderr, "sub error: %s\n", why.c_str());
    };
    c->on_publish = [&](const Publish& p) {
      std::int64_t t;
      std::memcpy(&t, p.payload.data(), 8);
      if (running && latencies.size() < latencies.capacity()) latencies.push_back(now_ns() - t);
      ++received;
    };
    c->on_suback = [&] {
      if (++ready_subs == o.subscribers && ready_pubs == o.publishers) start();
    };
    c->connect([c, &o, i, &topic_of] {
      c->subscribe(o.pairs ? topic_of(i) : "bench/all", static_cast<std::uint8_t>(o.qos));
    });
    subs.push_back(c);
  }
  for (int i = 0; i < o.publishers; ++i) {
    auto c = std::make_shared<Client>(io, *ctx, o.host, o.port, "pub-" + std::to_string(i));
    c->on_error = [](const std::string& why) {
      std::fprintf(stderr, "pub error: %s\n", why.c_str());
    };
    c->on_puback = [&, i](std::uint16_t id) {
      if (running && ack_latencies.size() < ack_latencies.capacity())
        ack_latencies.push_back(now_ns() - sent_at[id]);
      --outstanding[static_cast<std::size_t>(i)];
      pump(*pubs[static_cast<std::size_t>(i)], i, id);
    };
    c->connect([&] {
      if (++ready_pubs == o.publishers && ready_subs == o.subscribers) start();
    });
    pubs.push_back(c);
  }
  asio::steady_timer stop(io);
  std::function<void()> wait_end = [&] {
    stop.expires_after(std::chrono::milliseconds(100));
    stop.async_wait([&](const boost::system::error_code&) {
      if (running && Clock::now() >= deadline + std::chrono::milliseconds(500)) {
        io.stop();
        return;
      }
      wait_end();
    });
  };
  wait_end();
  auto t0 = Clock::now();
  io.run();
  (void)t0;
  std::sort(latencies.begin(), latencies.end());
  std::sort(ack_latencies.begin(), ack_latencies.end());
  auto pct = [](const std::vector<std::int64_t>& v, double q) {
    if (v.empty()) return 0.0;
    return static_cast<double>(v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1))]) /
           1e6;
  };
  std::printf(
      "{\"mode\":\"pubsub\",\"publishers\":%d,\"subscribers\":%d,\"qos\":%d,\"size\":%d,"
      "\"sent\":%llu,\"received\":%llu,\"received_per_s\":%.0f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
      "\"puback_p50_ms\":%.3f,\"puback_p99_ms\":%.3f}\n",
      o.publishers, o.subscribers, o.qos, o.size, static_cast<unsigned long long>(sent),
      static_cast<unsigned long long>(received), static_cast<double>(received) / o.seconds,
      pct(latencies, 0.5), pct(latencies, 0.99), pct(ack_latencies, 0.5), pct(ack_latencies, 0.99));
  return 0;
}

int run_hold(const Options& o) {
  asio::io_context io;
  auto ctx = make_ctx(o);
  std::vector<std::shared_ptr<Client>> clients(static_cast<std::size_t>(o.connections));
  int connected = 0;
  std::mt19937 rng(42);
  std::function<void(int)> open;
  open = [&](int i) {
    auto c = std::make_shared<Client>(io, *ctx, o.host, o.port, "hold-" + std::to_string(i));
    clients[static_cast<std::size_t>(i)] = c;
    auto up = std::make_shared<bool>(false), gone = std::make_shared<bool>(false);
    c->on_closed = c->on_error = [&, i, up, gone](const std::string&) {
      if (*gone) return;  // a read and a write may both fail: one reconnect
      *gone = true;
      if (*up) --connected;
      *up = false;
      auto t = std::make_shared<asio::steady_timer>(
          io, std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 1000)(rng)));
      t->async_wait([&, i, t](const boost::system::error_code&) { open(i); });
    };
    c->connect([&, up] {
      *up = true;
      ++connected;
    });
  };
  // Opened 64 at a time at first (as a fleet comes up), then each on its own.
  int next = 0;
  asio::steady_timer ramp(io);
  std::function<void()> ramp_up = [&] {
    for (int k = 0; k < 64 && next < o.connections; ++k) open(next++);
    if (next < o.connections) {
      ramp.expires_after(std::chrono::milliseconds(20));
      ramp.async_wait([&](const boost::system::error_code&) { ramp_up(); });
    }
  };
  ramp_up();
  const auto t0 = Clock::now();
  asio::steady_timer tick(io);
  std::function<void()> report = [&] {
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    std::printf("{\"t_ms\":%lld,\"connected\":%d}\n", static_cast<long long>(ms), connected);
    std::fflush(stdout);
    if (ms >= static_cast<long long>(o.seconds * 1000)) {
      io.stop();
      return;
    }
    tick.expires_after(std::chrono::milliseconds(100));
    tick.async_wait([&](const boost::system::error_code&) { report(); });
  };
  report();
  io.run();
  return 0;
}

int run_storm(const Options& o) {
  asio::io_context io;
  auto ctx = make_ctx(o);
  // Each device keeps its own session. OpenSSL's client cache would evict (and mark not
  // resumable) the oldest of the 2 x N sessions it collects, so most devices would lose theirs.
  SSL_CTX_set_session_cache_mode(ctx->native_handle(), SSL_SESS_CACHE_OFF);
  const auto n = static_cast<std::size_t>(o.connections);
  std::vector<std::shared_ptr<Client>> clients(n);
  std::vector<SSL_SESSION*> sessions(n, nullptr);
  std::vector<int> attempts(n, 0);
  std::mt19937 rng(7);
  std::map<std::string, int> failures;  // by kind, during the storm
  int up = 0, resumed = 0;
  bool storming = false;
  std::vector<double> back_at;  // seconds after the cut, per device back
  Clock::time_point cut_at;
  std::function<void(std::size_t)> open;
  auto retry = [&](std::size_t i) {
    // Exponential backoff with full jitter, as device SDKs do: 1, 2, 4 ... 30 s.
    const int k = std::min(attempts[i], 5);
    const double cap = std::min(30.0, static_cast<double>(1 << k));
    auto t = std::make_shared<asio::steady_timer>(
        io, std::chrono::milliseconds(static_cast<int>(
                1000 * std::uniform_real_distribution<double>(0.5 * cap, cap)(rng))));
    t->async_wait([&, i, t](const boost::system::error_code&) { open(i); });
  };
  open = [&](std::size_t i) {
    auto c = std::make_shared<Client>(io, *ctx, o.host, o.port, "storm-" + std::to_string(i));
    clients[i] = c;
    if (o.resume && storming) c->session = sessions[i];
    ++attempts[i];
    auto done = std::make_shared<bool>(false);
    c->on_closed = c->on_error = [&, i, done](const std::string& why) {
      if (*done) return;
      *done = true;
      if (storming) {
        std::string kind = why.substr(0, why.find(':'));
        if (why.find("CONNACK") != std::string::npos) kind = "CONNACK refused";
        ++failures[kind];
      }
      retry(i);
    };
    c->connect([&, i, c, done] {
      if (*done) return;
      *done = true;  // later closes are the cut, not failures
      ++up;
      if (storming) {
        if (c->reused()) ++resumed;
        back_at.push_back(std::chrono::duration<double>(Clock::now() - cut_at).count());
        if (back_at.size() == n) io.stop();
      } else if (o.resume) {
        sessions[i] = c->session_now();
      }
    });
  };
  // Phase 1: the fleet comes up, 64 connects in flight.
  std::size_t next = 0;
  int in_flight_limit = 64;
  std::function<void()> ramp = [&] {
    while (next < n && static_cast<int>(next) - up < in_flight_limit) open(next++);
  };
  asio::steady_timer tick(io);
  const auto t0 = Clock::now();
  std::function<void()> watch = [&] {
    if (!storming) {
      ramp();
      if (up == static_cast<int>(n)) {
        const double took = std::chrono::duration<double>(Clock::now() - t0).count();
        std::size_t tickets = 0;
        for (auto* ses : sessions) tickets += ses != nullptr && SSL_SESSION_has_ticket(ses) == 1;
        std::fprintf(stderr,
                     "storm: %zu connected in %.1f s (%zu with a session ticket); cutting every "
                     "connection\n",
                     n, took, tickets);
        // Phase 2: every connection cut at once (RST), then each device comes back.
        storming = true;
        up = 0;
        cut_at = Clock::now();
        for (std::size_t i = 0; i < n; ++i) {
          clients[i]->abort();
          attempts[i] = 0;
          auto t = std::make_shared<asio::steady_timer>(
              io, std::chrono::milliseconds(static_cast<int>(
                      1000 * std::uniform_real_distribution<double>(0, o.jitter)(rng))));
          t->async_wait([&, i, t](const boost::system::error_code&) { open(i); });
        }
        clients.assign(n, nullptr);
      }
    } else if (std::chrono::duration<double>(Clock::now() - cut_at).count() > o.seconds) {
      io.stop();
      return;
    }
    tick.expires_after(std::chrono::milliseconds(50));
    tick.async_wait([&](const boost::system::error_code&) { watch(); });
  };
  watch();
  io.run();
  std::sort(back_at.begin(), back_at.end());
  auto at = [&](double share) {
    const auto k = static_cast<std::size_t>(std::ceil(share * static_cast<double>(n)));
    return k == 0 || k > back_at.size() ? -1.0 : back_at[k - 1];
  };
  std::string fails = "{";
  for (const auto& [kind, count] : failures)
    fails +=
        (fails.size() > 1 ? "," : "") + std::string("\"") + kind + "\":" + std::to_string(count);
  fails += "}";
  std::printf(
      "{\"mode\":\"storm\",\"devices\":%zu,\"jitter_s\":%.1f,\"back\":%zu,\"resumed\":%d,"
      "\"t50_s\":%.2f,\"t90_s\":%.2f,\"t99_s\":%.2f,\"t100_s\":%.2f,\"failures\":%s}\n",
      n, o.jitter, back_at.size(), resumed, at(0.5), at(0.9), at(0.99), at(1.0), fails.c_str());
  for (auto* s : sessions)
    if (s) SSL_SESSION_free(s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s connect|idle|pubsub --port P --ca F --cert F --key F ...\n",
                 argv[0]);
    return 2;
  }
  o.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--port")
      o.port = std::stoi(val());
    else if (a == "--sub-port")
      o.sub_port = std::stoi(val());
    else if (a == "--host")
      o.host = val();
    else if (a == "--ca")
      o.ca = val();
    else if (a == "--cert")
      o.cert = val();
    else if (a == "--key")
      o.key = val();
    else if (a == "--client-prefix")
      o.client_prefix = val();
    else if (a == "--concurrency")
      o.concurrency = std::stoi(val());
    else if (a == "--connections")
      o.connections = std::stoi(val());
    else if (a == "--publishers")
      o.publishers = std::stoi(val());
    else if (a == "--subscribers")
      o.subscribers = std::stoi(val());
    else if (a == "--qos")
      o.qos = std::stoi(val());
    else if (a == "--size")
      o.size = std::max(8, std::stoi(val()));
    else if (a == "--seconds")
      o.seconds = std::stod(val());
    else if (a == "--jitter")
      o.jitter = std::stod(val());
    else if (a == "--resume")
      o.resume = true;
    else if (a == "--pairs")
      o.pairs = true;
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (o.mode == "connect") return run_connect(o);
  if (o.mode == "idle") return run_idle(o);
  if (o.mode == "pubsub") return run_pubsub(o);
  if (o.mode == "hold") return run_hold(o);
  if (o.mode == "storm") return run_storm(o);
  std::fprintf(stderr, "unknown mode %s\n", o.mode.c_str());
  return 2;
}
