#include "fleetkey/mqtt_client.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <array>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <chrono>
#include <deque>
#include <map>
#include <random>

#include "mqtt/codec.h"

namespace fleetkey {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;

namespace {

constexpr std::size_t kMaxIncomingPacket = 256 * 1024;  // AWS's payloads are at most 128 KB

fk::mqtt::Version wire_version(MqttVersion v) {
  return v == MqttVersion::kV5 ? fk::mqtt::Version::kV5 : fk::mqtt::Version::kV311;
}

std::string hex_byte(unsigned v) {
  static const char* digits = "0123456789abcdef";
  return std::string("0x") + digits[(v >> 4) & 15] + digits[v & 15];
}

// A failed TCP/TLS step as an Error, and whether retrying can help.
ConnectResult classify(const boost::system::error_code& ec, const std::string& step) {
  ConnectResult r;
  r.error.kind = ErrorKind::kNetwork;
  r.error.message = std::string(step) + ": " + ec.message();
  if (ec.category() == asio::error::get_ssl_category()) {
    const auto reason = ERR_GET_REASON(static_cast<unsigned long>(ec.value()));
    if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
      r.permanent = true;
      r.error.kind = ErrorKind::kServerCertificate;
      r.error.message = std::string(step) +
                        ": the server's certificate does not chain to the root CA (or does not "
                        "name the host): " +
                        ec.message();
    } else if ((reason >= SSL_AD_REASON_OFFSET + SSL3_AD_BAD_CERTIFICATE &&
                reason <= SSL_AD_REASON_OFFSET + TLS1_AD_ACCESS_DENIED) ||
               reason == SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED) {
      // The server sent an alert about our certificate: refused, not a network fault.
      r.permanent = true;
      r.error.kind = ErrorKind::kClaimRejected;  // the caller knows which certificate it was
      r.error.message =
          std::string(step) + ": the server refused the client certificate (" + ec.message() + ")";
    }
  }
  return r;
}

}  // namespace

class MqttClientState : public std::enable_shared_from_this<MqttClientState> {
 public:
  explicit MqttClientState(asio::io_context& io)
      : io_(io), resolver_(io), timer_(io), keep_alive_timer_(io), reader_(kMaxIncomingPacket) {}

  asio::io_context& io_;
  std::unique_ptr<ssl::context> ctx_;
  std::unique_ptr<ssl::stream<tcp::socket>> stream_;
  tcp::resolver resolver_;
  asio::steady_timer timer_, keep_alive_timer_;
  fk::mqtt::FrameReader reader_;
  fk::mqtt::Version version_ = fk::mqtt::Version::kV311;
  std::array<char, 16 * 1024> buf_{};
  std::uint16_t keep_alive_s_ = 60;
  SteadyClock::time_point last_rx_;
  bool connecting_ = false, connected_ = false, closed_ = true, closing_ = false, writing_ = false;
  unsigned generation_ = 0;  // bumped on close: stale completions are ignored
  std::uint16_t next_id_ = 0;
  struct Out {
    std::string bytes;
    std::function<void(bool, const Error&)> written;  // QoS 0 publish completion
  };
  std::deque<Out> out_;
  std::map<std::uint16_t, std::function<void(bool, const Error&)>> pubacks_;
  std::map<std::uint16_t, std::function<void(bool)>> subacks_;
  std::function<void(const ConnectResult&)> on_connect_;
  MqttClient::MessageHandler on_message_;
  std::function<void(const Error&)> on_lost_;

  std::uint16_t packet_id() {
    do {
      ++next_id_;
    } while (next_id_ == 0 || pubacks_.count(next_id_) || subacks_.count(next_id_));
    return next_id_;
  }

