// HttpServer: an HTTP/1.1 server (Boost.Beast) with keep-alive, size limits and timeouts,
// that hands each complete request to a handler. The AWS-compatible API (api/) is such a
// handler; so is fleetkeyd's /health.
//
// Thread-safety: the handler runs on the io_context's threads and must be thread-safe if the
// context runs on several. start()/stop() from the io_context's thread or before it runs.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"

namespace boost::asio {
class io_context;
}

namespace fk::net {

struct HttpRequest {
  std::string method;                                        // "GET"
  std::string target;                                        // "/things/x?y=z", as received
  std::vector<std::pair<std::string, std::string>> headers;  // names lowercased
  std::string body;
  std::string remote_address;

  // The first header with this (lowercase) name, or "".
  std::string header(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  std::string bind_address = "127.0.0.1";
  std::uint16_t port = 0;  // 0 = any free port
  std::size_t max_body_bytes = 1 << 20;
  std::size_t max_header_bytes = 16 << 10;
  int idle_timeout_seconds = 60;
  // Connections (and so their handlers) run on this pool's contexts, round-robin, instead of
  // the accepting io_context: handlers that take long (RSA key generation) then run in
  // parallel and never block the acceptor. Not owned; must outlive the server's connections.
  class IoPool* connection_pool = nullptr;
  // Both set: HTTPS (TLS 1.2+) with this certificate chain and key.
  std::string tls_certificate_chain_file;
  std::string tls_private_key_file;
};

class HttpServer {
 public:
  HttpServer(boost::asio::io_context& io, HttpServerOptions options, HttpHandler handler);
  ~HttpServer();

  // Binds and starts accepting. Errors name the address.
  Status start();
  void stop();
  std::uint16_t port() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace fk::net
