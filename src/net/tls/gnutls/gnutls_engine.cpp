// The GnuTLS 3.7 engine: one credentials object (key, chain, trust anchors) shared by the
// sessions that began with it, one gnutls_session_t per connection on its non-blocking
// socket. Only libgnutls is linked, never libgnutls-openssl (whose symbols clash with
// OpenSSL's).
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include <array>
#include <cstring>
#include <mutex>

#include "net/tls/gnutls/gnutls_peer.h"
#include "net/tls/tls_engine.h"

namespace fk::net {

namespace {

constexpr std::string_view kAwsAlpn = "x-amzn-mqtt-ca";
constexpr std::string_view kMqttAlpn = "mqtt";

// Forward-secret AEAD first, server preference; TLS 1.2 and 1.3 only.
// X25519 first, as OpenSSL: the key share clients send (another first choice would cost a
// HelloRetryRequest round trip, or a P-256 key exchange). AES-128-GCM first: its SHA-256 key
// schedule runs on the CPU's SHA instructions, SHA-384's does not (~6% of a resumed connect).
constexpr const char* kPriorities =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM:+CHACHA20-POLY1305:"
    "+AES-256-GCM:+AES-128-CCM:+AES-256-CCM:+AES-128-CBC:+AES-256-CBC:-GROUP-ALL:+GROUP-X25519:"
    "+GROUP-SECP256R1:+GROUP-SECP384R1:+GROUP-SECP521R1:%SERVER_PRECEDENCE";

std::string error_text(int e) {
  return gnutls_strerror(e);
}

// The certificate refusals in OpenSSL's words, so that logs (and what reads them) do not
// depend on the engine.
std::string verify_failure(unsigned status) {
  if (status & GNUTLS_CERT_EXPIRED) return "certificate has expired";
  if (status & GNUTLS_CERT_NOT_ACTIVATED) return "certificate is not yet valid";
  if (status & GNUTLS_CERT_REVOKED) return "certificate revoked";
  if (status & GNUTLS_CERT_SIGNER_NOT_FOUND) return "unable to get local issuer certificate";
  if (status & GNUTLS_CERT_SIGNER_NOT_CA) return "invalid CA certificate";
  if (status & GNUTLS_CERT_INSECURE_ALGORITHM) return "certificate signature algorithm is insecure";
  if (status & GNUTLS_CERT_SIGNATURE_FAILURE) return "certificate signature failure";
  if (status & GNUTLS_CERT_SIGNER_CONSTRAINTS_FAILURE) return "path length constraint exceeded";
  if (status & GNUTLS_CERT_PURPOSE_MISMATCH) return "unsupported certificate purpose";
  return "certificate verify failed";
}

std::string_view view(const gnutls_datum_t& d) {
  return std::string_view(reinterpret_cast<const char*>(d.data), d.size);
}
// An extension's value (DER), "" when absent.
std::string extension(gnutls_x509_crt_t crt, const char* oid) {
  std::size_t len = 0;
  if (gnutls_x509_crt_get_extension_by_oid(crt, oid, 0, nullptr, &len, nullptr) !=
          GNUTLS_E_SHORT_MEMORY_BUFFER ||
      len == 0)
    return "";
  std::string out(len, '\0');
  if (gnutls_x509_crt_get_extension_by_oid(crt, oid, 0, out.data(), &len, nullptr) < 0) return "";
  out.resize(len);
  return out;
}

}  // namespace

PeerCertificate describe_with_gnutls(std::string_view der) {
  gnutls_datum_t datum{reinterpret_cast<unsigned char*>(const_cast<char*>(der.data())),
                       static_cast<unsigned>(der.size())};
  gnutls_x509_crt_t crt = nullptr;
  if (gnutls_x509_crt_init(&crt) < 0) return {};
  PeerCertificate out;
  if (gnutls_x509_crt_import(crt, &datum, GNUTLS_X509_FMT_DER) >= 0) {
    gnutls_datum_t subject{}, issuer{};
    std::array<unsigned char, 64> serial{};
    std::size_t serial_len = serial.size();
    std::string san = extension(crt, "2.5.29.17"), ian = extension(crt, "2.5.29.18");
    if (gnutls_x509_crt_get_raw_dn(crt, &subject) >= 0 &&
        gnutls_x509_crt_get_raw_issuer_dn(crt, &issuer) >= 0 &&
        gnutls_x509_crt_get_serial(crt, serial.data(), &serial_len) >= 0) {
      out = describe_certificate(CertificateParts{
          der, view(subject), view(issuer),
          std::string_view(reinterpret_cast<const char*>(serial.data()), serial_len), san, ian});
    }
    gnutls_free(subject.data);
    gnutls_free(issuer.data);
  }
  gnutls_x509_crt_deinit(crt);
  return out;
}

namespace {

struct Credentials {
  gnutls_certificate_credentials_t creds = nullptr;
  ~Credentials() {
    if (creds) gnutls_certificate_free_credentials(creds);
  }
};

class GnuTlsSession final : public TlsSession {
 public:
  GnuTlsSession(std::shared_ptr<Credentials> creds, gnutls_priority_t priorities,
                const gnutls_datum_t* ticket_key, const std::string& required_alpn, int fd)
      : creds_(std::move(creds)) {
    unsigned flags = GNUTLS_SERVER | GNUTLS_NONBLOCK;
    if (ticket_key == nullptr) flags |= GNUTLS_NO_TICKETS;
    gnutls_init(&s_, flags);
    gnutls_priority_set(s_, priorities);
    gnutls_credentials_set(s_, GNUTLS_CRD_CERTIFICATE, creds_->creds);
    gnutls_certificate_server_set_request(s_, GNUTLS_CERT_REQUIRE);
    gnutls_session_set_verify_cert(s_, nullptr, 0);
    if (ticket_key != nullptr) gnutls_session_ticket_enable_server(s_, ticket_key);
    // ALPN: AWS's port-443 protocol first, then plain "mqtt" (only the required one on a port
    // that requires it); anything else continues without ALPN.
    std::array<gnutls_datum_t, 2> protos{};
    unsigned n = 0;
    for (std::string_view p : {kAwsAlpn, kMqttAlpn}) {
      if (!required_alpn.empty() && p != required_alpn) continue;
      protos[n++] = {reinterpret_cast<unsigned char*>(const_cast<char*>(p.data())),
                     static_cast<unsigned>(p.size())};
    }
    gnutls_alpn_set_protocols(s_, protos.data(), n, GNUTLS_ALPN_SERVER_PRECEDENCE);
    if (!required_alpn.empty()) {
      // A ClientHello that offers none of them (or no ALPN at all) is refused with the
      // no_application_protocol alert (RFC 7301), as the OpenSSL engine does.
      gnutls_handshake_set_post_client_hello_function(s_, &GnuTlsSession::require_alpn);
    }
    gnutls_transport_set_int(s_, fd);
  }
  ~GnuTlsSession() override { gnutls_deinit(s_); }

