// Hashes and MACs (implemented in crypto/openssl/). Pure functions, thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace fk::crypto {

// Raw 32-byte SHA-256 digest.
std::string sha256(std::string_view data);
// Raw 32-byte HMAC-SHA256.
std::string hmac_sha256(std::string_view key, std::string_view data);

// Base64url without padding (RFC 4648 section 5), and back (nullopt: not base64url).
std::string base64url_encode(std::string_view data);
std::optional<std::string> base64url_decode(std::string_view text);

}  // namespace fk::crypto
