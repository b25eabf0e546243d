#include "net/http_server.h"

#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "base/log.h"
#include "net/io_pool.h"
#include "net/tcp_listener.h"

namespace fk::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::string HttpRequest::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return {};
}

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

http::response<http::string_body> error_response(http::status status, unsigned version,
                                                 std::string_view type, std::string_view message) {
  http::response<http::string_body> res{status, version};
  res.set(http::field::content_type, "application/json");
  res.set("x-amzn-ErrorType", std::string(type));
  res.body() = R"({"message":")" + std::string(message) + "\"}";
  res.prepare_payload();
  return res;
}

}  // namespace

struct HttpServer::State : std::enable_shared_from_this<HttpServer::State> {
  State(asio::io_context& io_context, HttpServerOptions o, HttpHandler h)
      : io(io_context), options(std::move(o)), handler(std::move(h)) {}

  asio::io_context& io;
  HttpServerOptions options;
  HttpHandler handler;
  std::unique_ptr<TcpListener> listener;
  std::unique_ptr<asio::ssl::context> tls;  // set for HTTPS

  void on_accept(int fd) {
    IoPool* pool = options.connection_pool;
    asio::io_context& ctx = pool ? pool->at(pool->next_index()) : io;
    tcp::socket socket(asio::make_strand(ctx));
    beast::error_code ec;
    bool v6 = options.bind_address.find(':') != std::string::npos;
    socket.assign(v6 ? tcp::v6() : tcp::v4(), fd, ec);
    if (ec) {
      ::close(fd);
      return;
    }
    std::make_shared<Connection>(shared_from_this(), std::move(socket))->start();
  }

  struct Connection : std::enable_shared_from_this<Connection> {
    Connection(std::shared_ptr<State> s, tcp::socket socket)
        : state(std::move(s)), stream(std::move(socket)) {
      beast::error_code ec;
      auto ep = stream.socket().remote_endpoint(ec);
      if (!ec) remote = ep.address().to_string();
    }

    std::shared_ptr<State> state;
    beast::tcp_stream stream;  // moved into `secure` for HTTPS
    std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> secure;
    beast::flat_buffer buffer;
    std::optional<http::request_parser<http::string_body>> parser;
    http::response<http::string_body> response;
    std::string remote;

    beast::tcp_stream& lowest() { return secure ? beast::get_lowest_layer(*secure) : stream; }

    void start() {
      if (!state->tls) return read();
      secure =
          std::make_unique<beast::ssl_stream<beast::tcp_stream>>(std::move(stream), *state->tls);
      lowest().expires_after(std::chrono::seconds(state->options.idle_timeout_seconds));
      secure->async_handshake(asio::ssl::stream_base::server,
                              [self = shared_from_this()](beast::error_code ec) {
                                if (ec) {
                                  log::debug("http.tls_handshake_failed",
                                             {{"peer", self->remote}, {"error", ec.message()}});
                                  self->close();
                                  return;
                                }
                                self->read();
                              });
    }

    void read() {
      parser.emplace();
      parser->body_limit(state->options.max_body_bytes);
      parser->header_limit(static_cast<std::uint32_t>(state->options.max_header_bytes));
      lowest().expires_after(std::chrono::seconds(state->options.idle_timeout_seconds));
      auto done = [self = shared_from_this()](beast::error_code ec, std::size_t) {
        self->on_read(ec);
      };
      if (secure)
        http::async_read(*secure, buffer, *parser, std::move(done));
      else
        http::async_read(stream, buffer, *parser, std::move(done));
    }

    void on_read(beast::error_code ec) {
      if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
          ec == asio::error::connection_reset || ec == asio::error::operation_aborted ||
          ec == asio::ssl::error::stream_truncated) {
        close();
        return;
      }
      if (ec == http::error::body_limit) {
        write(error_response(http::status::payload_too_large, 11, "InvalidRequestException",
                             "request body is larger than the limit"),
              false);
        return;
      }
      if (ec) {
        log::debug("http.bad_request", {{"peer", remote}, {"error", ec.message()}});
        write(error_response(http::status::bad_request, 11, "InvalidRequestException",
                             "malformed HTTP request"),
              false);
        return;
      }
      auto& req = parser->get();
      HttpRequest r;
      r.method = std::string(req.method_string());
      r.target = std::string(req.target());
      for (const auto& field : req)
        r.headers.emplace_back(lower(field.name_string()), field.value());
      r.body = std::move(req.body());
      r.remote_address = remote;
      HttpResponse out;
      try {
        out = state->handler(r);
      } catch (const std::exception& e) {
        log::error("http.handler_failed", {{"target", r.target}, {"error", e.what()}});
        out = {500,
               "application/json",
               {{"x-amzn-ErrorType", "InternalFailureException"}},
               R"({"message":"internal error"})"};
      }
      http::response<http::string_body> res{static_cast<http::status>(out.status), req.version()};
      res.set(http::field::server, "fleetkeyd");
      res.set(http::field::content_type, out.content_type);
      for (const auto& [k, v] : out.headers) res.set(k, v);
      res.body() = std::move(out.body);
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      write(std::move(res), req.keep_alive());
    }

    void write(http::response<http::string_body> res, bool keep_alive) {
      response = std::move(res);
      if (!keep_alive) response.keep_alive(false);
      auto done = [self = shared_from_this(), keep_alive](beast::error_code ec, std::size_t) {
        if (ec || !keep_alive) {
          self->close();
          return;
        }
        self->read();
      };
      if (secure)
        http::async_write(*secure, response, std::move(done));
      else
        http::async_write(stream, response, std::move(done));
    }

    void close() {
      beast::error_code ec;
      lowest().socket().shutdown(tcp::socket::shutdown_send, ec);
      lowest().socket().close(ec);
    }
  };
};

HttpServer::HttpServer(asio::io_context& io, HttpServerOptions options, HttpHandler handler)
    : state_(std::make_shared<State>(io, std::move(options), std::move(handler))) {}

HttpServer::~HttpServer() {
  stop();
}

Status HttpServer::start() {
  const HttpServerOptions& o = state_->options;
  if (!o.tls_certificate_chain_file.empty() || !o.tls_private_key_file.empty()) {
    namespace ssl = asio::ssl;
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                     ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                     ssl::context::single_dh_use);
    beast::error_code ec;
    ctx->use_certificate_chain_file(o.tls_certificate_chain_file, ec);
    if (!ec) ctx->use_private_key_file(o.tls_private_key_file, ssl::context::pem, ec);
    if (ec)
      return invalid_request("API TLS: cannot load " + o.tls_certificate_chain_file + " / " +
                             o.tls_private_key_file + ": " + ec.message());
    state_->tls = std::move(ctx);
  }
  std::weak_ptr<State> weak = state_;
  state_->listener =
      std::make_unique<TcpListener>(state_->io, state_->options.bind_address, state_->options.port,
                                    [weak](int fd, const std::string&) {
                                      if (auto s = weak.lock()) {
                                        s->on_accept(fd);
                                      } else {
                                        ::close(fd);
                                      }
                                    });
  return state_->listener->start();
}

void HttpServer::stop() {
  if (state_->listener) state_->listener->stop();
}

std::uint16_t HttpServer::port() const {
  return state_->listener ? state_->listener->port() : 0;
}

}  // namespace fk::net