  TlsStep handshake() override {
    int r = gnutls_handshake(s_);
    if (r == GNUTLS_E_SUCCESS) return TlsStep::kDone;
    if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) return direction();
    if (!gnutls_error_is_fatal(r)) return direction();  // a warning alert: go on
    if (r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR || r == GNUTLS_E_CERTIFICATE_ERROR) {
      failure_ = verify_failure(gnutls_session_get_verify_cert_status(s_));
    } else if (r == GNUTLS_E_NO_CERTIFICATE_FOUND || r == GNUTLS_E_CERTIFICATE_REQUIRED) {
      failure_ = "peer did not return a certificate";
    } else if (r == GNUTLS_E_PREMATURE_TERMINATION || r == GNUTLS_E_PULL_ERROR ||
               r == GNUTLS_E_PUSH_ERROR) {
      failure_ = "peer closed during the handshake";
      return TlsStep::kFailed;
    } else if (r == GNUTLS_E_NO_APPLICATION_PROTOCOL) {
      failure_ = "no application protocol";
    } else {
      failure_ = error_text(r);
    }
    // GnuTLS leaves the alert to the application: the client learns why.
    gnutls_alert_send_appropriate(s_, r);
    return TlsStep::kFailed;
  }

  TlsStep read(char* buffer, std::size_t capacity, std::size_t* n) override {
    for (;;) {
      ssize_t r = gnutls_record_recv(s_, buffer, capacity);
      if (r > 0) {
        *n = static_cast<std::size_t>(r);
        return TlsStep::kDone;
      }
      if (r == 0 || r == GNUTLS_E_PREMATURE_TERMINATION || r == GNUTLS_E_PULL_ERROR)
        return TlsStep::kClosed;
      if (r == GNUTLS_E_AGAIN) return direction();
      if (r == GNUTLS_E_INTERRUPTED || !gnutls_error_is_fatal(static_cast<int>(r))) continue;
      failure_ = error_text(static_cast<int>(r));
      return TlsStep::kFailed;
    }
  }

  TlsStep write(const char* bytes, std::size_t length, std::size_t* n) override {
    // After GNUTLS_E_AGAIN GnuTLS holds the record it made: the retry passes no data, and its
    // result counts the bytes of that earlier call (the caller's buffer starts with them).
    ssize_t r =
        write_again_ ? gnutls_record_send(s_, nullptr, 0) : gnutls_record_send(s_, bytes, length);
    write_again_ = false;
    if (r > 0) {
      *n = static_cast<std::size_t>(r);
      return TlsStep::kDone;
    }
    if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
      write_again_ = true;
      return direction();
    }
    if (r == GNUTLS_E_PUSH_ERROR || r == GNUTLS_E_PREMATURE_TERMINATION) return TlsStep::kClosed;
    failure_ = error_text(static_cast<int>(r));
    return TlsStep::kFailed;
  }

  std::string failure() const override { return failure_; }