  void connect(const Endpoint& ep, const TlsIdentity& id, const ConnectOptions& o,
               std::function<void(const ConnectResult&)> done) {
    close();
    on_connect_ = std::move(done);
    version_ = wire_version(o.version);
    keep_alive_s_ = o.keep_alive_s;
    reader_ = fk::mqtt::FrameReader(kMaxIncomingPacket);
    closed_ = false;
    connecting_ = true;
    const unsigned gen = generation_;
    auto self = shared_from_this();
    ctx_ = std::make_unique<ssl::context>(ssl::context::tls_client);
    boost::system::error_code ec;
    SSL_CTX_set_min_proto_version(ctx_->native_handle(), TLS1_2_VERSION);
    ctx_->add_certificate_authority(asio::buffer(id.root_ca_pem), ec);
    if (ec) return finish_connect(gen, invalid("the root CA is not a PEM certificate", ec));
    ctx_->use_certificate_chain(asio::buffer(id.certificate_pem), ec);
    if (ec) return finish_connect(gen, invalid("the client certificate is not usable PEM", ec));
    ctx_->use_private_key(asio::buffer(id.private_key_pem), ssl::context::pem, ec);
    if (ec) return finish_connect(gen, invalid("the private key is not usable PEM", ec));
    if (SSL_CTX_check_private_key(ctx_->native_handle()) != 1)
      return finish_connect(gen, invalid("the private key does not match the client certificate",
                                         boost::system::error_code()));
    ctx_->set_verify_mode(ssl::verify_peer);
    if (o.verify_hostname) ctx_->set_verify_callback(ssl::host_name_verification(ep.host));
    stream_ = std::make_unique<ssl::stream<tcp::socket>>(io_, *ctx_);
    boost::system::error_code addr_ec;
    (void)asio::ip::make_address(ep.host, addr_ec);
    if (addr_ec)  // SNI for names only (SSL_set_tlsext_host_name is a macro with a C cast)
      SSL_ctrl(stream_->native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
               const_cast<char*>(ep.host.c_str()));
    if (ep.alpn_x_amzn_mqtt_ca) {
      static const unsigned char kAlpn[] = "\x0ex-amzn-mqtt-ca";
      SSL_set_alpn_protos(stream_->native_handle(), kAlpn, sizeof(kAlpn) - 1);
    }
    timer_.expires_after(std::chrono::milliseconds(o.connect_timeout_ms));
    timer_.async_wait([self, gen, ms = o.connect_timeout_ms](const boost::system::error_code& e) {
      if (e || gen != self->generation_ || !self->connecting_) return;
      ConnectResult r;
      r.error = {ErrorKind::kTimeout, "connect: no CONNACK within " + std::to_string(ms) + " ms"};
      self->finish_connect(gen, r);
    });
    fk::mqtt::Connect c;
    c.version = version_;
    c.client_id = o.client_id;
    c.keep_alive = o.keep_alive_s;
    c.clean_start = true;
    resolver_.async_resolve(
        ep.host, std::to_string(ep.port),
        [self, gen, c, where = ep.host + ":" + std::to_string(ep.port)](
            const boost::system::error_code& e, const tcp::resolver::results_type& rs) {
          if (gen != self->generation_) return;
          if (e) return self->finish_connect(gen, classify(e, "resolve " + where));
          asio::async_connect(
              self->stream_->lowest_layer(), rs,
              [self, gen, c, where](const boost::system::error_code& e2, const tcp::endpoint&) {
                if (gen != self->generation_) return;
                if (e2) return self->finish_connect(gen, classify(e2, "TCP connect to " + where));
                boost::system::error_code ignored;
                self->stream_->lowest_layer().set_option(tcp::no_delay(true), ignored);
                self->stream_->async_handshake(
                    ssl::stream_base::client, [self, gen, c](const boost::system::error_code& e3) {
                      if (gen != self->generation_) return;
                      if (e3) return self->finish_connect(gen, classify(e3, "TLS handshake"));
                      self->send(fk::mqtt::encode(self->version_, c));
                      self->read(gen);
                    });
              });
        });
  }

  static ConnectResult invalid(const std::string& what, const boost::system::error_code& ec) {
    ConnectResult r;
    r.permanent = true;
    r.error = {ErrorKind::kInvalidCredentials, what + (ec ? " (" + ec.message() + ")" : "")};
    return r;
  }

  void finish_connect(unsigned gen, const ConnectResult& r) {
    if (gen != generation_ || !connecting_) return;
    connecting_ = false;
    if (r.ok) {
      connected_ = true;
      timer_.cancel();
      start_keep_alive(gen);
    } else {
      close();
    }
    auto done = std::move(on_connect_);
    on_connect_ = nullptr;
    if (done) asio::post(io_, [done, r] { done(r); });
  }

  void start_keep_alive(unsigned gen) {
    if (keep_alive_s_ == 0) return;
    last_rx_ = SteadyClock::now();
    arm_keep_alive(gen);
  }

