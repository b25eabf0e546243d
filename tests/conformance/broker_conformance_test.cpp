// Conformance tier, the broker: MQTT packets as hex in, the broker's answer as hex out, for both
// versions, through a real Broker on a real I/O thread, with an in-memory connection in place
// of TLS (the TLS layer has its own interop tests).
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <chrono>
#include <future>
#include <thread>

#include "broker/broker.h"
#include "mqtt/codec.h"
#include "support/hex.h"

namespace fk::broker {
namespace {

using test::hex;
using test::unhex;

namespace asio = boost::asio;

// A connection whose bytes the test writes and reads.
class FakeConnection : public net::TlsConnection {
 public:
  explicit FakeConnection(asio::io_context& io) : io_(io) {
    auto peer = std::make_shared<net::PeerCertificate>();
    peer->certificate_id = std::string(64, 'c');
    peer->subject_fields = {{"CN", "fake"}};
    peer_ = std::move(peer);
  }
  void start(OnData on_data, OnClose on_close) override {
    on_data_ = std::move(on_data);
    on_close_ = std::move(on_close);
  }
  void write(std::string bytes) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (open_) out_ += bytes;
  }
  void close_after_write(const std::string& reason) override { close(reason); }
  void close(const std::string& reason) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!open_) return;
      open_ = false;
    }
    // Like the real connection: the callbacks (which hold the session) go with the close.
    auto fn = std::move(on_close_);
    on_close_ = nullptr;
    on_data_ = nullptr;
    if (fn) fn(reason);
  }
  void post(std::function<void()> fn) override { asio::post(io_, std::move(fn)); }
  asio::io_context& context() override { return io_; }
  bool is_open() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return open_;
  }
  const std::shared_ptr<const net::PeerCertificate>& peer() const override { return peer_; }
  bool resumed() const override { return false; }
  const std::string& remote_address() const override { return remote_; }
  std::string alpn() const override { return empty_; }
  std::string sni() const override { return empty_; }
  std::string peer_certificate_der() const override { return empty_; }
  std::size_t queued_bytes() const override { return 0; }
  void pause_reading_for(std::chrono::milliseconds d) override {
    std::lock_guard<std::mutex> lock(mu_);
    pauses_.push_back(d);
  }
  std::vector<std::chrono::milliseconds> pauses() const {
    std::lock_guard<std::mutex> lock(mu_);
    return pauses_;
  }

  // Test side.
  void feed(const std::string& bytes) {
    auto self = shared_from_this();
    asio::post(io_, [self, this, bytes] {
      if (on_data_ && is_open()) on_data_(bytes);
    });
  }
  std::string take_output() {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out;
    out.swap(out_);
    return out;
  }

 private:
  asio::io_context& io_;
  mutable std::mutex mu_;
  std::string out_;
  std::vector<std::chrono::milliseconds> pauses_;
  bool open_ = true;
  OnData on_data_;
  OnClose on_close_;
  std::shared_ptr<const net::PeerCertificate> peer_;
  std::string remote_ = "127.0.0.1", empty_;
};

class BrokerConformance : public ::testing::Test {
 protected:
  BrokerConformance()
      : pool_(1), authorizer_([](const ClientIdentity&, std::function<void(AuthDecision)> done) {
          done(AuthDecision::allow());
        }) {
    BrokerConfig config;
    config.lifecycle_events = false;
    broker_ = std::make_unique<Broker>(pool_, config, authorizer_);
    pool_.start();
  }
  ~BrokerConformance() override {
    broker_->shutdown();
    pool_.stop();
    broker_.reset();
  }

  std::shared_ptr<FakeConnection> connect() {
    auto c = std::make_shared<FakeConnection>(pool_.at(0));
    Broker* b = broker_.get();
    std::promise<void> done;
    asio::post(pool_.at(0), [b, c, &done] {
      b->accept(c);
      done.set_value();
    });
    done.get_future().wait();
    return c;
  }

  // Feeds `in` and returns what the broker answered within the settle time.
  static std::string exchange(FakeConnection& c, std::string_view in) {
    c.feed(unhex(in));
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
    while (std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      out += c.take_output();
    }
    return hex(out);
  }

  net::IoPool pool_;
  AllowAllAfterConnect authorizer_;
  std::unique_ptr<Broker> broker_;
};

