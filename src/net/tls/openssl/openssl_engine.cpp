// The OpenSSL 3 engine: one SSL_CTX, one SSL per connection driven straight on its socket
// (SSL_set_fd, non-blocking). With SSL_MODE_RELEASE_BUFFERS an idle connection keeps only
// OpenSSL's session state.
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <mutex>

#include "net/tls/openssl/peer.h"
#include "net/tls/tls_engine.h"

namespace fk::net {

namespace {

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

std::string last_error(const char* fallback) {
  unsigned long e = ERR_peek_last_error();
  ERR_clear_error();
  if (e == 0) return fallback;
  const char* reason = ERR_reason_error_string(e);
  return reason ? reason : fallback;
}

class OpenSslSession final : public TlsSession {
 public:
  OpenSslSession(SSL_CTX* ctx, X509_STORE* anchors, int fd) : ssl_(SSL_new(ctx)) {
    SSL_set1_verify_cert_store(ssl_, anchors);  // this handshake keeps the anchors it began with
    SSL_set_fd(ssl_, fd);
    SSL_set_accept_state(ssl_);
  }
  ~OpenSslSession() override {
    // A session whose handshake completed stays resumable however the connection ended
    // (OpenSSL drops sessions of connections not shut down with close_notify, which MQTT
    // clients rarely send).
    if (done_) SSL_set_shutdown(ssl_, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(ssl_);
  }

  TlsStep handshake() override {
    ERR_clear_error();
    int r = SSL_do_handshake(ssl_);
    if (r == 1) {
      done_ = true;
      return TlsStep::kDone;
    }
    int err = SSL_get_error(ssl_, r);
    if (err == SSL_ERROR_WANT_READ) return TlsStep::kWantRead;
    if (err == SSL_ERROR_WANT_WRITE) return TlsStep::kWantWrite;
    long verify = SSL_get_verify_result(ssl_);
    if (verify != X509_V_OK) {
      failure_ = X509_verify_cert_error_string(verify);
      ERR_clear_error();
    } else if (ERR_peek_error() != 0) {
      failure_ = last_error("TLS error");
    } else {
      failure_ = err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN
                     ? "peer closed during the handshake"
                     : "TLS error";
    }
    return TlsStep::kFailed;
  }

  TlsStep read(char* buffer, std::size_t capacity, std::size_t* n) override {
    ERR_clear_error();
    int r = SSL_read(ssl_, buffer, static_cast<int>(std::min<std::size_t>(capacity, 1 << 30)));
    if (r > 0) {
      *n = static_cast<std::size_t>(r);
      return TlsStep::kDone;
    }
    return after_io(SSL_get_error(ssl_, r), "TLS read error");
  }

  TlsStep write(const char* bytes, std::size_t length, std::size_t* n) override {
    ERR_clear_error();
    int r = SSL_write(ssl_, bytes, static_cast<int>(std::min<std::size_t>(length, 1 << 20)));
    if (r > 0) {
      *n = static_cast<std::size_t>(r);
      return TlsStep::kDone;
    }
    return after_io(SSL_get_error(ssl_, r), "TLS write error");
  }

  std::string failure() const override { return failure_; }

  PeerCertificate peer_certificate() const override {
    X509* cert = SSL_get0_peer_certificate(ssl_);
    return cert ? describe_x509(cert) : PeerCertificate{};
  }
  std::string peer_certificate_der() const override {
    X509* cert = SSL_get0_peer_certificate(ssl_);
    if (cert == nullptr) return {};
    unsigned char* der = nullptr;
    const int len = i2d_X509(cert, &der);
    if (len <= 0) return {};
    std::string out(reinterpret_cast<const char*>(der), static_cast<std::size_t>(len));
    OPENSSL_free(der);
    return out;
  }
  std::string alpn() const override {
    const unsigned char* p = nullptr;
    unsigned int len = 0;
    SSL_get0_alpn_selected(ssl_, &p, &len);
    return std::string(reinterpret_cast<const char*>(p), len);
  }
  std::string sni() const override {
    const char* s = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name);
    return s ? s : "";
  }
  bool resumed() const override { return SSL_session_reused(ssl_) == 1; }

 private:
  TlsStep after_io(int err, const char* what) {
    if (err == SSL_ERROR_WANT_READ) return TlsStep::kWantRead;
    if (err == SSL_ERROR_WANT_WRITE) return TlsStep::kWantWrite;
    if (err == SSL_ERROR_ZERO_RETURN || err == SSL_ERROR_SYSCALL) {
      ERR_clear_error();
      return TlsStep::kClosed;
    }
    failure_ = last_error(what);
    return TlsStep::kFailed;
  }

