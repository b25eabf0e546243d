// http_post: one HTTP/1.1 POST of a JSON body to an http:// or https:// URL, with a deadline
// for the whole exchange (connect, TLS, write, read). Blocking; used off the I/O threads (the
// pre-provisioning hook). HTTPS verifies the server against the system's trust store plus an
// optional extra CA file, with SNI and host name checks.
//
// Thread-safety: each call is independent.
#pragma once

#include <chrono>
#include <string>

#include "base/status.h"

namespace fk::net {

struct HttpClientResponse {
  int status = 0;
  std::string body;
};

// Failures: kInvalidRequest for a bad URL, kUnavailable for network, TLS and timeout errors
// (the message says which).
Result<HttpClientResponse> http_post(const std::string& url, const std::string& json_body,
                                     std::chrono::milliseconds timeout,
                                     const std::string& extra_ca_file = {});

}  // namespace fk::net
