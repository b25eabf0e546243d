#include "net/tls/tls_listener.h"

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <csignal>
#include <optional>

#include "base/log.h"
#include "base/metrics.h"
#include "net/tcp_listener.h"
#include "net/tls/tls_connection.h"

namespace fk::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// Bound to an io_context's own executor rather than any_io_executor (56 bytes, kept in the
// socket, the timer and every pending operation): ~150 bytes less per idle connection.
using Socket = asio::basic_stream_socket<tcp, asio::io_context::executor_type>;
using Timer = asio::basic_waitable_timer<std::chrono::steady_clock,
                                         asio::wait_traits<std::chrono::steady_clock>,
                                         asio::io_context::executor_type>;

// A TLS connection driven straight on its socket by the engine's session (non-blocking
// socket, Asio readiness waits) rather than through asio::ssl::stream, whose engine keeps
// about 34 KB of buffers per connection. With one read buffer per thread, an idle connection
// keeps only the TLS library's session state and ours.
// A listener's handshakes: how many are under way (the accept gate), how long the finished ones
// took, how many failed (refused certificate, timeout, closed). Shared with each connection until
// its handshake ends.
struct HandshakeCounters {
  std::atomic<int> pending{0};
  metrics::Histogram seconds;
  metrics::Counter failed;
  // TlsListenerConfig::on_handshake_failed (set before the first connection).
  std::function<void(const std::string&, const std::string&, const std::string&)> on_failed;
};

class FdTlsConnection final : public TlsConnection {
 public:
  FdTlsConnection(asio::io_context& io, Socket socket, TlsEngine& engine,
                  std::size_t max_write_backlog, std::shared_ptr<HandshakeCounters> pending)
      : io_(io),
        socket_(std::move(socket)),
        timer_(std::make_unique<Timer>(io.get_executor())),
        pending_handshakes_(std::move(pending)),
        max_write_backlog_(max_write_backlog) {
    ++pending_handshakes_->pending;
    handshake_started_ = std::chrono::steady_clock::now();
    boost::system::error_code ec;
    socket_.non_blocking(true, ec);
    auto ep = socket_.remote_endpoint(ec);
    if (!ec) remote_ = ep.address().to_string();
    tls_ = engine.accept(static_cast<int>(socket_.native_handle()));
  }

  ~FdTlsConnection() override { handshake_ended(); }

  void handshake(int timeout_seconds, std::string listener,
                 std::function<void(std::shared_ptr<FdTlsConnection>)> done) {
    listener_ = std::move(listener);
    on_handshake_ = std::move(done);
    auto self = std::static_pointer_cast<FdTlsConnection>(shared_from_this());
    timer_->expires_after(std::chrono::seconds(timeout_seconds));
    timer_->async_wait([self](const boost::system::error_code& ec) {
      if (ec || self->handshake_done_) return;
      log::warn("tls.handshake_timeout", {{"listener", self->listener_}, {"peer", self->remote_}});
      self->abort();
    });
    continue_handshake();
  }

  void start(OnData on_data, OnClose on_close) override {
    on_data_ = std::move(on_data);
    on_close_ = std::move(on_close);
    pump_read();
  }

  void write(std::string bytes) override {
    if (!open_ || overflowed_ || bytes.empty()) return;
    if (max_write_backlog_ != 0 && pending_.size() + bytes.size() > max_write_backlog_) {
      // A peer that does not read must not make the server hold its bytes without bound.
      log::warn("tls.write_backlog_full", {{"listener", listener_},
                                           {"peer", remote_},
                                           {"queued_bytes", std::to_string(pending_.size())},
                                           {"limit_bytes", std::to_string(max_write_backlog_)}});
      // Closed on the next turn, not inside the caller's write (it may be the connection's
      // owner, in the middle of its own work); nothing more is queued meanwhile.
      if (!overflowed_) {
        overflowed_ = true;
        asio::post(io_, [self = shared_from_this(), this] {
          close("the peer does not read: more than " + std::to_string(max_write_backlog_) +
                " bytes waiting to be sent");
        });
      }
      return;
    }
    pending_ += bytes;
    // Coalesce: everything written during this turn of the event loop goes out in as few TLS
    // records and syscalls as possible.
    if (!write_waiting_ && !flush_posted_) {
      flush_posted_ = true;
      asio::post(io_, [self = shared_from_this(), this] {
        flush_posted_ = false;
        if (!write_waiting_) pump_write();
      });
    }
  }

