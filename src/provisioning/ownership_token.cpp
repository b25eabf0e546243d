#include "provisioning/ownership_token.h"

#include <nlohmann/json.hpp>

#include "base/strings.h"
#include "crypto/hash.h"

namespace fk::provisioning {

OwnershipTokens::OwnershipTokens(std::string key) : key_(std::move(key)) {}

std::string OwnershipTokens::issue(const OwnershipClaims& c) const {
  const std::string claims = nlohmann::json{
      {"c", c.certificate_id},
      {"k", c.claim_certificate_id},
      {"e", c.expires_at},
      {"n", c.nonce}}.dump();
  return crypto::base64url_encode(claims) + "." +
         crypto::base64url_encode(crypto::hmac_sha256(key_, claims));
}

Result<OwnershipClaims> OwnershipTokens::verify(std::string_view token,
                                                std::string_view claim_certificate_id,
                                                EpochSeconds now) const {
  if (token.empty()) return invalid_request("Certificate ownership token cannot be empty.");
  const std::size_t dot = token.find('.');
  if (token.size() > 4096 || dot == std::string_view::npos)
    return invalid_request("the certificate ownership token is malformed");
  auto claims = crypto::base64url_decode(token.substr(0, dot));
  auto mac = crypto::base64url_decode(token.substr(dot + 1));
  if (!claims || !mac) return invalid_request("the certificate ownership token is malformed");
  if (!constant_time_equals(*mac, crypto::hmac_sha256(key_, *claims)))
    return invalid_request("the certificate ownership token was not issued by this fleetkey");
  auto j = nlohmann::json::parse(*claims, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.value("c", nlohmann::json()).is_string() ||
      !j.value("k", nlohmann::json()).is_string() ||
      !j.value("e", nlohmann::json()).is_number_integer())
    return invalid_request("the certificate ownership token is malformed");
  OwnershipClaims c{j["c"], j["k"], j["e"].get<EpochSeconds>(), j.value("n", std::string())};
  if (now >= c.expires_at)
    return invalid_request("the certificate ownership token expired at " +
                           format_utc(c.expires_at) + " (tokens live 1 hour)");
  if (c.claim_certificate_id != claim_certificate_id)
    return invalid_request(
        "the certificate ownership token was issued to another claim "
        "certificate");
  return c;
}

}  // namespace fk::provisioning
