#include "net/tls/tls_listener.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <deque>

#include "base/log.h"
#include "base/strings.h"
#include "net/tcp_listener.h"
#include "net/tls/tls_connection.h"

namespace fk::net {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

namespace {

std::string name_text(const X509_NAME* name) {
  BIO* bio = BIO_new(BIO_s_mem());
  X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  return out;
}

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
  p.subject = name_text(X509_get_subject_name(cert));
  p.issuer = name_text(X509_get_issuer_name(cert));
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

class AsioTlsConnection final : public TlsConnection {
 public:
  AsioTlsConnection(asio::io_context& io, tcp::socket socket, ssl::context& ctx)
      : io_(io), stream_(std::move(socket), ctx), timer_(io) {
    boost::system::error_code ec;
    auto ep = stream_.lowest_layer().remote_endpoint(ec);
    if (!ec) remote_ = ep.address().to_string();
  }

  void handshake(int timeout_seconds, std::string listener,
                 std::function<void(std::shared_ptr<AsioTlsConnection>)> done) {
    auto self = std::static_pointer_cast<AsioTlsConnection>(shared_from_this());
    timer_.expires_after(std::chrono::seconds(timeout_seconds));
    timer_.async_wait([self, listener](const boost::system::error_code& ec) {
      if (ec) return;
      log::warn("tls.handshake_timeout", {{"listener", listener}, {"peer", self->remote_}});
      self->abort();
    });
    stream_.async_handshake(ssl::stream_base::server, [self, listener, done = std::move(done)](
                                                          const boost::system::error_code& ec) {
      self->timer_.cancel();
      if (ec) {
        long verify = SSL_get_verify_result(self->stream_.native_handle());
        std::string why =
            verify != X509_V_OK ? X509_verify_cert_error_string(verify) : ec.message();
        log::warn("tls.handshake_failed",
                  {{"listener", listener}, {"peer", self->remote_}, {"reason", why}});
        self->abort();
        return;
      }
      SSL* ssl = self->stream_.native_handle();
      X509* cert = SSL_get0_peer_certificate(ssl);
      if (cert == nullptr) {  // cannot happen with fail_if_no_peer_cert, but never trust it
        log::warn(
            "tls.handshake_failed",
            {{"listener", listener}, {"peer", self->remote_}, {"reason", "no client certificate"}});
        self->abort();
        return;
      }
      self->peer_ = describe_peer(cert);
      const unsigned char* alpn = nullptr;
      unsigned int alpn_len = 0;
      SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
      self->alpn_.assign(reinterpret_cast<const char*>(alpn), alpn_len);
      if (const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name)) self->sni_ = sni;
      done(self);
    });
  }

  void start(OnData on_data, OnClose on_close) override {
    on_data_ = std::move(on_data);
    on_close_ = std::move(on_close);
    read();
  }

  void write(std::string bytes) override {
    if (!open_ || bytes.empty()) return;
    queued_ += bytes.size();
    queue_.push_back(std::move(bytes));
    if (!writing_) write_next();
  }

  void close_after_write(const std::string& reason) override {
    if (!open_) return;
    close_reason_ = reason;
    closing_ = true;
    if (!writing_) close(reason);
  }

  void close(const std::string& reason) override {
    if (!open_) return;
    open_ = false;
    timer_.cancel();
    boost::system::error_code ec;
    stream_.lowest_layer().shutdown(tcp::socket::shutdown_both, ec);
    stream_.lowest_layer().close(ec);
    queue_.clear();
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
    stream_.lowest_layer().close(ec);
  }

  void read() {
    auto self = shared_from_this();
    stream_.async_read_some(
        asio::buffer(buffer_), [this, self](const boost::system::error_code& ec, std::size_t n) {
          if (!open_) return;
          if (ec) {
            close(ec == asio::error::eof || ec == ssl::error::stream_truncated ? "peer closed"
                                                                               : ec.message());
            return;
          }
          if (on_data_) on_data_(std::string_view(buffer_.data(), n));
          if (open_) read();
        });
  }

  void write_next() {
    if (queue_.empty() || !open_) {
      writing_ = false;
      if (closing_) close(close_reason_);
      return;
    }
    writing_ = true;
    // Coalesce queued buffers into one TLS record write.
    current_.clear();
    while (!queue_.empty() && current_.size() < 64 * 1024) {
      current_ += queue_.front();
      queue_.pop_front();
    }
    auto self = shared_from_this();
    asio::async_write(stream_, asio::buffer(current_),
                      [this, self](const boost::system::error_code& ec, std::size_t n) {
                        queued_ -= std::min(queued_, n);
                        if (ec) {
                          writing_ = false;
                          close(ec.message());
                          return;
                        }
                        write_next();
                      });
  }

  asio::io_context& io_;
  ssl::stream<tcp::socket> stream_;
  asio::steady_timer timer_;
  // Small on purpose: an idle connection keeps this buffer (and, with SSL_MODE_RELEASE_BUFFERS,
  // little else); large packets just take more reads.
  std::array<char, 2048> buffer_{};
  std::deque<std::string> queue_;
  std::string current_;
  std::size_t queued_ = 0;
  bool writing_ = false;
  bool closing_ = false;
  bool open_ = true;
  std::string close_reason_;
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
      auto conn = std::make_shared<AsioTlsConnection>(io, std::move(socket), self->ctx);
      conn->handshake(
          self->config.handshake_timeout_seconds, self->config.name,
          [self](std::shared_ptr<AsioTlsConnection> c) {
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
  auto& ctx = state_->ctx;
  boost::system::error_code ec;
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                      ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1,
                  ec);
  SSL_CTX* native = ctx.native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  // Idle connections give their 16 KB+ record buffers back to the allocator.
  SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);
  ctx.use_certificate_chain_file(state_->config.certificate_chain_file, ec);
  if (ec)
    return invalid_request("cannot load " + state_->config.certificate_chain_file + ": " +
                           ec.message());
  ctx.use_private_key_file(state_->config.private_key_file, ssl::context::pem, ec);
  if (ec)
    return invalid_request("cannot load " + state_->config.private_key_file + ": " + ec.message());
  ctx.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert, ec);
  SSL_CTX_set_alpn_select_cb(native, select_alpn, &state_->config.required_alpn);
  // Resumption: stateless session tickets (TLS 1.3 and 1.2) plus a server-side cache.
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