  void close_after_write(const std::string& reason) override {
    if (!open_) return;
    close_reason_ = reason;
    closing_ = true;
    if (pending_.empty()) close(reason);
  }

  void close(const std::string& reason) override {
    if (!open_) return;
    open_ = false;
    if (timer_) timer_->cancel();
    boost::system::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    pending_.clear();
    if (on_close_) {
      auto fn = std::move(on_close_);
      on_close_ = nullptr;
      fn(reason);
    }
    on_data_ = nullptr;
  }

  void post(std::function<void()> fn) override {
    asio::post(io_, [self = shared_from_this(), fn = std::move(fn)] { fn(); });
  }
  asio::io_context& context() override { return io_; }
  bool is_open() const override { return open_; }
  const std::shared_ptr<const PeerCertificate>& peer() const override { return peer_; }
  bool resumed() const override { return resumed_; }
  const std::string& remote_address() const override { return remote_; }
  std::string alpn() const override { return tls_ ? tls_->alpn() : std::string(); }
  std::string sni() const override { return tls_ ? tls_->sni() : std::string(); }
  std::string peer_certificate_der() const override {
    return tls_ ? tls_->peer_certificate_der() : std::string();
  }
  std::size_t queued_bytes() const override { return pending_.size(); }

 private:
  void abort() {
    handshake_ended();
    open_ = false;
    boost::system::error_code ec;
    socket_.close(ec);
  }

  // Waits until the socket is ready for `what`, then runs fn (if still open).
  void wait(tcp::socket::wait_type what, std::function<void()> fn) {
    auto self = shared_from_this();
    socket_.async_wait(what, [self, fn = std::move(fn)](const boost::system::error_code& ec) {
      if (ec || !self->is_open()) return;
      fn();
    });
  }

  // Waits for the socket in the direction the TLS library asked for.
  void wait_for(TlsStep step, std::function<void()> fn) {
    wait(step == TlsStep::kWantWrite ? tcp::socket::wait_write : tcp::socket::wait_read,
         std::move(fn));
  }