  // Every keep-alive period: a PINGREQ, and the connection is declared lost after 1.5 periods
  // without any packet from the server (spec 3.1.2.10).
  void arm_keep_alive(unsigned gen) {
    keep_alive_timer_.expires_after(std::chrono::seconds(keep_alive_s_));
    keep_alive_timer_.async_wait(
        [self = shared_from_this(), gen](const boost::system::error_code& e) {
          if (e || gen != self->generation_ || !self->connected_) return;
          if (SteadyClock::now() - self->last_rx_ >
              std::chrono::milliseconds(self->keep_alive_s_ * 1500))
            return self->lost("no packet from the server for 1.5 x keep-alive");
          self->send(fk::mqtt::encode(self->version_, fk::mqtt::Pingreq{}));
          self->arm_keep_alive(gen);
        });
  }

  void read(unsigned gen) {
    auto self = shared_from_this();
    stream_->async_read_some(
        asio::buffer(buf_), [self, gen](const boost::system::error_code& e, std::size_t n) {
          if (gen != self->generation_) return;
          if (e) {
            if (self->connecting_)
              return self->finish_connect(gen, classify(e, "waiting for CONNACK"));
            return self->lost("read: " + e.message());
          }
          self->last_rx_ = SteadyClock::now();
          self->reader_.feed(std::string_view(self->buf_.data(), n));
          for (;;) {
            auto next = self->reader_.next();
            if (auto* err = std::get_if<fk::mqtt::DecodeError>(&next))
              return self->protocol_error("malformed packet from the server: " + err->message);
            auto& frame = std::get<std::optional<fk::mqtt::Frame>>(next);
            if (!frame) break;
            auto packet = fk::mqtt::decode(self->version_, *frame);
            if (auto* err = std::get_if<fk::mqtt::DecodeError>(&packet))
              return self->protocol_error("malformed packet from the server: " + err->message);
            self->handle(gen, std::get<fk::mqtt::Packet>(packet));
            if (gen != self->generation_) return;  // closed while handling
          }
          self->read(gen);
        });
  }

  void protocol_error(const std::string& why) {
    if (connecting_) {
      ConnectResult r;
      r.error = {ErrorKind::kNetwork, why};
      return finish_connect(generation_, r);
    }
    lost(why);
  }

  void handle(unsigned gen, const fk::mqtt::Packet& p) {
    using fk::mqtt::PacketType;
    switch (fk::mqtt::type_of(p)) {
      case PacketType::kConnack: {
        const auto& c = std::get<fk::mqtt::Connack>(p);
        ConnectResult r;
        if (c.reason_code == 0) {
          r.ok = true;
        } else {
          const bool v5 = version_ == fk::mqtt::Version::kV5;
          const unsigned code = c.reason_code;
          r.permanent =
              v5 ? (code == 0x85 || code == 0x86 || code == 0x87 || code == 0x8A || code == 0x8C)
                 : (code == 2 || code == 4 || code == 5);
          r.error = {r.permanent ? ErrorKind::kClaimRejected : ErrorKind::kNetwork,
                     "CONNACK refused with " + hex_byte(code) +
                         (code == (v5 ? 0x87u : 5u) ? " (not authorized)" : "") +
                         (c.properties.reason_string ? ": " + *c.properties.reason_string : "")};
        }
        finish_connect(gen, r);
        break;
      }
      case PacketType::kPublish: {
        const auto& pub = std::get<fk::mqtt::Publish>(p);
        if (pub.qos > 0) {
          fk::mqtt::Ack a;
          a.type = pub.qos == 1 ? PacketType::kPuback : PacketType::kPubrec;
          a.packet_id = pub.packet_id;
          send(fk::mqtt::encode(version_, a));
        }
        if (auto h = on_message_) h(pub.topic, pub.payload);
        break;
      }
      case PacketType::kPubrel: {
        fk::mqtt::Ack a;
        a.type = PacketType::kPubcomp;
        a.packet_id = std::get<fk::mqtt::Ack>(p).packet_id;
        send(fk::mqtt::encode(version_, a));
        break;
      }
      case PacketType::kPuback: {
        const auto& a = std::get<fk::mqtt::Ack>(p);
        auto it = pubacks_.find(a.packet_id);
        if (it == pubacks_.end()) break;
        auto done = std::move(it->second);
        pubacks_.erase(it);
        Error e;
        if (a.reason_code >= 0x80)
          e = {ErrorKind::kNotAuthorized, "PUBACK " + hex_byte(a.reason_code)};
        if (done) done(a.reason_code < 0x80, e);
        break;
      }
      case PacketType::kSuback: {
        const auto& s = std::get<fk::mqtt::Suback>(p);
        auto it = subacks_.find(s.packet_id);
        if (it == subacks_.end()) break;
        auto done = std::move(it->second);
        subacks_.erase(it);
        bool ok = true;
        for (auto code : s.reason_codes) ok = ok && code < 0x80;
        if (done) done(ok);
        break;
      }
      case PacketType::kDisconnect: {
        const auto& d = std::get<fk::mqtt::Disconnect>(p);
        lost("the server sent DISCONNECT " + hex_byte(d.reason_code));
        break;
      }
      default:
        break;
    }
  }

