#include "net/tls/tls_listener.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <csignal>
#include <deque>
#include <optional>

#include "base/log.h"
#include "base/strings.h"
#include "crypto/openssl/ossl.h"
#include "net/tcp_listener.h"
#include "net/tls/tls_connection.h"

namespace fk::net {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

namespace {

PeerCertificate describe_peer(X509* cert) {
  PeerCertificate p;
  unsigned char* der = nullptr;
  int len = i2d_X509(cert, &der);
  if (len > 0) {
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(der, static_cast<std::size_t>(len), md);
    p.certificate_id = to_hex(std::span<const std::uint8_t>(md, sizeof md));
    OPENSSL_free(der);
  }
  p.subject = crypto::ossl::name_to_string(X509_get_subject_name(cert));
  p.issuer = crypto::ossl::name_to_string(X509_get_issuer_name(cert));
  p.subject_fields = crypto::ossl::name_fields(X509_get_subject_name(cert));
  p.issuer_fields = crypto::ossl::name_fields(X509_get_issuer_name(cert));
  p.subject_alt_names = crypto::ossl::alt_names(cert, NID_subject_alt_name);
  p.issuer_alt_names = crypto::ossl::alt_names(cert, NID_issuer_alt_name);
  int idx = X509_NAME_get_index_by_NID(X509_get_subject_name(cert), NID_commonName, -1);
  if (idx >= 0) {
    unsigned char* utf8 = nullptr;
    int n = ASN1_STRING_to_UTF8(
        &utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(X509_get_subject_name(cert), idx)));
    if (n >= 0) {
      p.common_name.assign(reinterpret_cast<char*>(utf8), static_cast<std::size_t>(n));
      OPENSSL_free(utf8);
    }
  }
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
  if (bn != nullptr) {
    char* hex = BN_bn2hex(bn);
    p.serial_hex = hex;
    for (char& c : p.serial_hex) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    OPENSSL_free(hex);
    BN_free(bn);
  }
  return p;
}

// ALPN: AWS's port-443 protocol first, then plain "mqtt"; anything else continues without
// ALPN, unless the listener requires one (arg = the required protocol).
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void* arg) {
  const auto* required = static_cast<const std::string*>(arg);
  for (std::string_view want : {std::string_view("x-amzn-mqtt-ca"), std::string_view("mqtt")}) {
    if (!required->empty() && want != *required) continue;
    unsigned int i = 0;
    while (i < inlen) {
      unsigned int len = in[i];
      if (i + 1 + len > inlen) break;
      if (std::string_view(reinterpret_cast<const char*>(in + i + 1), len) == want) {
        *out = in + i + 1;
        *outlen = static_cast<unsigned char>(len);
        return SSL_TLSEXT_ERR_OK;
      }
      i += 1 + len;
    }
  }
  return required->empty() ? SSL_TLSEXT_ERR_NOACK : SSL_TLSEXT_ERR_ALERT_FATAL;
}

// On a port that requires ALPN, a ClientHello without the ALPN extension is refused with the
// no_application_protocol alert (RFC 7301), as one that offers only other protocols is (by
// select_alpn): the client learns why instead of meeting a silent close after the handshake.
int require_alpn_extension(SSL* ssl, int* alert, void* arg) {
  const auto* required = static_cast<const std::string*>(arg);
  if (required->empty()) return SSL_CLIENT_HELLO_SUCCESS;
  const unsigned char* ext = nullptr;
  std::size_t len = 0;
  if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &ext,
                                &len) == 1)
    return SSL_CLIENT_HELLO_SUCCESS;
  *alert = SSL_AD_NO_APPLICATION_PROTOCOL;
  return SSL_CLIENT_HELLO_ERROR;
}

Result<X509_STORE*> build_store(const std::vector<std::string>& pems) {
  X509_STORE* store = X509_STORE_new();
  for (const std::string& pem : pems) {
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    if (cert == nullptr) {
      X509_STORE_free(store);
      ERR_clear_error();
      return invalid_request("a trust anchor is not a PEM certificate");
    }
    X509_STORE_add_cert(store, cert);
    X509_free(cert);
  }
  // A registered CA may be an intermediate: it anchors trust on its own.
  X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN);
  return store;
}