  SSL* ssl_;
  bool done_ = false;
  std::string failure_;
};

class OpenSslEngine final : public TlsEngine {
 public:
  ~OpenSslEngine() override {
    if (anchors_) X509_STORE_free(anchors_);
    if (ctx_) SSL_CTX_free(ctx_);
  }

  Status init(const TlsServerSettings& s) {
    required_alpn_ = s.required_alpn;
    ctx_ = SSL_CTX_new(TLS_server_method());
    if (ctx_ == nullptr) return internal_error("SSL_CTX_new: " + last_error("out of memory"));
    SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
    // A peer that closes without close_notify (most MQTT clients) ends the connection as a
    // clean close, not as an error: OpenSSL 3 would drop its session from the cache.
    SSL_CTX_set_options(ctx_, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION |
                                  SSL_OP_IGNORE_UNEXPECTED_EOF);
    // TLS 1.3: AES-128-GCM first (its SHA-256 key schedule runs on the CPU's SHA
    // instructions); TLS 1.2: forward-secret AEAD suites first.
    SSL_CTX_set_ciphersuites(
        ctx_, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384");
    SSL_CTX_set_cipher_list(
        ctx_,
        "ECDHE+AES128+AESGCM:ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE+AES:RSA+AESGCM:RSA+AES:"
        "!aNULL:!eNULL:!MD5:!DSS:!3DES:!RC4");
    // Idle connections give their 16 KB+ record buffers back to the allocator.
    SSL_CTX_set_mode(ctx_, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                               SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_CTX_use_certificate_chain_file(ctx_, s.certificate_chain_file.c_str()) != 1)
      return invalid_request("cannot load " + s.certificate_chain_file + ": " +
                             last_error("not a PEM certificate chain"));
    if (SSL_CTX_use_PrivateKey_file(ctx_, s.private_key_file.c_str(), SSL_FILETYPE_PEM) != 1)
      return invalid_request("cannot load " + s.private_key_file + ": " +
                             last_error("not a PEM private key"));
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    SSL_CTX_set_alpn_select_cb(ctx_, select_alpn, &required_alpn_);
    SSL_CTX_set_client_hello_cb(ctx_, require_alpn_extension, &required_alpn_);
    // Resumption. OpenSSL 3.0 makes each stateless ticket by serialising the session and
    // parsing it back (d2i_SSL_SESSION), which decodes the client certificate's key again:
    // a ticket costs a full handshake ~17% more server CPU (docs/performance.md), so tickets
    // are a setting. One when on (OpenSSL's default is two). Stateful TLS 1.3 tickets would
    // keep a session copy per connection in the cache (+10 KB per idle connection): not
    // those. TLS 1.2 session ids resume from the server cache either way.
    SSL_CTX_set_num_tickets(ctx_, s.session_tickets ? 1 : 0);
    if (!s.session_tickets) SSL_CTX_set_options(ctx_, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_SERVER);
    // Without an id context OpenSSL refuses to resume a session that verified a client
    // certificate.
    const unsigned char sid[] = "fleetkeyd";
    SSL_CTX_set_session_id_context(ctx_, sid, sizeof sid - 1);
    return set_trust_anchors(s.trust_anchors);
  }

  TlsEngineKind kind() const override { return TlsEngineKind::kOpenSsl; }

  std::unique_ptr<TlsSession> accept(int fd) override {
    std::lock_guard<std::mutex> lock(mu_);
    return std::make_unique<OpenSslSession>(ctx_, anchors_, fd);
  }

  // Swapped under the lock; a session holds its own reference (SSL_set1_verify_cert_store),
  // so a handshake under way never sees its store freed.
  Status set_trust_anchors(const std::vector<std::string>& pems) override {
    FK_ASSIGN_OR_RETURN(X509_STORE * store, build_store(pems));
    std::lock_guard<std::mutex> lock(mu_);
    if (anchors_) X509_STORE_free(anchors_);
    anchors_ = store;
    return Status::ok();
  }

 private:
  SSL_CTX* ctx_ = nullptr;
  X509_STORE* anchors_ = nullptr;
  std::string required_alpn_;
  std::mutex mu_;
};

}  // namespace

Result<std::unique_ptr<TlsEngine>> make_openssl_engine(const TlsServerSettings& settings) {
  auto engine = std::make_unique<OpenSslEngine>();
  FK_RETURN_IF_ERROR(engine->init(settings));
  return std::unique_ptr<TlsEngine>(std::move(engine));
}

}  // namespace fk::net