  // The listener counts handshakes under way; this one is no longer (done, failed, timed out).
  void handshake_ended() {
    if (pending_handshakes_) {
      --pending_handshakes_->pending;
      if (handshake_done_) {
        pending_handshakes_->seconds.observe(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - handshake_started_)
                .count());
      } else {
        pending_handshakes_->failed.add();
      }
      pending_handshakes_.reset();
    }
  }

  void continue_handshake() {
    TlsStep step = tls_->handshake();
    if (step == TlsStep::kDone) {
      handshake_done_ = true;
      handshake_ended();
      // The handshake's timer goes (its cancelled wait holds no reference to it): an idle
      // connection keeps none; a read pause makes one.
      timer_->cancel();
      timer_.reset();
      finish_handshake();
      return;
    }
    if (step == TlsStep::kWantRead || step == TlsStep::kWantWrite)
      return wait_for(step, [this] { continue_handshake(); });
    std::string why = step == TlsStep::kClosed ? std::string("peer closed during the handshake")
                                               : tls_->failure();
    log::warn("tls.handshake_failed",
              {{"listener", listener_}, {"peer", remote_}, {"reason", why}});
    if (step == TlsStep::kFailed && pending_handshakes_ && pending_handshakes_->on_failed) {
      // Read only now (a refused handshake is rare): who it was, for the device timeline.
      if (std::string der = tls_->peer_certificate_der(); !der.empty())
        pending_handshakes_->on_failed(remote_, der, why);
    }
    abort();
  }

  void finish_handshake() {
    auto peer = std::make_shared<PeerCertificate>(tls_->peer_certificate());
    if (peer->certificate_id.empty()) {  // cannot happen (certificate required), never trust it
      log::warn("tls.handshake_failed",
                {{"listener", listener_}, {"peer", remote_}, {"reason", "no client certificate"}});
      abort();
      return;
    }
    peer_ = std::move(peer);
    resumed_ = tls_->resumed();
    auto fn = std::move(on_handshake_);
    on_handshake_ = nullptr;
    fn(std::static_pointer_cast<FdTlsConnection>(shared_from_this()));
  }

  void pause_reading_for(std::chrono::milliseconds d) override {
    resume_reading_at_ = std::chrono::steady_clock::now() + d;
  }

  // Reads everything the TLS library can give now, then waits for the socket again.
  void pump_read() {
    thread_local std::array<char, 16 * 1024> buffer;
    for (;;) {
      if (!open_ || read_paused_) return;
      if (resume_reading_at_ && std::chrono::steady_clock::now() < *resume_reading_at_) {
        // Paused (a rate limit): the handshake timer is free once the handshake is done.
        read_paused_ = true;
        if (!timer_) timer_ = std::make_unique<Timer>(io_.get_executor());
        timer_->expires_at(*resume_reading_at_);
        timer_->async_wait([self = shared_from_this(), this](const boost::system::error_code& ec) {
          read_paused_ = false;
          resume_reading_at_.reset();
          if (!ec) pump_read();
        });
        return;
      }
      std::size_t n = 0;
      TlsStep step = tls_->read(buffer.data(), buffer.size(), &n);
      if (step == TlsStep::kDone) {
        if (on_data_) on_data_(std::string_view(buffer.data(), n));
        continue;
      }
      if (step == TlsStep::kWantRead || step == TlsStep::kWantWrite)
        return wait_for(step, [this] { pump_read(); });
      close(step == TlsStep::kClosed ? "peer closed" : "TLS read error");
      return;
    }
  }

  // Drops what was sent from the front of pending_, once per pump (erasing after every record
  // would move the rest of a large backlog again each time); a drained buffer that grew large
  // is given back.
  void forget_sent(std::size_t sent) {
    pending_.erase(0, sent);
    if (pending_.empty() && pending_.capacity() > 64 * 1024) std::string().swap(pending_);
  }

  void pump_write() {
    std::size_t sent = 0;
    while (open_ && sent < pending_.size()) {
      std::size_t n = 0;
      TlsStep step = tls_->write(pending_.data() + sent,
                                 std::min<std::size_t>(pending_.size() - sent, 1 << 20), &n);
      if (step == TlsStep::kDone) {
        sent += n;
        continue;
      }
      if (!open_) return;
      forget_sent(sent);
      if (step == TlsStep::kWantRead || step == TlsStep::kWantWrite) {
        write_waiting_ = true;
        wait_for(step, [this] {
          write_waiting_ = false;
          pump_write();
        });
        return;
      }
      close(step == TlsStep::kClosed ? "peer closed" : "TLS write error");
      return;
    }
    if (!open_) return;
    forget_sent(sent);
    if (closing_ && pending_.empty()) {
      std::string why = std::move(close_reason_);
      close(why);
    }
  }

  asio::io_context& io_;
  Socket socket_;
  std::unique_ptr<Timer> timer_;  // the handshake's timeout, then only while reading is paused
  std::optional<std::chrono::steady_clock::time_point> resume_reading_at_;
  bool read_paused_ = false;
  std::unique_ptr<TlsSession> tls_;
  std::shared_ptr<HandshakeCounters> pending_handshakes_;  // until the handshake ends
  std::chrono::steady_clock::time_point handshake_started_;
  std::string pending_;            // bytes waiting to be sent (written ones are erased)
  std::size_t max_write_backlog_;  // 0 = no limit
  bool overflowed_ = false;        // past max_write_backlog_: closing
  bool write_waiting_ = false;
  bool flush_posted_ = false;
  bool closing_ = false;
  bool open_ = true;
  bool handshake_done_ = false;
  bool resumed_ = false;
  std::string close_reason_, listener_;
  std::function<void(std::shared_ptr<FdTlsConnection>)> on_handshake_;
  OnData on_data_;
  OnClose on_close_;
  std::shared_ptr<const PeerCertificate> peer_;
  std::string remote_;
};

}  // namespace

struct TlsListener::State : std::enable_shared_from_this<TlsListener::State> {
  State(IoPool& p, asio::io_context& accept, TlsListenerConfig c, OnConnection fn)
      : pool(p), accept_context(accept), config(std::move(c)), on_connection(std::move(fn)) {
    pending->on_failed = config.on_handshake_failed;
  }

