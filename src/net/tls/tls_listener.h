// TlsListener: the MQTT device ports. Accepts TCP, pins each connection to an IoPool context,
// runs a mutual-TLS handshake with the configured TlsEngine (tls_engine.h says what either
// engine guarantees), and hands the connection to a callback with the peer's certificate
// facts.
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
#include "net/tls/peer_certificate.h"
#include "net/tls/tls_engine.h"

namespace fk::metrics {
class Exposition;
}

namespace fk::net {

class TlsConnection;

struct TlsListenerConfig {
  std::string bind_address = "0.0.0.0";
  std::uint16_t port = 8883;
  TlsEngineKind engine = TlsEngineKind::kOpenSsl;
  TlsServerSettings tls;  // key, chain, trust anchors, required ALPN, session tickets
  int handshake_timeout_seconds = 10;
  // Handshakes under way at once; past it new connections wait in the kernel's accept backlog
  // (a reconnect storm is served in arrival order instead of every handshake slowing down
  // until many time out). 0 = no limit.
  int max_pending_handshakes = 1024;
  // Bytes a connection may have waiting to be sent; a write past it closes the connection (the
  // peer does not read). 0 = no limit.
  std::size_t max_write_backlog_bytes = 4 << 20;
  std::string name = "mqtt";  // for logs
  // A handshake refused after the client sent a certificate (expired, unknown issuer, ...):
  // the peer's address, that certificate's DER and why (the device timeline). Called on the
  // connection's I/O thread; null: nobody is told.
  std::function<void(const std::string& remote, const std::string& certificate_der,
                     const std::string& why)>
      on_handshake_failed;
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
  // Handshake latency, failures and handshakes under way, labelled with the listener's name.
  void write_metrics(metrics::Exposition& out) const;
  // Replaces the trust anchors (e.g. after a CA is registered); new handshakes use them.
  Status set_trust_anchors(const std::vector<std::string>& pems);

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace fk::net
