// Console: the web console's side of the API port (issue 20, part 5; docs/console.md).
//
// It serves the console's page (src/api/console/, compiled in: nothing is read or fetched at run
// time) and its sessions: POST /console/session signs in with an access key id and its secret
// and sets an HttpOnly, SameSite=Strict cookie; the page keeps only the session's CSRF token, in
// memory. Requests to /console/api/<route> are the API's own routes (AWS's and /fleetkey/...),
// authorized by that session instead of SigV4 — with the cookie, the X-Fleetkey-Csrf header
// (which no other site can send) and, when the browser sends one, an Origin that is this host.
// Sessions end after 30 idle minutes or 8 hours, at sign-out, or when fleetkeyd restarts.
//
// Thread-safety: every method may be called concurrently.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <variant>

#include "net/http_server.h"
#include "provisioning/rate_limiter.h"

namespace fk::api {

class Console {
 public:
  // `secret_of`: an access key id's secret (nullopt: no such key). `secure_cookie`: the API
  // is served over TLS (the cookie gets Secure).
  Console(std::function<std::optional<std::string>(const std::string&)> secret_of,
          bool secure_cookie);

  // The page's files and /console/session; nullopt for anything else.
  std::optional<net::HttpResponse> serve(const net::HttpRequest& req, const std::string& path);

  // For a /console/api/ request: the session's access key id, or the refusal to send.
  std::variant<std::string, net::HttpResponse> authorize(const net::HttpRequest& req);

  std::size_t sessions() const;

 private:
  struct Session {
    std::string access_key;
    std::string csrf;
    std::chrono::steady_clock::time_point created, used;
  };
  std::optional<std::string> cookie_token(const net::HttpRequest& req) const;
  // The live session of this request's cookie (refreshed), or nullopt.
  std::optional<Session> session_of(const net::HttpRequest& req);
  net::HttpResponse sign_in(const net::HttpRequest& req);
  static bool same_origin(const net::HttpRequest& req);

  std::function<std::optional<std::string>(const std::string&)> secret_of_;
  const bool secure_cookie_;
  mutable std::mutex mu_;
  std::map<std::string, Session> sessions_;  // by the cookie's token
  provisioning::KeyedRateLimiter sign_ins_;  // failed or not, per client address
};

}  // namespace fk::api
