// HTTP/1.1 clients, blocking, for code off the I/O threads. HTTPS verifies the server against
// the system's trust store plus an optional extra CA file, with SNI and host name checks.
// - http_post: one POST of a JSON body with a deadline for the whole exchange (connect, TLS,
//   write, read); the pre-provisioning hook.
// - HttpClient: a kept-alive connection to one server for many requests (the fleetkey CLI).
//
// Thread-safety: http_post calls are independent; one HttpClient per thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"

namespace fk::net {

struct HttpClientResponse {
  int status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // names lowercased

  // The first header with this (lowercase) name, or "".
  std::string header(std::string_view name) const;
};

// Failures: kInvalidRequest for a bad URL, kUnavailable for network, TLS and timeout errors
// (the message says which).
Result<HttpClientResponse> http_post(const std::string& url, const std::string& json_body,
                                     std::chrono::milliseconds timeout,
                                     const std::string& extra_ca_file = {});

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

class HttpClient {
 public:
  // `base_url`: "http://host:port" or "https://host[:port]" (a path is ignored). Errors:
  // kInvalidRequest for a bad URL.
  static Result<std::unique_ptr<HttpClient>> create(const std::string& base_url,
                                                    std::chrono::milliseconds timeout,
                                                    const std::string& extra_ca_file = {});
  ~HttpClient();

  // The Host header this client sends ("host" or "host:port"), e.g. for request signing.
  const std::string& host_header() const;

  // One request over the kept connection (opened, or re-opened once when the server closed an
  // idle one). `headers` are sent as given, plus Host and Content-Length. Errors:
  // kUnavailable for network, TLS and timeout errors (the message says which).
  Result<HttpClientResponse> send(const std::string& method, const std::string& target,
                                  const HttpHeaders& headers, const std::string& body);

 private:
  struct Impl;
  explicit HttpClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fk::net