  void send(std::string bytes, std::function<void(bool, const Error&)> written = {}) {
    out_.push_back({std::move(bytes), std::move(written)});
    if (!writing_) flush(generation_);
  }

  void flush(unsigned gen) {
    if (out_.empty() || closed_) {
      writing_ = false;
      if (closing_ && out_.empty()) close();
      return;
    }
    writing_ = true;
    auto self = shared_from_this();
    asio::async_write(*stream_, asio::buffer(out_.front().bytes),
                      [self, gen](const boost::system::error_code& e, std::size_t) {
                        if (gen != self->generation_) return;
                        if (e) return self->lost("write: " + e.message());
                        auto done = std::move(self->out_.front().written);
                        self->out_.pop_front();
                        if (done) done(true, Error{});
                        self->flush(gen);
                      });
  }

  void lost(const std::string& why) {
    const bool was_connected = connected_;
    close();
    if (was_connected) {
      if (auto h = on_lost_) h(Error{ErrorKind::kNetwork, why, 0, ""});
    }
  }

  // Closes the socket and fails what was waiting on it.
  void close() {
    ++generation_;
    const bool had = !closed_;
    closed_ = true;
    connected_ = connecting_ = closing_ = writing_ = false;
    resolver_.cancel();
    timer_.cancel();
    keep_alive_timer_.cancel();
    if (stream_) {
      boost::system::error_code ignored;
      stream_->lowest_layer().shutdown(tcp::socket::shutdown_both, ignored);
      stream_->lowest_layer().close(ignored);
    }
    auto pubacks = std::move(pubacks_);
    auto subacks = std::move(subacks_);
    auto out = std::move(out_);
    pubacks_.clear();
    subacks_.clear();
    out_.clear();
    if (!had) return;
    const Error e{ErrorKind::kNetwork, "connection closed", 0, ""};
    for (auto& [id, done] : pubacks)
      if (done) asio::post(io_, [done = done, e] { done(false, e); });
    for (auto& [id, done] : subacks)
      if (done) asio::post(io_, [done = done] { done(false); });
    for (auto& o : out)
      if (o.written) asio::post(io_, [done = o.written, e] { done(false, e); });
  }
};

MqttClient::MqttClient(asio::io_context& io) : state_(std::make_shared<MqttClientState>(io)) {}

MqttClient::~MqttClient() {
  state_->on_message_ = nullptr;
  state_->on_lost_ = nullptr;
  state_->on_connect_ = nullptr;
  // A DISCONNECT being written finishes on its own (the pending write holds the state).
  if (!state_->closing_) state_->close();
}

void MqttClient::set_message_handler(MessageHandler handler) {
  state_->on_message_ = std::move(handler);
}

void MqttClient::set_disconnect_handler(std::function<void(const Error&)> handler) {
  state_->on_lost_ = std::move(handler);
}

void MqttClient::connect(const Endpoint& endpoint, const TlsIdentity& identity,
                         const ConnectOptions& options,
                         std::function<void(const ConnectResult&)> done) {
  state_->connect(endpoint, identity, options, std::move(done));
}

void MqttClient::subscribe(const std::vector<std::string>& filters, std::uint8_t qos,
                           std::function<void(bool ok)> done) {
  if (!state_->connected_ || filters.empty()) {
    if (done) asio::post(state_->io_, [done] { done(false); });
    return;
  }
  fk::mqtt::Subscribe s;
  s.packet_id = state_->packet_id();
  for (const auto& f : filters) s.subscriptions.push_back({f, qos, false, false, 0});
  state_->subacks_[s.packet_id] = std::move(done);
  state_->send(fk::mqtt::encode(state_->version_, s));
}