  IoPool& pool;
  asio::io_context& accept_context;
  TlsListenerConfig config;
  OnConnection on_connection;
  std::unique_ptr<TlsEngine> engine;
  std::unique_ptr<TcpListener> tcp;
  std::shared_ptr<HandshakeCounters> pending = std::make_shared<HandshakeCounters>();
  // Past the cap, new connections wait only while the I/O threads lag (IoPool::busy):
  // handshakes that merely wait (a client that sends nothing) cost no CPU, so idle sockets
  // cannot shut the accept gate.
  static constexpr std::int64_t kBusyLagMs = 50;

  void on_accept(int fd) {
    const std::size_t shard = pool.next_index();
    asio::io_context& io = pool.at(shard);
    auto self = shared_from_this();
    asio::post(io, [self, &io, fd] {
      boost::system::error_code ec;
      Socket socket(io.get_executor());
      bool v6 = self->config.bind_address.find(':') != std::string::npos;
      socket.assign(v6 ? tcp::v6() : tcp::v4(), fd, ec);
      if (ec) {
        ::close(fd);
        return;
      }
      auto conn =
          std::make_shared<FdTlsConnection>(io, std::move(socket), *self->engine,
                                            self->config.max_write_backlog_bytes, self->pending);
      conn->handshake(self->config.handshake_timeout_seconds, self->config.name,
                      [self](std::shared_ptr<FdTlsConnection> c) {
                        const std::string& required = self->config.tls.required_alpn;
                        if (!required.empty() && c->alpn() != required) {
                          log::warn("tls.handshake_failed",
                                    {{"listener", self->config.name},
                                     {"peer", c->remote_address()},
                                     {"reason", "ALPN " + required + " not offered"}});
                          c->close("ALPN required");
                          return;
                        }
                        self->on_connection(c);
                      });
    });
  }
};

TlsListener::TlsListener(IoPool& pool, asio::io_context& accept_context, TlsListenerConfig config,
                         OnConnection on_connection)
    : state_(std::make_shared<State>(pool, accept_context, std::move(config),
                                     std::move(on_connection))) {}

TlsListener::~TlsListener() {
  stop();
}

Status TlsListener::start() {
  // The TLS libraries write to the socket with send(2)/write(2): a peer that vanished must give
  // EPIPE, not kill the process with SIGPIPE.
  std::signal(SIGPIPE, SIG_IGN);
  auto engine = TlsEngine::create(state_->config.engine, state_->config.tls);
  if (!engine.is_ok()) return engine.status();
  state_->engine = std::move(*engine);

  std::weak_ptr<State> weak = state_;
  state_->tcp =
      std::make_unique<TcpListener>(state_->accept_context, state_->config.bind_address,
                                    state_->config.port, [weak](int fd, const std::string&) {
                                      if (auto s = weak.lock()) {
                                        s->on_accept(fd);
                                      } else {
                                        ::close(fd);
                                      }
                                    });
  if (int cap = state_->config.max_pending_handshakes; cap > 0) {
    state_->pool.measure_lag();
    state_->tcp->set_gate([gate_state = std::weak_ptr<State>(state_), cap] {
      auto s = gate_state.lock();
      return !s || s->pending->pending.load() < cap || !s->pool.busy(State::kBusyLagMs);
    });
  }
  return state_->tcp->start();
}

void TlsListener::stop() {
  if (state_->tcp) state_->tcp->stop();
}

void TlsListener::write_metrics(metrics::Exposition& out) const {
  const metrics::Labels labels = {{"listener", state_->config.name}};
  out.histogram("fleetkey_tls_handshake_duration_seconds",
                "Mutual-TLS handshakes that succeeded, accept to finished, by listener.",
                state_->pending->seconds, labels);
  out.counter("fleetkey_tls_handshake_failures_total",
              "Handshakes that failed (refused certificate, timeout, peer closed), by listener.",
              static_cast<double>(state_->pending->failed.value()), labels);
  out.gauge("fleetkey_tls_handshakes_in_progress", "Handshakes under way, by listener.",
            state_->pending->pending.load(), labels);
}

std::uint16_t TlsListener::port() const {
  return state_->tcp ? state_->tcp->port() : 0;
}

Status TlsListener::set_trust_anchors(const std::vector<std::string>& pems) {
  if (!state_->engine) {
    state_->config.tls.trust_anchors = pems;
    return Status::ok();
  }
  return state_->engine->set_trust_anchors(pems);
}

}  // namespace fk::net