// A TLS connection driven straight on its socket (SSL_set_fd, non-blocking SSL_* calls and
// Asio readiness waits) rather than through asio::ssl::stream, whose engine keeps about 34 KB
// of buffers per connection. With SSL_MODE_RELEASE_BUFFERS and one read buffer per thread, an
// idle connection keeps only OpenSSL's session state.
class FdTlsConnection final : public TlsConnection {
 public:
  FdTlsConnection(asio::io_context& io, tcp::socket socket, SSL_CTX* ctx,
                  std::size_t max_write_backlog)
      : io_(io),
        socket_(std::move(socket)),
        timer_(io),
        ssl_(SSL_new(ctx)),
        max_write_backlog_(max_write_backlog) {
    boost::system::error_code ec;
    socket_.non_blocking(true, ec);
    auto ep = socket_.remote_endpoint(ec);
    if (!ec) remote_ = ep.address().to_string();
    SSL_set_fd(ssl_, static_cast<int>(socket_.native_handle()));
    SSL_set_accept_state(ssl_);
  }
  ~FdTlsConnection() override {
    // A session whose handshake completed stays resumable from the cache however the
    // connection ended (OpenSSL drops sessions of connections not shut down with
    // close_notify, which MQTT clients rarely send).
    if (handshake_done_) SSL_set_shutdown(ssl_, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(ssl_);
  }

  void handshake(int timeout_seconds, std::string listener,
                 std::function<void(std::shared_ptr<FdTlsConnection>)> done) {
    listener_ = std::move(listener);
    on_handshake_ = std::move(done);
    auto self = std::static_pointer_cast<FdTlsConnection>(shared_from_this());
    timer_.expires_after(std::chrono::seconds(timeout_seconds));
    timer_.async_wait([self](const boost::system::error_code& ec) {
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
    if (max_write_backlog_ != 0 && queued_ + bytes.size() > max_write_backlog_) {
      // A peer that does not read must not make the server hold its bytes without bound.
      log::warn("tls.write_backlog_full", {{"listener", listener_},
                                           {"peer", remote_},
                                           {"queued_bytes", std::to_string(queued_)},
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
    queued_ += bytes.size();
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
    if (pending_.size() == sent_) close(reason);
  }

  void close(const std::string& reason) override {
    if (!open_) return;
    open_ = false;
    timer_.cancel();
    boost::system::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    pending_.clear();
    sent_ = 0;
    queued_ = 0;
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
  const PeerCertificate& peer() const override { return peer_; }
  const std::string& remote_address() const override { return remote_; }
  const std::string& alpn() const override { return alpn_; }
  const std::string& sni() const override { return sni_; }
  std::size_t queued_bytes() const override { return queued_; }

 private:
  void abort() {
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

  void continue_handshake() {
    ERR_clear_error();
    int r = SSL_do_handshake(ssl_);
    if (r == 1) {
      handshake_done_ = true;
      timer_.cancel();
      finish_handshake();
      return;
    }
    int err = SSL_get_error(ssl_, r);
    if (err == SSL_ERROR_WANT_READ)
      return wait(tcp::socket::wait_read, [this] { continue_handshake(); });
    if (err == SSL_ERROR_WANT_WRITE)
      return wait(tcp::socket::wait_write, [this] { continue_handshake(); });
    long verify = SSL_get_verify_result(ssl_);
    std::string why;
    if (verify != X509_V_OK) {
      why = X509_verify_cert_error_string(verify);
    } else if (unsigned long e = ERR_peek_error(); e != 0) {
      const char* reason = ERR_reason_error_string(e);
      why = reason ? reason : "TLS error";
    } else {
      why = err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN
                ? "peer closed during the handshake"
                : "TLS error";
    }
    ERR_clear_error();
    log::warn("tls.handshake_failed",
              {{"listener", listener_}, {"peer", remote_}, {"reason", why}});
    abort();
  }

  void finish_handshake() {
    X509* cert = SSL_get0_peer_certificate(ssl_);
    if (cert == nullptr) {  // cannot happen with fail_if_no_peer_cert, but never trust it
      log::warn("tls.handshake_failed",
                {{"listener", listener_}, {"peer", remote_}, {"reason", "no client certificate"}});
      abort();
      return;
    }
    peer_ = describe_peer(cert);
    const unsigned char* alpn = nullptr;
    unsigned int alpn_len = 0;
    SSL_get0_alpn_selected(ssl_, &alpn, &alpn_len);
    alpn_.assign(reinterpret_cast<const char*>(alpn), alpn_len);
    if (const char* sni = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name)) sni_ = sni;
    auto fn = std::move(on_handshake_);
    on_handshake_ = nullptr;
    fn(std::static_pointer_cast<FdTlsConnection>(shared_from_this()));
  }

  void pause_reading_for(std::chrono::milliseconds d) override {
    resume_reading_at_ = std::chrono::steady_clock::now() + d;
  }

  // Reads everything OpenSSL can give now, then waits for the socket again.
  void pump_read() {
    thread_local std::array<char, 16 * 1024> buffer;
    for (;;) {
      if (!open_ || read_paused_) return;
      if (resume_reading_at_ && std::chrono::steady_clock::now() < *resume_reading_at_) {
        // Paused (a rate limit): the handshake timer is free once the handshake is done.
        read_paused_ = true;
        timer_.expires_at(*resume_reading_at_);
        timer_.async_wait([self = shared_from_this(), this](const boost::system::error_code& ec) {
          read_paused_ = false;
          resume_reading_at_.reset();
          if (!ec) pump_read();
        });
        return;
      }
      ERR_clear_error();
      int n = SSL_read(ssl_, buffer.data(), static_cast<int>(buffer.size()));
      if (n > 0) {
        if (on_data_) on_data_(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
        continue;
      }
      int err = SSL_get_error(ssl_, n);
      if (err == SSL_ERROR_WANT_READ) return wait(tcp::socket::wait_read, [this] { pump_read(); });
      if (err == SSL_ERROR_WANT_WRITE)
        return wait(tcp::socket::wait_write, [this] { pump_read(); });
      ERR_clear_error();
      close(err == SSL_ERROR_ZERO_RETURN || err == SSL_ERROR_SYSCALL ? "peer closed"
                                                                     : "TLS read error");
      return;
    }
  }

  void pump_write() {
    while (open_ && !pending_.empty()) {
      ERR_clear_error();
      int n = SSL_write(ssl_, pending_.data(),
                        static_cast<int>(std::min<std::size_t>(pending_.size(), 1 << 20)));
      if (n > 0) {
        pending_.erase(0, static_cast<std::size_t>(n));
        queued_ -= std::min(queued_, static_cast<std::size_t>(n));
        continue;
      }
      int err = SSL_get_error(ssl_, n);
      if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
        write_waiting_ = true;
        wait(err == SSL_ERROR_WANT_WRITE ? tcp::socket::wait_write : tcp::socket::wait_read,
             [this] {
               write_waiting_ = false;
               pump_write();
             });
        return;
      }
      ERR_clear_error();
      close("TLS write error");
      return;
    }
    if (open_ && closing_ && sent_ == pending_.size()) close(close_reason_);
  }

  asio::io_context& io_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  std::optional<std::chrono::steady_clock::time_point> resume_reading_at_;
  bool read_paused_ = false;
  SSL* ssl_;
  std::string pending_;
  std::size_t sent_ = 0;  // bytes of pending_ already written
  std::size_t queued_ = 0;
  std::size_t max_write_backlog_;  // 0 = no limit
  bool overflowed_ = false;        // past max_write_backlog_: closing
  bool write_waiting_ = false;
  bool flush_posted_ = false;
  bool closing_ = false;
  bool open_ = true;
  bool handshake_done_ = false;
  std::string close_reason_, listener_;
  std::function<void(std::shared_ptr<FdTlsConnection>)> on_handshake_;
  OnData on_data_;
  OnClose on_close_;
  PeerCertificate peer_;
  std::string remote_, alpn_, sni_;
};

}  // namespace

struct TlsListener::State : std::enable_shared_from_this<TlsListener::State> {
  State(IoPool& p, asio::io_context& accept, TlsListenerConfig c, OnConnection fn)
      : pool(p),
        accept_context(accept),
        config(std::move(c)),
        on_connection(std::move(fn)),
        ctx(ssl::context::tls_server) {}

  IoPool& pool;
  asio::io_context& accept_context;
  TlsListenerConfig config;
  OnConnection on_connection;
  ssl::context ctx;
  std::unique_ptr<TcpListener> tcp;

  void on_accept(int fd) {
    const std::size_t shard = pool.next_index();
    asio::io_context& io = pool.at(shard);
    auto self = shared_from_this();
    asio::post(io, [self, &io, fd] {
      boost::system::error_code ec;
      tcp::socket socket(io);
      bool v6 = self->config.bind_address.find(':') != std::string::npos;
      socket.assign(v6 ? tcp::v6() : tcp::v4(), fd, ec);
      if (ec) {
        ::close(fd);
        return;
      }
      auto conn = std::make_shared<FdTlsConnection>(
          io, std::move(socket), self->ctx.native_handle(), self->config.max_write_backlog_bytes);
      conn->handshake(
          self->config.handshake_timeout_seconds, self->config.name,
          [self](std::shared_ptr<FdTlsConnection> c) {
            if (!self->config.required_alpn.empty() && c->alpn() != self->config.required_alpn) {
              log::warn("tls.handshake_failed",
                        {{"listener", self->config.name},
                         {"peer", c->remote_address()},
                         {"reason", "ALPN " + self->config.required_alpn + " not offered"}});
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
  // OpenSSL writes to the socket with write(2): a peer that vanished must give EPIPE, not kill
  // the process with SIGPIPE.
  std::signal(SIGPIPE, SIG_IGN);
  auto& ctx = state_->ctx;
  boost::system::error_code ec;
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                      ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1,
                  ec);
  SSL_CTX* native = ctx.native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  // Idle connections give their 16 KB+ record buffers back to the allocator.
  SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                               SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  ctx.use_certificate_chain_file(state_->config.certificate_chain_file, ec);
  if (ec)
    return invalid_request("cannot load " + state_->config.certificate_chain_file + ": " +
                           ec.message());
  ctx.use_private_key_file(state_->config.private_key_file, ssl::context::pem, ec);
  if (ec)
    return invalid_request("cannot load " + state_->config.private_key_file + ": " + ec.message());
  ctx.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert, ec);
  SSL_CTX_set_alpn_select_cb(native, select_alpn, &state_->config.required_alpn);
  SSL_CTX_set_client_hello_cb(native, require_alpn_extension, &state_->config.required_alpn);
  // Resumption: one stateless session ticket per handshake (TLS 1.3 and 1.2; OpenSSL's
  // default is two) plus a server-side cache for TLS 1.2 session ids. OpenSSL 3.0 makes each
  // stateless ticket by serialising the session and parsing it back (d2i_SSL_SESSION), which
  // decodes the client certificate's key again: two tickets were ~17% of a full handshake's
  // server CPU (perf, docs/performance.md). Stateful TLS 1.3 tickets avoid that cost but keep
  // a session copy per connection in the cache (+10 KB per idle connection), so not those.
  SSL_CTX_set_num_tickets(native, 1);
  SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_SERVER);
  const unsigned char sid[] = "fleetkeyd";
  SSL_CTX_set_session_id_context(native, sid, sizeof sid - 1);
  FK_RETURN_IF_ERROR(set_trust_anchors(state_->config.trust_anchors));

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
  return state_->tcp->start();
}

void TlsListener::stop() {
  if (state_->tcp) state_->tcp->stop();
}

std::uint16_t TlsListener::port() const {
  return state_->tcp ? state_->tcp->port() : 0;
}

Status TlsListener::set_trust_anchors(const std::vector<std::string>& pems) {
  FK_ASSIGN_OR_RETURN(X509_STORE * store, build_store(pems));
  SSL_CTX_set_cert_store(state_->ctx.native_handle(), store);  // takes ownership
  return Status::ok();
}

}  // namespace fk::net