void MqttClient::publish(const std::string& topic, std::string payload, std::uint8_t qos,
                         bool retain, std::function<void(bool ok, const Error& error)> done) {
  if (!state_->connected_) {
    if (done)
      asio::post(state_->io_, [done] { done(false, Error{ErrorKind::kNetwork, "not connected"}); });
    return;
  }
  fk::mqtt::Publish p;
  p.topic = topic;
  p.payload = std::move(payload);
  p.qos = qos > 1 ? 1 : qos;
  p.retain = retain;
  if (p.qos == 1) {
    p.packet_id = state_->packet_id();
    state_->pubacks_[p.packet_id] = std::move(done);
    state_->send(fk::mqtt::encode(state_->version_, p));
  } else {
    state_->send(fk::mqtt::encode(state_->version_, p), std::move(done));
  }
}

void MqttClient::disconnect() {
  if (!state_->connected_) {
    state_->close();
    return;
  }
  state_->connected_ = false;
  state_->send(fk::mqtt::encode(state_->version_, fk::mqtt::Disconnect{}));
  state_->closing_ = true;
}

bool MqttClient::connected() const {
  return state_->connected_;
}

// --- DeviceConnection ---------------------------------------------------------------------

class DeviceConnectionState : public std::enable_shared_from_this<DeviceConnectionState> {
 public:
  DeviceConnectionState(asio::io_context& io, Endpoint ep, TlsIdentity id, ConnectOptions o,
                        RetryPolicy retry, DeviceConnection::Handlers h)
      : io_(io),
        endpoint_(std::move(ep)),
        identity_(std::move(id)),
        options_(std::move(o)),
        retry_(retry),
        handlers_(std::move(h)),
        timer_(io),
        rng_(std::random_device{}()) {}

  asio::io_context& io_;
  Endpoint endpoint_;
  TlsIdentity identity_;
  ConnectOptions options_;
  RetryPolicy retry_;
  DeviceConnection::Handlers handlers_;
  asio::steady_timer timer_;
  std::mt19937_64 rng_;
  std::unique_ptr<MqttClient> client_;
  std::unique_ptr<MqttClient> retiring_;  // the previous identity's, closing
  std::vector<std::string> filters_;
  bool stopped_ = true;
  std::uint32_t attempts_ = 0;
  std::uint64_t reconnects_ = 0;
  std::optional<SteadyClock::time_point> last_attempt_;

  void attempt() {
    if (stopped_) return;
    last_attempt_ = SteadyClock::now();
    client_ = std::make_unique<MqttClient>(io_);
    watch();
    std::weak_ptr<DeviceConnectionState> weak = shared_from_this();
    client_->connect(endpoint_, identity_, options_, [weak](const ConnectResult& r) {
      auto self = weak.lock();
      if (!self || self->stopped_) return;
      if (r.ok) {
        if (self->attempts_ > 0 || self->reconnects_ > 0) ++self->reconnects_;
        self->attempts_ = 0;
        if (!self->filters_.empty()) self->client_->subscribe(self->filters_, 1, [](bool) {});
        if (auto h = self->handlers_.on_connected) h();
        return;
      }
      if (r.permanent) {
        self->stopped_ = true;
        Error e = r.error;
        // The certificate refused here is the device's own (revoked, deactivated, ...).
        if (e.kind == ErrorKind::kClaimRejected) e.kind = ErrorKind::kDeviceRejected;
        if (auto h = self->handlers_.on_disconnected) h(e, true);
        return;
      }
      if (auto h = self->handlers_.on_disconnected) h(r.error, false);
      self->schedule();
    });
  }

  void watch() {
    std::weak_ptr<DeviceConnectionState> weak = shared_from_this();
    client_->set_message_handler([weak](const std::string& t, const std::string& p) {
      if (auto self = weak.lock())
        if (auto h = self->handlers_.on_message) h(t, p);
    });
    client_->set_disconnect_handler([weak](const Error& e) {
      auto self = weak.lock();
      if (!self || self->stopped_) return;
      if (auto h = self->handlers_.on_disconnected) h(e, false);
      self->schedule();
    });
  }

  void adopt(std::unique_ptr<MqttClient> connected) {
    last_attempt_ = SteadyClock::now();
    client_ = std::move(connected);
    watch();
    if (!filters_.empty()) client_->subscribe(filters_, 1, [](bool) {});
    asio::post(io_, [weak = std::weak_ptr<DeviceConnectionState>(shared_from_this())] {
      auto self = weak.lock();
      if (self && !self->stopped_)
        if (auto h = self->handlers_.on_connected) h();
    });
  }

