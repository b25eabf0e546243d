#include "api/sigv4.h"

#include <algorithm>
#include <ctime>
#include <vector>

#include "base/strings.h"
#include "crypto/hash.h"

namespace fk::api {

namespace {

bool unreserved(unsigned char c) {
  return std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

std::string trim_collapse(std::string_view v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t') {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

std::optional<EpochSeconds> parse_amz_date(const std::string& s) {
  if (s.size() != 16 || s[8] != 'T' || s[15] != 'Z') return std::nullopt;
  std::tm tm{};
  if (strptime(s.c_str(), "%Y%m%dT%H%M%SZ", &tm) == nullptr) return std::nullopt;
  return static_cast<EpochSeconds>(timegm(&tm));
}

// The hex signature of `req` over `signed_headers` ("host;x-amz-date"), service "iot".
std::string signature_of(const net::HttpRequest& req, const std::string& signed_headers,
                         const std::string& secret, const std::string& amz_date,
                         const std::string& region) {
  const std::string& target = req.target;
  std::size_t q = target.find('?');
  std::string path = target.substr(0, q);
  std::string query = q == std::string::npos ? "" : target.substr(q + 1);
  std::string canonical_headers;
  for (std::size_t s = 0;;) {
    std::size_t semi = signed_headers.find(';', s);
    std::string name =
        signed_headers.substr(s, semi == std::string::npos ? std::string::npos : semi - s);
    std::string value;
    for (const auto& [k, v] : req.headers) {
      if (k == name) {
        if (!value.empty()) value += ',';
        value += trim_collapse(v);
      }
    }
    canonical_headers += name + ":" + value + "\n";
    if (semi == std::string::npos) break;
    s = semi + 1;
  }
  std::string payload_hash = req.header("x-amz-content-sha256");
  if (payload_hash.empty()) payload_hash = to_hex(crypto::sha256(req.body));
  const std::string canonical_request = req.method + "\n" + uri_encode(path, true) + "\n" +
                                        canonical_query(query) + "\n" + canonical_headers + "\n" +
                                        signed_headers + "\n" + payload_hash;
  const std::string date = amz_date.substr(0, 8);
  const std::string scope_text = date + "/" + region + "/iot/aws4_request";
  const std::string to_sign = "AWS4-HMAC-SHA256\n" + amz_date + "\n" + scope_text + "\n" +
                              to_hex(crypto::sha256(canonical_request));
  std::string key = crypto::hmac_sha256("AWS4" + secret, date);
  key = crypto::hmac_sha256(key, region);
  key = crypto::hmac_sha256(key, "iot");
  key = crypto::hmac_sha256(key, "aws4_request");
  return to_hex(crypto::hmac_sha256(key, to_sign));
}

SigV4Error err(std::string type, std::string message) {
  return {std::move(type), std::move(message)};
}

}  // namespace

std::string uri_encode(std::string_view s, bool keep_slash) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (unreserved(c) || (keep_slash && c == '/')) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

std::string uri_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else if (s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string canonical_query(std::string_view raw) {
  std::vector<std::pair<std::string, std::string>> params;
  std::size_t start = 0;
  while (start <= raw.size() && !raw.empty()) {
    std::size_t amp = raw.find('&', start);
    std::string_view part =
        raw.substr(start, amp == std::string_view::npos ? std::string_view::npos : amp - start);
    if (!part.empty()) {
      std::size_t eq = part.find('=');
      std::string k = uri_decode(part.substr(0, eq));
      std::string v = eq == std::string_view::npos ? "" : uri_decode(part.substr(eq + 1));
      params.emplace_back(uri_encode(k, false), uri_encode(v, false));
    }
    if (amp == std::string_view::npos) break;
    start = amp + 1;
  }
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto& [k, v] : params) {
    if (!out.empty()) out += '&';
    out += k + "=" + v;
  }
  return out;
}

std::optional<SigV4Error> verify_sigv4(const net::HttpRequest& req, const SecretLookup& secrets,
                                       const std::string& region, EpochSeconds now) {
  const std::string auth = req.header("authorization");
  if (auth.empty())
    return err("MissingAuthenticationTokenException", "Missing Authentication Token");
  constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256 ";
  if (auth.rfind(kAlgorithm, 0) != 0)
    return err("IncompleteSignatureException", "Only AWS4-HMAC-SHA256 signatures are accepted");
  // Credential=AKID/date/region/service/aws4_request, SignedHeaders=a;b, Signature=hex
  std::string credential, signed_headers, signature;
  std::string rest = auth.substr(kAlgorithm.size());
  std::size_t pos = 0;
  while (pos < rest.size()) {
    std::size_t comma = rest.find(',', pos);
    std::string part = trim_collapse(
        rest.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos));
    std::size_t eq = part.find('=');
    if (eq != std::string::npos) {
      std::string k = part.substr(0, eq), v = part.substr(eq + 1);
      if (k == "Credential") credential = v;
      if (k == "SignedHeaders") signed_headers = v;
      if (k == "Signature") signature = v;
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  if (credential.empty() || signed_headers.empty() || signature.empty())
    return err("IncompleteSignatureException",
               "Authorization header requires Credential, SignedHeaders and Signature");
  std::vector<std::string> scope;
  for (std::size_t s = 0;;) {
    std::size_t slash = credential.find('/', s);
    scope.push_back(
        credential.substr(s, slash == std::string::npos ? std::string::npos : slash - s));
    if (slash == std::string::npos) break;
    s = slash + 1;
  }
  if (scope.size() != 5 || scope[4] != "aws4_request")
    return err("IncompleteSignatureException",
               "Credential must be AKID/date/region/service/aws4_request");
  const std::string& key_id = scope[0];
  const std::string amz_date = req.header("x-amz-date");
  auto when = parse_amz_date(amz_date);
  if (!when) return err("IncompleteSignatureException", "X-Amz-Date is missing or malformed");
  if (scope[1] != amz_date.substr(0, 8))
    return err("InvalidSignatureException", "Credential date does not match X-Amz-Date");
  if (scope[2] != region)
    return err("InvalidSignatureException", "Credential should be scoped to a valid region, not '" +
                                                scope[2] + "'. This endpoint serves '" + region +
                                                "'");
  if (scope[3] != "iot")
    return err("InvalidSignatureException",
               "Credential should be scoped to correct service: 'iot'");
  if (std::llabs(*when - now) > 15 * 60)
    return err("InvalidSignatureException",
               "Signature expired: " + amz_date + " is more than 15 minutes from the server time");
  std::optional<std::string> secret = secrets(key_id);
  if (!secret)
    return err("UnrecognizedClientException",
               "The security token included in the request is invalid");

  const std::string expected = signature_of(req, signed_headers, *secret, amz_date, scope[2]);
  if (!constant_time_equals(expected, signature))
    return err("InvalidSignatureException",
               "The request signature we calculated does not match the signature you provided. "
               "Check your AWS Secret Access Key and signing method.");
  return std::nullopt;
}

void sign_sigv4(net::HttpRequest& req, const std::string& access_key_id, const std::string& secret,
                const std::string& region, EpochSeconds now) {
  const std::string amz_date = format_utc(now, "%Y%m%dT%H%M%SZ");
  req.headers.erase(std::remove_if(req.headers.begin(), req.headers.end(),
                                   [](const auto& h) {
                                     return h.first == "authorization" || h.first == "x-amz-date" ||
                                            h.first == "x-amz-content-sha256";
                                   }),
                    req.headers.end());
  req.headers.emplace_back("x-amz-date", amz_date);
  std::vector<std::string> names;
  for (const auto& [k, v] : req.headers) names.push_back(k);
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  std::string signed_headers;
  for (const auto& n : names) signed_headers += (signed_headers.empty() ? "" : ";") + n;
  const std::string signature = signature_of(req, signed_headers, secret, amz_date, region);
  req.headers.emplace_back(
      "authorization",
      "AWS4-HMAC-SHA256 Credential=" + access_key_id + "/" + amz_date.substr(0, 8) + "/" + region +
          "/iot/aws4_request, SignedHeaders=" + signed_headers + ", Signature=" + signature);
}

}  // namespace fk::api
