// TlsConnection: one established mutual-TLS connection, pinned to one io_context.
//
// read() delivers bytes as they arrive; write() queues bytes (sent in order); close() ends the
// connection at once (for a revoked certificate: no TLS close_notify round trip to wait for).
// All methods must be called on the connection's io_context thread; post() reaches it from
// elsewhere.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "net/tls/tls_listener.h"

namespace boost::asio {
class io_context;
}

namespace fk::net {

class TlsConnection : public std::enable_shared_from_this<TlsConnection> {
 public:
  using OnData = std::function<void(std::string_view bytes)>;
  using OnClose = std::function<void(const std::string& reason)>;

  virtual ~TlsConnection() = default;

  // Starts reading; on_close runs once, when the peer or close() ends the connection.
  virtual void start(OnData on_data, OnClose on_close) = 0;
  virtual void write(std::string bytes) = 0;
  // Sends what is queued, then closes.
  virtual void close_after_write(const std::string& reason) = 0;
  virtual void close(const std::string& reason) = 0;
  virtual void post(std::function<void()> fn) = 0;
  virtual boost::asio::io_context& context() = 0;
  virtual bool is_open() const = 0;

  // Shared, not copied, by whoever keeps it (one per connection).
  virtual const std::shared_ptr<const PeerCertificate>& peer() const = 0;
  // Whether the handshake resumed an earlier session (a session ticket or id).
  virtual bool resumed() const = 0;
  virtual const std::string& remote_address() const = 0;
  // Asked of the TLS session (not kept per connection): "" when none was negotiated or sent.
  virtual std::string alpn() const = 0;
  virtual std::string sni() const = 0;
  // The client certificate's DER, from the TLS session ("" if none); for the rare reader
  // (just-in-time registration), so not kept per connection.
  virtual std::string peer_certificate_der() const = 0;
  virtual std::size_t queued_bytes() const = 0;
  // Reads nothing more from the socket for `d` (bytes already read are still delivered): the
  // peer's TCP window fills and it slows down. Writes go on. A later call replaces the pause.
  virtual void pause_reading_for(std::chrono::milliseconds d) = 0;
};

}  // namespace fk::net
