// The benchmarks' MQTT 3.1.1 client over mutual TLS (one connection; Boost.Asio + OpenSSL +
// fleetkey's own codec): connect, subscribe, publish, acknowledge, disconnect. Shared by
// mqtt_load (broker load) and provision_load (fleet provisioning load). Bench code only.
#pragma once

#include <openssl/ssl.h>

#include <array>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <functional>
#include <memory>
#include <string>

#include "mqtt/codec.h"

namespace fk::bench {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using namespace fk::mqtt;  // NOLINT(google-build-using-namespace)

// One client connection: TLS, CONNECT/CONNACK, then whatever the scenario asks.
class Client : public std::enable_shared_from_this<Client> {
 public:
  using Fn = std::function<void()>;
  Client(asio::io_context& io, ssl::context& ctx, std::string host, int port, std::string id)
      : io_(io),
        stream_(io, ctx),
        host_(std::move(host)),
        port_(port),
        id_(std::move(id)),
        reader_(1 << 20) {}

  SSL_SESSION* session = nullptr;  // for resumption
  std::function<void(const Publish&)> on_publish;
  std::function<void(std::uint16_t)> on_puback;
  Fn on_suback;
  std::function<void(const std::string&)> on_error;
  std::function<void(const std::string&)> on_closed;  // the server closed the connection

  void connect(Fn on_connack) {
    on_connack_ = std::move(on_connack);
    if (session) SSL_set_session(stream_.native_handle(), session);
    auto self = shared_from_this();
    stream_.lowest_layer().async_connect(
        tcp::endpoint(asio::ip::make_address(host_), static_cast<unsigned short>(port_)),
        [self](const boost::system::error_code& ec) {
          if (ec) return self->fail("connect: " + ec.message());
          self->stream_.lowest_layer().set_option(tcp::no_delay(true));
          self->stream_.async_handshake(ssl::stream_base::client,
                                        [self](const boost::system::error_code& e) {
                                          if (e) return self->fail("handshake: " + e.message());
                                          Connect c;
                                          c.version = Version::kV311;
                                          c.client_id = self->id_;
                                          c.keep_alive = 1200;
                                          self->send(encode(Version::kV311, c));
                                          self->read();
                                        });
        });
  }

  void subscribe(const std::string& filter, std::uint8_t qos) {
    Subscribe s;
    s.packet_id = 1;
    s.subscriptions.push_back({filter, qos, false, false, 0});
    send(encode(Version::kV311, s));
  }

  void publish(const std::string& topic, std::string payload, std::uint8_t qos, std::uint16_t id) {
    Publish p;
    p.topic = topic;
    p.payload = std::move(payload);
    p.qos = qos;
    p.packet_id = qos ? id : 0;
    send(encode(Version::kV311, p));
  }

  void disconnect_and_close(Fn done) {
    send(encode(Version::kV311, Disconnect{}));
    on_drained_ = [self = shared_from_this(), done = std::move(done)] {
      self->session = SSL_get1_session(self->stream_.native_handle());
      boost::system::error_code ec;
      self->stream_.lowest_layer().close(ec);
      done();
    };
    if (!writing_) drained();
  }

  bool reused() { return SSL_session_reused(stream_.native_handle()) == 1; }
  // The TLS session to resume with later (the caller frees it).
  SSL_SESSION* session_now() { return SSL_get1_session(stream_.native_handle()); }
  // Cuts the connection as a network drop does: RST, no close_notify, no DISCONNECT.
  void abort() {
    boost::system::error_code ec;
    on_closed = on_error = nullptr;
    stream_.lowest_layer().set_option(asio::socket_base::linger(true, 0), ec);
    stream_.lowest_layer().close(ec);
  }

 private:
  void fail(const std::string& why) {
    boost::system::error_code ec;
    stream_.lowest_layer().close(ec);
    if (on_error) on_error(why);
  }

  void send(std::string bytes) {
    out_ += bytes;
    if (!writing_) flush();
  }

  void flush() {
    if (out_.empty()) {
      writing_ = false;
      drained();
      return;
    }
    writing_ = true;
    current_.swap(out_);
    out_.clear();
    auto self = shared_from_this();
    asio::async_write(stream_, asio::buffer(current_),
                      [self](const boost::system::error_code& ec, std::size_t) {
                        if (ec) return self->fail("write: " + ec.message());
                        self->current_.clear();
                        self->flush();
                      });
  }

  void drained() {
    if (on_drained_) {
      auto fn = std::move(on_drained_);
      on_drained_ = nullptr;
      fn();
    }
  }

  void read() {
    auto self = shared_from_this();
    stream_.async_read_some(asio::buffer(buf_),
                            [self](const boost::system::error_code& ec, std::size_t n) {
                              if (ec) {  // closed
                                if (self->on_closed) self->on_closed(ec.message());
                                return;
                              }
                              self->reader_.feed(std::string_view(self->buf_.data(), n));
                              for (;;) {
                                auto next = self->reader_.next();
                                if (std::holds_alternative<DecodeError>(next))
                                  return self->fail("decode");
                                auto f = std::get<std::optional<Frame>>(next);
                                if (!f) break;
                                auto p = decode(Version::kV311, *f);
                                if (!std::holds_alternative<Packet>(p))
                                  return self->fail("decode packet");
                                self->handle(std::get<Packet>(p));
                              }
                              self->read();
                            });
  }

  void handle(const Packet& p) {
    switch (type_of(p)) {
      case PacketType::kConnack:
        if (std::get<Connack>(p).reason_code != 0) return fail("CONNACK refused");
        if (on_connack_) on_connack_();
        break;
      case PacketType::kPublish: {
        const auto& pub = std::get<Publish>(p);
        if (pub.qos == 1) {
          Ack a;
          a.packet_id = pub.packet_id;
          send(encode(Version::kV311, a));
        }
        if (on_publish) on_publish(pub);
        break;
      }
      case PacketType::kPuback:
        if (on_puback) on_puback(std::get<Ack>(p).packet_id);
        break;
      case PacketType::kSuback:
        if (on_suback) on_suback();
        break;
      default:
        break;
    }
  }

  asio::io_context& io_;
  ssl::stream<tcp::socket> stream_;
  std::string host_;
  int port_;
  std::string id_;
  FrameReader reader_;
  std::array<char, 64 * 1024> buf_{};
  std::string out_, current_;
  bool writing_ = false;
  Fn on_connack_, on_drained_;
};

}  // namespace fk::bench
