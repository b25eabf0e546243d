#include "net/http_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

namespace fk::net {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct Url {
  bool tls = false;
  std::string host;
  std::string port;
  std::string target;
};

Result<Url> parse_url(const std::string& url) {
  Url u;
  std::string rest;
  if (url.rfind("https://", 0) == 0) {
    u.tls = true;
    rest = url.substr(8);
  } else if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else {
    return invalid_request("'" + url + "' is not an http:// or https:// URL");
  }
  auto slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  u.target = slash == std::string::npos ? "/" : rest.substr(slash);
  if (!authority.empty() && authority[0] == '[') {
    auto end = authority.find(']');
    if (end == std::string::npos) return invalid_request("bad IPv6 host in '" + url + "'");
    u.host = authority.substr(1, end - 1);
    if (end + 1 < authority.size() && authority[end + 1] == ':') u.port = authority.substr(end + 2);
  } else {
    auto colon = authority.rfind(':');
    u.host = authority.substr(0, colon);
    if (colon != std::string::npos) u.port = authority.substr(colon + 1);
  }
  if (u.host.empty()) return invalid_request("no host in '" + url + "'");
  if (u.port.empty()) u.port = u.tls ? "443" : "80";
  return u;
}

// One exchange in flight: every step is asynchronous so the deadline set on the TCP stream
// covers all of them.
struct Exchange {
  http::request<http::string_body> req;
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  Result<HttpClientResponse> out = Status{ErrorCode::kUnavailable, "no answer"};
  std::string deadline_message;

  void fail(const beast::error_code& e, const char* step) {
    out = Status{ErrorCode::kUnavailable, e == beast::error::timeout
                                              ? deadline_message
                                              : std::string(step) + ": " + e.message()};
  }

  template <typename Stream>
  void write_and_read(Stream& stream) {
    http::async_write(stream, req, [this, &stream](beast::error_code e, std::size_t) {
      if (e) return fail(e, "sending the request failed");
      http::async_read(stream, buffer, parser, [this](beast::error_code e2, std::size_t) {
        if (e2) return fail(e2, "reading the response failed");
        out = HttpClientResponse{static_cast<int>(parser.get().result_int()), parser.get().body()};
      });
    });
  }
};

}  // namespace

Result<HttpClientResponse> http_post(const std::string& url, const std::string& json_body,
                                     std::chrono::milliseconds timeout,
                                     const std::string& extra_ca_file) {
  FK_ASSIGN_OR_RETURN(Url u, parse_url(url));
  asio::io_context io;
  beast::error_code ec;
  tcp::resolver resolver(io);
  auto endpoints = resolver.resolve(u.host, u.port, ec);
  if (ec) return Status{ErrorCode::kUnavailable, "cannot resolve " + u.host + ": " + ec.message()};
  Exchange x;
  x.deadline_message = "no answer within " + std::to_string(timeout.count()) + " ms";
  x.req = {http::verb::post, u.target, 11};
  x.req.set(http::field::host, u.host);
  x.req.set(http::field::user_agent, "fleetkeyd");
  x.req.set(http::field::content_type, "application/json");
  x.req.body() = json_body;
  x.req.prepare_payload();
  x.parser.body_limit(1 << 20);
  if (!u.tls) {
    beast::tcp_stream stream(io);
    stream.expires_after(timeout);
    stream.async_connect(endpoints, [&](beast::error_code e, const tcp::endpoint&) {
      if (e) return x.fail(e, "cannot connect");
      x.write_and_read(stream);
    });
    io.run();
    return std::move(x.out);
  }
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  ctx.set_default_verify_paths();
  if (!extra_ca_file.empty()) ctx.load_verify_file(extra_ca_file, ec);
  ctx.set_verify_mode(asio::ssl::verify_peer);
  beast::ssl_stream<beast::tcp_stream> stream(io, ctx);
  // SSL_set_tlsext_host_name, without its C cast.
  if (!SSL_ctrl(stream.native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                const_cast<char*>(u.host.c_str())))
    return Status{ErrorCode::kUnavailable, "cannot set SNI"};
  stream.set_verify_callback(asio::ssl::host_name_verification(u.host));
  beast::get_lowest_layer(stream).expires_after(timeout);
  beast::get_lowest_layer(stream).async_connect(
      endpoints, [&](beast::error_code e, const tcp::endpoint&) {
        if (e) return x.fail(e, "cannot connect");
        stream.async_handshake(asio::ssl::stream_base::client, [&](beast::error_code e2) {
          if (e2) return x.fail(e2, "TLS handshake failed");
          x.write_and_read(stream);
        });
      });
  io.run();
  return std::move(x.out);
}

}  // namespace fk::net
