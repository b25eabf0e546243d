// TlsListener: the MQTT device ports. Accepts TCP, pins each connection to an IoPool context,
// runs a mutual-TLS handshake (TLS 1.2 or 1.3, client certificate required and verified
// against the trust anchors, ALPN x-amzn-mqtt-ca or mqtt selected when offered, never
// required), and hands the connection to a callback with the peer's certificate facts.
//
// A handshake that fails is logged with the reason (expired, not yet valid, unknown CA, no
// client certificate, ...); one that stalls is cut after the handshake timeout.
//
// Thread-safety: start()/stop()/set_trust_anchors() from any thread; the callback runs on the
// connection's io_context thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "net/io_pool.h"

namespace fk::net {

// What the TLS layer learned about the client.
struct PeerCertificate {
  std::string certificate_id;  // lowercase hex SHA-256 of the DER (AWS's certificateId)
  std::string subject;         // RFC 2253
  std::string common_name;
  std::string issuer;
  std::string serial_hex;
  // What IoT policy variables read (iot:Certificate.Subject.*, ...), taken from the certificate
  // the handshake already parsed, so that nobody parses it again per connection.
  using Fields = std::vector<std::pair<std::string, std::string>>;
  Fields subject_fields;  // OpenSSL short names: ("CN", "locker-1"), ...
  Fields issuer_fields;
  Fields subject_alt_names;  // ("DNSName", "a.example"), ...
  Fields issuer_alt_names;
};

class TlsConnection;

struct TlsListenerConfig {
  std::string bind_address = "0.0.0.0";
  std::uint16_t port = 8883;
  std::string certificate_chain_file;  // server certificate + chain (PEM)
  std::string private_key_file;
  std::vector<std::string> trust_anchors;  // PEM CA certificates client certificates chain to
  int handshake_timeout_seconds = 10;
  // Bytes a connection may have waiting to be sent; a write past it closes the connection (the
  // peer does not read). 0 = no limit.
  std::size_t max_write_backlog_bytes = 4 << 20;
  // When set, the client must offer this ALPN protocol (AWS's port 443: "x-amzn-mqtt-ca").
  std::string required_alpn;
  std::string name = "mqtt";  // for logs
};

class TlsListener {
 public:
  using OnConnection = std::function<void(std::shared_ptr<TlsConnection>)>;

  TlsListener(IoPool& pool, boost::asio::io_context& accept_context, TlsListenerConfig config,
              OnConnection on_connection);
  ~TlsListener();

  Status start();
  void stop();
  std::uint16_t port() const;
  // Replaces the trust anchors (e.g. after a CA is registered); new handshakes use them.
  Status set_trust_anchors(const std::vector<std::string>& pems);

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace fk::net