  PeerCertificate peer_certificate() const override {
    unsigned n = 0;
    const gnutls_datum_t* certs = gnutls_certificate_get_peers(s_, &n);
    if (certs == nullptr || n == 0) return {};
    return describe_with_gnutls(view(certs[0]));
  }
  std::string peer_certificate_der() const override {
    unsigned n = 0;
    const gnutls_datum_t* certs = gnutls_certificate_get_peers(s_, &n);
    if (certs == nullptr || n == 0) return {};
    return std::string(reinterpret_cast<const char*>(certs[0].data), certs[0].size);
  }
  std::string alpn() const override {
    gnutls_datum_t p{};
    if (gnutls_alpn_get_selected_protocol(s_, &p) != GNUTLS_E_SUCCESS) return "";
    return std::string(reinterpret_cast<const char*>(p.data), p.size);
  }
  std::string sni() const override {
    std::array<char, 256> name{};
    std::size_t len = name.size();
    unsigned type = 0;
    if (gnutls_server_name_get(s_, name.data(), &len, &type, 0) != GNUTLS_E_SUCCESS ||
        type != GNUTLS_NAME_DNS)
      return "";
    return std::string(name.data(), strnlen(name.data(), len));
  }
  bool resumed() const override { return gnutls_session_is_resumed(s_) != 0; }

 private:
  static int require_alpn(gnutls_session_t s) {
    gnutls_datum_t p{};
    if (gnutls_alpn_get_selected_protocol(s, &p) != GNUTLS_E_SUCCESS)
      return GNUTLS_E_NO_APPLICATION_PROTOCOL;
    return 0;
  }

  TlsStep direction() const {
    return gnutls_record_get_direction(s_) == 1 ? TlsStep::kWantWrite : TlsStep::kWantRead;
  }

  std::shared_ptr<Credentials> creds_;  // outlives the session (GnuTLS does not copy it)
  gnutls_session_t s_ = nullptr;
  bool write_again_ = false;
  std::string failure_;
};

class GnuTlsEngine final : public TlsEngine {
 public:
  ~GnuTlsEngine() override {
    if (priorities_) gnutls_priority_deinit(priorities_);
    if (ticket_key_.data) {
      gnutls_memset(ticket_key_.data, 0, ticket_key_.size);
      gnutls_free(ticket_key_.data);
    }
  }

  Status init(const TlsServerSettings& s) {
    settings_ = s;
    const char* where = nullptr;
    if (int r = gnutls_priority_init(&priorities_, kPriorities, &where); r < 0)
      return internal_error("GnuTLS priorities: " + error_text(r));
    if (s.session_tickets) {
      // Tickets are sealed with keys GnuTLS derives from this one and rotates by itself.
      if (int r = gnutls_session_ticket_key_generate(&ticket_key_); r < 0)
        return internal_error("GnuTLS ticket key: " + error_text(r));
    }
    return set_trust_anchors(s.trust_anchors);
  }

  TlsEngineKind kind() const override { return TlsEngineKind::kGnuTls; }

  std::unique_ptr<TlsSession> accept(int fd) override {
    std::shared_ptr<Credentials> creds;
    {
      std::lock_guard<std::mutex> lock(mu_);
      creds = creds_;
    }
    return std::make_unique<GnuTlsSession>(std::move(creds), priorities_,
                                           ticket_key_.data ? &ticket_key_ : nullptr,
                                           settings_.required_alpn, fd);
  }

  // Credentials are immutable once sessions use them: new anchors make new credentials (the
  // key and chain loaded again); sessions under way keep theirs.
  Status set_trust_anchors(const std::vector<std::string>& pems) override {
    auto c = std::make_shared<Credentials>();
    if (int r = gnutls_certificate_allocate_credentials(&c->creds); r < 0)
      return internal_error("GnuTLS credentials: " + error_text(r));
    if (int r = gnutls_certificate_set_x509_key_file2(
            c->creds, settings_.certificate_chain_file.c_str(), settings_.private_key_file.c_str(),
            GNUTLS_X509_FMT_PEM, nullptr, 0);
        r < 0)
      return invalid_request("cannot load " + settings_.certificate_chain_file + " and " +
                             settings_.private_key_file + ": " + error_text(r));
    for (const std::string& pem : pems) {
      gnutls_datum_t d{reinterpret_cast<unsigned char*>(const_cast<char*>(pem.data())),
                       static_cast<unsigned>(pem.size())};
      if (gnutls_certificate_set_x509_trust_mem(c->creds, &d, GNUTLS_X509_FMT_PEM) <= 0)
        return invalid_request("a trust anchor is not a PEM certificate");
    }
    std::lock_guard<std::mutex> lock(mu_);
    creds_ = std::move(c);
    return Status::ok();
  }

 private:
  TlsServerSettings settings_;
  gnutls_priority_t priorities_ = nullptr;
  gnutls_datum_t ticket_key_{};
  std::mutex mu_;
  std::shared_ptr<Credentials> creds_;
};

}  // namespace

Result<std::unique_ptr<TlsEngine>> make_gnutls_engine(const TlsServerSettings& settings) {
  auto engine = std::make_unique<GnuTlsEngine>();
  FK_RETURN_IF_ERROR(engine->init(settings));
  return std::unique_ptr<TlsEngine>(std::move(engine));
}

}  // namespace fk::net
