// AWS Signature Version 4 verification for the control-plane API, as botocore and the aws CLI
// sign (spec section 6.4), and the same signing for fleetkey's own CLI: Authorization header,
// X-Amz-Date, service "iot", the configured region, at most 15 minutes of clock skew, secrets
// compared in constant time.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "base/clock.h"
#include "base/status.h"
#include "net/http_server.h"

namespace fk::api {

struct SigV4Error {
  std::string exception;  // x-amzn-ErrorType: InvalidSignatureException, ...
  std::string message;
};

// Returns the secret for an access key id, or std::nullopt when the key is unknown.
using SecretLookup = std::function<std::optional<std::string>(const std::string& access_key_id)>;

// std::nullopt when the request is signed correctly; otherwise AWS's 403 error.
std::optional<SigV4Error> verify_sigv4(const net::HttpRequest& request, const SecretLookup& secrets,
                                       const std::string& region, EpochSeconds now);

// Signs `request` as botocore does, for the fleetkey CLI: adds X-Amz-Date and an Authorization
// header that signs every header present (names
// lowercased; include "host"). `request.target` is the path and query as sent.
void sign_sigv4(net::HttpRequest& request, const std::string& access_key_id,
                const std::string& secret, const std::string& region, EpochSeconds now);

// Building blocks, exposed for tests.
std::string uri_encode(std::string_view s, bool keep_slash);
std::string uri_decode(std::string_view s);
std::string canonical_query(std::string_view raw_query);

}  // namespace fk::api
