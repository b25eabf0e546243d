// TlsEngine: the TLS library behind the MQTT ports, chosen by `[mqtt] tls_engine` (OpenSSL 3
// or GnuTLS 3.7; docs/decisions.md has the measurement). An engine holds the server's key,
// certificate chain and trust anchors; accept() makes one server-side TlsSession per
// connection, driving a non-blocking socket itself (no copy of the ciphertext through our
// buffers). No library type crosses this header (ARCHITECTURE.md: backend types stay in their
// folders: net/tls/openssl/, net/tls/gnutls/).
//
// Both engines behave the same: TLS 1.2 and 1.3, the client certificate required and verified
// against the trust anchors (a registered intermediate anchors trust on its own), ALPN
// x-amzn-mqtt-ca then mqtt selected when offered (required on a port that says so, else a
// ClientHello without it is refused with no_application_protocol), server cipher preference
// with AEAD suites first, and the same failure() words for the same refusal (OpenSSL's verify
// strings: "certificate has expired", "unable to get local issuer certificate", ...).
//
// Thread-safety: an engine's methods may be called from any thread (set_trust_anchors swaps
// what later handshakes use); a TlsSession belongs to the thread of its connection.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "net/tls/peer_certificate.h"

namespace fk::net {

enum class TlsEngineKind { kOpenSsl, kGnuTls };

std::string_view to_string(TlsEngineKind k);
// "openssl" / "gnutls"; anything else is an error naming both.
Result<TlsEngineKind> parse_tls_engine(std::string_view name);

struct TlsServerSettings {
  std::string certificate_chain_file;  // server certificate + chain (PEM)
  std::string private_key_file;
  std::vector<std::string> trust_anchors;  // PEM CA certificates client certificates chain to
  // When set, the client must offer this ALPN protocol (AWS's port 443: "x-amzn-mqtt-ca").
  std::string required_alpn;
  // Resumption by session tickets (TLS 1.3 and 1.2): one ticket per full handshake. Off: no
  // ticket is made (a full handshake costs less; OpenSSL still resumes TLS 1.2 session ids).
  bool session_tickets = false;
};

// What one step of a session did.
enum class TlsStep {
  kDone,       // the handshake finished, or some bytes moved
  kWantRead,   // wait until the socket is readable, then call again
  kWantWrite,  // wait until the socket is writable, then call again
  kClosed,     // the peer closed (close_notify or end of stream)
  kFailed,     // failure() says why; the connection is unusable
};

class TlsSession {
 public:
  virtual ~TlsSession() = default;

  virtual TlsStep handshake() = 0;
  // Plaintext in and out; *n is the bytes moved when kDone.
  virtual TlsStep read(char* buffer, std::size_t capacity, std::size_t* n) = 0;
  virtual TlsStep write(const char* bytes, std::size_t length, std::size_t* n) = 0;
  // Why the last step failed, in OpenSSL's words for certificate refusals.
  virtual std::string failure() const = 0;

  // After a finished handshake (full or resumed): the client certificate (empty
  // certificate_id if none), the ALPN protocol selected ("" = none), the SNI host name sent
  // ("" = none), whether it resumed.
  virtual PeerCertificate peer_certificate() const = 0;
  // The client certificate's DER ("" if none): read from the session when asked, not kept.
  virtual std::string peer_certificate_der() const = 0;
  virtual std::string alpn() const = 0;
  virtual std::string sni() const = 0;
  virtual bool resumed() const = 0;
};

class TlsEngine {
 public:
  virtual ~TlsEngine() = default;

  // Loads the key, chain and trust anchors; an unreadable file or a bad PEM is an error
  // naming it.
  static Result<std::unique_ptr<TlsEngine>> create(TlsEngineKind kind,
                                                   const TlsServerSettings& settings);

  virtual TlsEngineKind kind() const = 0;
  // A server session on a connected non-blocking socket (the caller keeps the descriptor).
  virtual std::unique_ptr<TlsSession> accept(int fd) = 0;
  // New handshakes trust these (e.g. after a CA is registered).
  virtual Status set_trust_anchors(const std::vector<std::string>& pems) = 0;
};

// Backends (net/tls/openssl/, net/tls/gnutls/).
Result<std::unique_ptr<TlsEngine>> make_openssl_engine(const TlsServerSettings& settings);
Result<std::unique_ptr<TlsEngine>> make_gnutls_engine(const TlsServerSettings& settings);

}  // namespace fk::net
