#include "api/console.h"

#include <nlohmann/json.hpp>

#include "base/log.h"
#include "base/strings.h"
#include "codec/bounded_json.h"
#include "crypto/x509.h"

namespace fk::api {

// The page's files (generated from src/api/console/ by src/api/console/embed.cmake).
struct ConsoleAsset {
  const char* path;  // "/console/app.js"
  const char* content_type;
  std::string_view body;
};
const ConsoleAsset* find_console_asset(std::string_view path);

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr auto kIdle = std::chrono::minutes(30);
constexpr auto kLifetime = std::chrono::hours(8);
constexpr std::size_t kMaxSessions = 1000;
constexpr const char* kCookie = "fk_console";

net::HttpResponse answer(int status, const std::string& type, const std::string& message) {
  net::HttpResponse r{status, "application/json", {}, json{{"message", message}}.dump()};
  if (!type.empty()) r.headers.emplace_back("x-amzn-ErrorType", type);
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

// What every console response says to the browser: no framing, no sniffing, only our own
// scripts and styles, nothing sent to other sites.
void harden(net::HttpResponse& r) {
  r.headers.emplace_back("Content-Security-Policy",
                         "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' "
                         "data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                         "form-action 'self'");
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  r.headers.emplace_back("X-Frame-Options", "DENY");
  r.headers.emplace_back("Referrer-Policy", "no-referrer");
}

}  // namespace

Console::Console(std::function<std::optional<std::string>(const std::string&)> secret_of,
                 bool secure_cookie)
    : secret_of_(std::move(secret_of)), secure_cookie_(secure_cookie) {}

std::size_t Console::sessions() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sessions_.size();
}

std::optional<std::string> Console::cookie_token(const net::HttpRequest& req) const {
  for (const auto& [name, value] : req.headers) {
    if (name != "cookie") continue;
    std::string_view rest = value;
    while (!rest.empty()) {
      const auto semi = rest.find(';');
      std::string_view part = rest.substr(0, semi);
      rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
      while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
      const auto eq = part.find('=');
      if (eq != std::string_view::npos && part.substr(0, eq) == kCookie)
        return std::string(part.substr(eq + 1));
    }
  }
  return std::nullopt;
}

std::optional<Console::Session> Console::session_of(const net::HttpRequest& req) {
  auto token = cookie_token(req);
  if (!token || token->size() != 64) return std::nullopt;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(*token);
  if (it == sessions_.end()) return std::nullopt;
  const auto now = Clock::now();
  if (now - it->second.used > kIdle || now - it->second.created > kLifetime) {
    sessions_.erase(it);
    return std::nullopt;
  }
  it->second.used = now;
  return it->second;
}

// The Origin a browser sends (absent from same-origin GETs in some browsers; then the CSRF
// header alone decides) must be this host.
bool Console::same_origin(const net::HttpRequest& req) {
  const std::string origin = req.header("origin");
  if (origin.empty()) return true;
  const std::string host = req.header("host");
  return !host.empty() && (origin == "http://" + host || origin == "https://" + host);
}

net::HttpResponse Console::sign_in(const net::HttpRequest& req) {
  if (!same_origin(req)) return answer(403, "AccessDeniedException", "cross-site sign-in refused");
  if (!sign_ins_.take(req.remote_address, 10.0 / 60, 10))
    return answer(429, "ThrottlingException", "too many sign-ins from this address; wait a minute");
  auto body = codec::parse_json(req.body, codec::JsonLimits{4, 4096});
  if (!body.is_ok() || !body->is_object() || !(*body)["accessKeyId"].is_string() ||
      !(*body)["secretAccessKey"].is_string())
    return answer(400, "InvalidRequestException",
                  "send {\"accessKeyId\": ..., \"secretAccessKey\": ...}");
  const std::string key = (*body)["accessKeyId"].get<std::string>();
  const std::string secret = (*body)["secretAccessKey"].get<std::string>();
  auto want = secret_of_(key);
  // Compared in constant time; an unknown key is compared against itself so that it takes as
  // long.
  const bool matches = constant_time_equals(want ? *want : secret, secret);
  const bool ok = want.has_value() && matches;
  if (!ok) {
    log::warn("console.sign_in_refused", {{"peer", req.remote_address}});
    return answer(401, "UnauthorizedException", "the access key id or its secret is wrong");
  }
  Session s{key, crypto::random_hex(32), Clock::now(), Clock::now()};
  const std::string token = crypto::random_hex(32);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (sessions_.size() >= kMaxSessions) {
      auto oldest = sessions_.begin();
      for (auto it = sessions_.begin(); it != sessions_.end(); ++it)
        if (it->second.used < oldest->second.used) oldest = it;
      sessions_.erase(oldest);
    }
    sessions_.emplace(token, s);
  }
  log::info("console.signed_in", {{"access_key", key}, {"peer", req.remote_address}});
  net::HttpResponse r{
      200,
      "application/json",
      {},
      json{{"accessKeyId", key},
           {"csrfToken", s.csrf},
           {"idleMinutes", std::chrono::duration_cast<std::chrono::minutes>(kIdle).count()}}
          .dump()};
  r.headers.emplace_back("Set-Cookie", std::string(kCookie) + "=" + token +
                                           "; Path=/console; HttpOnly; SameSite=Strict" +
                                           (secure_cookie_ ? "; Secure" : ""));
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

std::optional<net::HttpResponse> Console::serve(const net::HttpRequest& req,
                                                const std::string& path) {
  if (path == "/console" || path == "/console/") {
    if (req.method != "GET") return answer(405, "MethodNotAllowedException", "GET only");
    return serve(net::HttpRequest{req.method, "/console/index.html", req.headers, {}, {}},
                 "/console/index.html");
  }
  if (path == "/console/session") {
    net::HttpResponse r;
    if (req.method == "POST") {
      r = sign_in(req);
    } else if (req.method == "GET") {
      auto s = session_of(req);
      r = s ? net::HttpResponse{200,
                                "application/json",
                                {{"Cache-Control", "no-store"}},
                                json{{"accessKeyId", s->access_key}, {"csrfToken", s->csrf}}.dump()}
            : answer(401, "UnauthorizedException", "not signed in, or the session expired");
    } else if (req.method == "DELETE") {
      auto s = session_of(req);
      if (!s || !constant_time_equals(req.header("x-fleetkey-csrf"), s->csrf) ||
          !same_origin(req)) {
        r = answer(403, "AccessDeniedException", "sign-out needs the session and its CSRF token");
      } else {
        std::lock_guard<std::mutex> lock(mu_);
        sessions_.erase(*cookie_token(req));
        r = answer(200, "", "signed out");
        r.headers.emplace_back("Set-Cookie", std::string(kCookie) +
                                                 "=; Path=/console; HttpOnly; SameSite=Strict; "
                                                 "Max-Age=0");
      }
    } else {
      r = answer(405, "MethodNotAllowedException", "GET, POST or DELETE");
    }
    harden(r);
    return r;
  }
  if (const ConsoleAsset* a = find_console_asset(path)) {
    if (req.method != "GET") return answer(405, "MethodNotAllowedException", "GET only");
    net::HttpResponse r{200,
                        std::string(a->content_type) + "; charset=utf-8",
                        {{"Cache-Control", "no-cache"}},
                        std::string(a->body)};
    harden(r);
    return r;
  }
  return std::nullopt;
}

std::variant<std::string, net::HttpResponse> Console::authorize(const net::HttpRequest& req) {
  auto s = session_of(req);
  if (!s) {
    net::HttpResponse r = answer(401, "UnauthorizedException",
                                 "not signed in, or the session expired: sign in again");
    harden(r);
    return r;
  }
  if (!constant_time_equals(req.header("x-fleetkey-csrf"), s->csrf) || !same_origin(req)) {
    log::warn("console.csrf_refused", {{"peer", req.remote_address}});
    net::HttpResponse r = answer(403, "AccessDeniedException",
                                 "a console request needs its session's X-Fleetkey-Csrf header "
                                 "and this site's Origin");
    harden(r);
    return r;
  }
  return s->access_key;
}

}  // namespace fk::api
