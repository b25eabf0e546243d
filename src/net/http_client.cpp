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

// The server's name for the TLS layer: SNI and a host name check, or an IP address check
// (no SNI) when `host` is an address (Boost's host_name_verification does not match IP SANs).
Status expect_peer(SSL* ssl, const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  if (!ec) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str()) != 1)
      return Status{ErrorCode::kUnavailable, "cannot check the server's address " + host};
    return Status::ok();
  }
  // SSL_set_tlsext_host_name, without its C cast.
  if (!SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                const_cast<char*>(host.c_str())) ||
      SSL_set1_host(ssl, host.c_str()) != 1)
    return Status{ErrorCode::kUnavailable, "cannot set the server name " + host};
  return Status::ok();
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
        out = HttpClientResponse{
            static_cast<int>(parser.get().result_int()), parser.get().body(), {}};
      });
    });
  }
};

}  // namespace

std::string HttpClientResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return v;
  return {};
}

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
  FK_RETURN_IF_ERROR(expect_peer(stream.native_handle(), u.host));
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

struct HttpClient::Impl {
  Url url;
  std::string host_header;
  std::chrono::milliseconds timeout{};
  asio::io_context io;
  std::unique_ptr<asio::ssl::context> tls;
  tcp::resolver::results_type endpoints;
  std::unique_ptr<beast::tcp_stream> plain;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> secure;
  beast::flat_buffer buffer;

  bool connected() const { return plain || secure; }
  beast::tcp_stream& lowest() { return plain ? *plain : beast::get_lowest_layer(*secure); }

  void close() {
    plain.reset();
    secure.reset();
    buffer.clear();
  }

  // Runs the io_context until the started operations finish.
  void run() {
    io.restart();
    io.run();
  }

  Status connect() {
    close();
    beast::error_code ec;
    if (endpoints.empty()) {
      tcp::resolver resolver(io);
      endpoints = resolver.resolve(url.host, url.port, ec);
      if (ec)
        return Status{ErrorCode::kUnavailable, "cannot resolve " + url.host + ": " + ec.message()};
    }
    const std::string where = url.host + ":" + url.port;
    if (!url.tls) {
      plain = std::make_unique<beast::tcp_stream>(io);
      plain->expires_after(timeout);
      plain->async_connect(endpoints, [&](beast::error_code e, const tcp::endpoint&) { ec = e; });
      run();
      if (ec) {
        close();
        return Status{ErrorCode::kUnavailable, "cannot connect to " + where + ": " + ec.message()};
      }
      plain->socket().set_option(tcp::no_delay(true), ec);
      return Status::ok();
    }
    secure = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(io, *tls);
    FK_RETURN_IF_ERROR(expect_peer(secure->native_handle(), url.host));
    lowest().expires_after(timeout);
    const char* step = "cannot connect to ";
    lowest().async_connect(endpoints, [&](beast::error_code e, const tcp::endpoint&) {
      if ((ec = e)) return;
      step = "TLS handshake with ";
      secure->async_handshake(asio::ssl::stream_base::client,
                              [&](beast::error_code e2) { ec = e2; });
    });
    run();
    if (ec) {
      close();
      return Status{ErrorCode::kUnavailable, step + where + " failed: " + ec.message()};
    }
    return Status::ok();
  }

  // One write and read on the open connection; `*nothing_read` tells whether the failure came
  // before any response byte (then the server had closed a kept connection).
  Result<HttpClientResponse> exchange(http::request<http::string_body>& req, bool* nothing_read) {
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 << 20);
    beast::error_code ec;
    const char* step = "sending the request failed";
    std::size_t read_bytes = 0;
    lowest().expires_after(timeout);
    auto on_read = [&](beast::error_code e, std::size_t n) {
      ec = e;
      read_bytes = n;
    };
    auto on_write = [&](beast::error_code e, std::size_t) {
      if ((ec = e)) return;
      step = "reading the response failed";
      if (plain)
        http::async_read(*plain, buffer, parser, on_read);
      else
        http::async_read(*secure, buffer, parser, on_read);
    };
    if (plain)
      http::async_write(*plain, req, on_write);
    else
      http::async_write(*secure, req, on_write);
    run();
    *nothing_read = read_bytes == 0 && !parser.got_some() && ec != beast::error::timeout;
    if (ec) {
      close();
      if (ec == beast::error::timeout)
        return Status{ErrorCode::kUnavailable, "no answer from " + url.host + ":" + url.port +
                                                   " within " + std::to_string(timeout.count()) +
                                                   " ms"};
      return Status{ErrorCode::kUnavailable, std::string(step) + ": " + ec.message()};
    }
    auto& res = parser.get();
    HttpClientResponse out{static_cast<int>(res.result_int()), std::move(res.body()), {}};
    for (const auto& field : res) {
      std::string name(field.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      out.headers.emplace_back(std::move(name), std::string(field.value()));
    }
    if (!res.keep_alive()) close();
    return out;
  }
};

HttpClient::HttpClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpClient::~HttpClient() = default;

Result<std::unique_ptr<HttpClient>> HttpClient::create(const std::string& base_url,
                                                       std::chrono::milliseconds timeout,
                                                       const std::string& extra_ca_file) {
  auto impl = std::make_unique<Impl>();
  FK_ASSIGN_OR_RETURN(impl->url, parse_url(base_url));
  impl->timeout = timeout;
  const Url& u = impl->url;
  std::string host = u.host.find(':') != std::string::npos ? "[" + u.host + "]" : u.host;
  impl->host_header = (u.port == (u.tls ? "443" : "80")) ? host : host + ":" + u.port;
  if (u.tls) {
    impl->tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
    impl->tls->set_default_verify_paths();
    if (!extra_ca_file.empty()) {
      beast::error_code ec;
      impl->tls->load_verify_file(extra_ca_file, ec);
      if (ec)
        return invalid_request("cannot load the CA bundle " + extra_ca_file + ": " + ec.message());
    }
    impl->tls->set_verify_mode(asio::ssl::verify_peer);
  }
  return std::unique_ptr<HttpClient>(new HttpClient(std::move(impl)));
}

const std::string& HttpClient::host_header() const {
  return impl_->host_header;
}

Result<HttpClientResponse> HttpClient::send(const std::string& method, const std::string& target,
                                            const HttpHeaders& headers, const std::string& body) {
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  if (req.method() == http::verb::unknown) return invalid_request("unknown method " + method);
  req.set(http::field::host, impl_->host_header);
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  req.prepare_payload();
  req.keep_alive(true);
  for (int attempt = 0;; ++attempt) {
    const bool reused = impl_->connected();
    if (!reused) FK_RETURN_IF_ERROR(impl_->connect());
    bool nothing_read = false;
    auto res = impl_->exchange(req, &nothing_read);
    // A kept connection the server had closed while idle: open a new one, once.
    if (!res.is_ok() && reused && nothing_read && attempt == 0) continue;
    return res;
  }
}

}  // namespace fk::net