struct Step {
  const char* in;
  const char* out;  // expected hex ("" = no answer)
  bool open_after;
};

struct Case {
  const char* name;
  std::vector<Step> steps;
};

// CONNECT 3.1.1 "c1", clean, keep-alive 60; CONNECT 5 "c5", keep-alive 60.
constexpr const char* kConnect311 = "100e 00044d515454 04 02 003c 0002 6331";
constexpr const char* kConnect5 = "100f 00044d515454 05 02 003c 00 0002 6335";
// MQTT 5 CONNACK properties, in encode order: receive max 100, max QoS 1, retain available,
// topic alias max 8, max packet size 135168, wildcard 1, subscription ids 0, shared 1.
constexpr const char* kConnack5 =
    "2018 00 00 15 21 0064 22 0008 24 01 25 01 27 00021000 28 01 29 00 2a 01";

const Case kCases[] = {
    {"3.1.1 connect, ping, disconnect",
     {{kConnect311, "20020000", true}, {"c000", "d000", true}, {"e000", "", false}}},
    {"5 connect advertises AWS's limits", {{kConnect5, kConnack5, true}}},
    {"3.1.1 subscribe qos1 and qos0, unsubscribe",
     {{kConnect311, "20020000", true},
      {"820c 0001 0003 612f2b 01 0001 62 00", "9004 0001 01 00", true},
      {"a205 0002 0001 62", "b002 0002", true}}},
    {"5 subscribe with qos 2 is granted 1; unsubscribe unknown is 0x11",
     {{kConnect5, kConnack5, true},
      {"8207 0001 00 0001 78 02", "9004 0001 00 01", true},
      {"a206 0002 00 0001 79", "b004 0002 00 11", true}}},
    {"3.1.1 subscribe invalid filter gets 0x80",
     {{kConnect311, "20020000", true}, {"8207 0001 0002 232b 00", "9003 0001 80", true}}},
    {"5 subscribe invalid filter gets 0x8f",
     {{kConnect5, kConnack5, true}, {"8208 0001 00 0002 232b 00", "9004 0001 00 8f", true}}},
    {"3.1.1 publish qos1 to self is acknowledged and delivered",
     {{kConnect311, "20020000", true},
      {"8206 0001 0001 74 01", "9003 0001 01", true},
      {"3207 0001 74 0005 6869", "3207 0001 74 0001 6869 40020005", true}}},
    {"5 publish qos 2 is refused with 0x9b",
     {{kConnect5, kConnack5, true},
      {"3408 0001 74 0005 00 6869",
       "e02e9b2c1f0029516f532032206973206e6f7420737570706f7274656420284d6178696d756d20516f532069732"
       "03129",
       false}}},
    {"3.1.1 malformed packet closes", {{kConnect311, "20020000", true}, {"c001 00", "", false}}},
    {"5 malformed packet gets DISCONNECT 0x81",
     {{kConnect5, kConnack5, true},
      {"c001 00", "e01881161f001350494e475245512077697468206120626f6479", false}}},
    {"unsupported protocol level answers 0x01",
     {{"100c 00044d515454 06 02 003c 0000", "20020001", false}}},
    {"client id starting with $ is refused (3.1.1: 2)",
     {{"100d 00044d515454 04 02 003c 0001 24", "20020002", false}}},
    {"3.1.1 empty client id with persistent session is refused",
     {{"100c 00044d515454 04 00 003c 0000", "20020002", false}}},
    {"3.1.1 keep-alive 5 is raised to 30 silently",
     {{"100e 00044d515454 04 02 0005 0002 6b61", "20020000", true}}},
    {"publish to a reserved topic closes a 3.1.1 connection",
     {{kConnect311, "20020000", true}, {"300b 0007 2453595320782f 6869", "", false}}},
    {"a second CONNECT is a protocol error",
     {{kConnect311, "20020000", true}, {kConnect311, "", false}}},
};

std::string normalize(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c != ' ') out.push_back(c);
  }
  return out;
}

TEST_F(BrokerConformance, HexInHexOut) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    auto conn = connect();
    for (const Step& s : c.steps) {
      std::string got = exchange(*conn, s.in);
      EXPECT_EQ(got, normalize(s.out)) << s.in;
      EXPECT_EQ(conn->is_open(), s.open_after) << s.in;
    }
  }
}