  void schedule() {
    ++attempts_;
    if (retry_.max_attempts != 0 && attempts_ > retry_.max_attempts) {
      stopped_ = true;
      if (auto h = handlers_.on_disconnected)
        h(Error{ErrorKind::kGaveUp,
                "gave up reconnecting after " + std::to_string(attempts_ - 1) + " attempts"},
          true);
      return;
    }
    auto delay = std::chrono::milliseconds(backoff_delay_ms(retry_, attempts_, rng_()));
    if (last_attempt_) {  // AWS: at most one connect per second per client id
      const auto earliest = *last_attempt_ + std::chrono::seconds(1);
      const auto now = SteadyClock::now();
      if (now + delay < earliest)
        delay = std::chrono::duration_cast<std::chrono::milliseconds>(earliest - now);
    }
    timer_.expires_after(delay);
    std::weak_ptr<DeviceConnectionState> weak = shared_from_this();
    timer_.async_wait([weak](const boost::system::error_code& e) {
      auto self = weak.lock();
      if (!e && self) self->attempt();
    });
  }
};

DeviceConnection::DeviceConnection(asio::io_context& io, Endpoint endpoint, TlsIdentity identity,
                                   ConnectOptions options, RetryPolicy retry, Handlers handlers)
    : state_(std::make_shared<DeviceConnectionState>(io, std::move(endpoint), std::move(identity),
                                                     std::move(options), retry,
                                                     std::move(handlers))) {}

DeviceConnection::~DeviceConnection() {
  state_->stopped_ = true;
  state_->timer_.cancel();
  state_->client_.reset();
}

void DeviceConnection::start() {
  if (!state_->stopped_) return;
  state_->stopped_ = false;
  state_->attempts_ = 0;
  state_->attempt();
}

void DeviceConnection::start(std::unique_ptr<MqttClient> connected) {
  if (!state_->stopped_) return;
  state_->stopped_ = false;
  state_->attempts_ = 0;
  if (connected && connected->connected()) {
    state_->adopt(std::move(connected));
  } else {
    state_->attempt();
  }
}

void DeviceConnection::stop() {
  state_->stopped_ = true;
  state_->timer_.cancel();
  if (state_->client_) state_->client_->disconnect();
}

void DeviceConnection::subscribe(const std::string& filter) {
  subscribe(std::vector<std::string>{filter}, {});
}

void DeviceConnection::subscribe(const std::vector<std::string>& filters,
                                 std::function<void(bool ok)> done) {
  for (const auto& f : filters)
    if (std::find(state_->filters_.begin(), state_->filters_.end(), f) == state_->filters_.end())
      state_->filters_.push_back(f);
  if (state_->client_ && state_->client_->connected())
    state_->client_->subscribe(
        filters, 1, done ? std::move(done) : [](bool) {});
}

void DeviceConnection::switch_identity(TlsIdentity identity) {
  auto& s = *state_;
  s.identity_ = std::move(identity);
  s.timer_.cancel();
  if (s.client_) {
    s.client_->disconnect();  // DISCONNECT written, then closed (kept until then)
    s.retiring_ = std::move(s.client_);
  }
  s.stopped_ = false;
  s.attempts_ = 0;
  auto delay = std::chrono::milliseconds(0);
  if (s.last_attempt_) {  // AWS: at most one connect per second per client id
    const auto earliest = *s.last_attempt_ + std::chrono::seconds(1);
    const auto now = SteadyClock::now();
    if (now < earliest)
      delay = std::chrono::duration_cast<std::chrono::milliseconds>(earliest - now);
  }
  s.timer_.expires_after(delay);
  std::weak_ptr<DeviceConnectionState> weak = state_;
  s.timer_.async_wait([weak](const boost::system::error_code& e) {
    auto self = weak.lock();
    if (!e && self) self->attempt();
  });
}

void DeviceConnection::publish(const std::string& topic, std::string payload, std::uint8_t qos,
                               bool retain, std::function<void(bool, const Error&)> done) {
  if (!state_->client_ || !state_->client_->connected()) {
    if (done)
      asio::post(state_->io_, [done] { done(false, Error{ErrorKind::kNetwork, "not connected"}); });
    return;
  }
  state_->client_->publish(topic, std::move(payload), qos, retain, std::move(done));
}

bool DeviceConnection::connected() const {
  return state_->client_ && state_->client_->connected();
}

std::uint64_t DeviceConnection::reconnects() const {
  return state_->reconnects_;
}

}  // namespace fleetkey