TEST_F(BrokerConformance, PublishesBeyondTheRateLimitAreDiscarded) {
  BrokerConfig config;
  config.lifecycle_events = false;
  config.max_publishes_per_second = 4;
  broker_->shutdown();
  broker_ = std::make_unique<Broker>(pool_, config, authorizer_);
  auto c = connect();
  EXPECT_EQ(exchange(*c, kConnect5), normalize(kConnack5));
  // Subscribed to its own topic, in and out counting together (AWS): "a" in and out, "b" in
  // and out make four; the third publish is refused with 0x96.
  EXPECT_EQ(exchange(*c, "8207 0001 00 0001 74 01"),
            "9004000100"
            "01");
  std::string out = exchange(*c,
                             "3207 0001 74 0001 00 61"
                             "3207 0001 74 0002 00 62"
                             "3207 0001 74 0003 00 63");
  EXPECT_NE(out.find("4003"
                     "0003"
                     "96"),
            std::string::npos)
      << out;  // PUBACK 3: 0x96
  EXPECT_NE(out.find("40020001"), std::string::npos) << out;
  EXPECT_NE(out.find("40020002"), std::string::npos) << out;
  EXPECT_EQ(out.find("0000"
                     "63"),
            std::string::npos)
      << out;  // "c" was not delivered
  EXPECT_TRUE(c->is_open());
}

TEST_F(BrokerConformance, BytesBeyondTheThroughputLimitPauseReadingButAreNotLost) {
  BrokerConfig config;
  config.lifecycle_events = false;
  config.max_bytes_per_second = 4096;
  broker_->shutdown();
  broker_ = std::make_unique<Broker>(pool_, config, authorizer_);
  auto c = connect();
  EXPECT_EQ(exchange(*c, kConnect311), "20020000");
  EXPECT_EQ(exchange(*c, "8206 0001 0001 74 01"), "9003000101");
  EXPECT_TRUE(c->pauses().empty());
  // Three 2,000-byte QoS 1 publishes in one second: past 4,096 bytes the connection is paused
  // for the rest of the second, and all three are still handled (delayed, not dropped).
  std::string in;
  for (int i = 1; i <= 3; ++i) {
    in += "32d50f 0001 74 000" + std::to_string(i);
    for (int k = 0; k < 2000; ++k) in += "78";
  }
  std::string out = exchange(*c, in);
  for (const char* ack : {"40020001", "40020002", "40020003"})
    EXPECT_NE(out.find(ack), std::string::npos) << ack;
  auto pauses = c->pauses();
  ASSERT_FALSE(pauses.empty());
  EXPECT_GT(pauses.back().count(), 0);
  EXPECT_LE(pauses.back().count(), 1001);
  EXPECT_TRUE(c->is_open());
}

TEST_F(BrokerConformance, DeliveriesCountAgainstTheSubscribersPublishRate) {
  BrokerConfig config;
  config.lifecycle_events = false;
  config.max_publishes_per_second = 2;
  broker_->shutdown();
  broker_ = std::make_unique<Broker>(pool_, config, authorizer_);
  auto sub = connect();
  EXPECT_EQ(exchange(*sub, "100f 00044d515454 04 02 003c 0003 737562"), "20020000");
  EXPECT_EQ(exchange(*sub, "8206 0001 0001 74 00"), "9003000100");
  // Three publishers, one message each within a second: the subscriber receives two.
  std::vector<std::shared_ptr<FakeConnection>> pubs;
  for (const char* id : {"7031", "7032", "7033"}) {
    pubs.push_back(connect());
    EXPECT_EQ(exchange(*pubs.back(), std::string("100e 00044d515454 04 02 003c 0002 ") + id),
              "20020000");
  }
  for (auto& pub : pubs) pub->feed(unhex("3004 0001 74 78"));
  const std::string out = exchange(*sub, "");
  std::size_t n = 0;
  for (std::size_t at = out.find("300400017478"); at != std::string::npos;
       at = out.find("300400017478", at + 1))
    ++n;
  EXPECT_EQ(n, 2u) << out;
}

}  // namespace
}  // namespace fk::broker
