#include "api/iot_api.h"

#include <cerrno>
#include <cstdlib>

#include "api/console.h"
#include "api/routing.h"
#include "api/sigv4.h"
#include "base/log.h"
#include "base/strings.h"
#include "codec/bounded_json.h"
#include "crypto/hash.h"
#include "crypto/x509.h"

namespace fk::api {

using registry::Txn;
using storage::CertificateStatus;

namespace {

constexpr std::string_view kPageTokenPrefix = "fk1:";

std::string seal_page_token(const std::string& raw) {
  return crypto::base64url_encode(std::string(kPageTokenPrefix) + raw);
}

std::optional<std::string> open_page_token(const std::string& token) {
  auto raw = crypto::base64url_decode(token);
  if (!raw || raw->rfind(kPageTokenPrefix, 0) != 0) return std::nullopt;
  return raw->substr(kPageTokenPrefix.size());
}

int http_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk:
      return 200;
    case ErrorCode::kInvalidRequest:
    case ErrorCode::kMalformedPolicy:
    case ErrorCode::kCertificateValidation:
    case ErrorCode::kRegistrationCode:
      return 400;
    case ErrorCode::kUnauthorized:
      return 401;
    case ErrorCode::kNotFound:
      return 404;
    case ErrorCode::kCertificateState:
      return 406;
    case ErrorCode::kAlreadyExists:
    case ErrorCode::kDeleteConflict:
    case ErrorCode::kVersionConflict:
    case ErrorCode::kVersionsLimitExceeded:
    case ErrorCode::kCertificateConflict:
      return 409;
    case ErrorCode::kLimitExceeded:
      return 410;
    case ErrorCode::kUnavailable:
      return 503;
    case ErrorCode::kInternal:
      return 500;
  }
  return 500;
}

net::HttpResponse error_response(int status, const std::string& type, const std::string& message,
                                 const std::string& request_id) {
  return {status,
          "application/json",
          {{"x-amzn-ErrorType", type}, {"x-amzn-RequestId", request_id}},
          json{{"message", message}}.dump()};
}

}  // namespace

std::optional<std::string> Call::q(const std::string& k) const {
  auto it = query.find(k);
  if (it == query.end()) return std::nullopt;
  return it->second;
}

Result<bool> Call::q_bool(const std::string& k, bool fallback) const {
  auto v = q(k);
  if (!v) return fallback;
  if (*v == "true") return true;
  if (*v == "false") return false;
  return invalid_request(k + " must be true or false");
}

Result<std::string> Call::member(const std::string& name) const {
  if (!body.contains(name) || !body[name].is_string()) return bad_member(name, "a string");
  return body[name].get<std::string>();
}

Result<std::optional<std::string>> Call::optional_member(const std::string& name) const {
  if (!body.contains(name) || body[name].is_null()) return std::optional<std::string>();
  if (!body[name].is_string()) return bad_member(name, "a string");
  return std::optional<std::string>(body[name].get<std::string>());
}

Result<bool> Call::bool_member(const std::string& name, bool fallback) const {
  if (!body.contains(name) || body[name].is_null()) return fallback;
  if (!body[name].is_boolean()) return bad_member(name, "a boolean");
  return body[name].get<bool>();
}

Result<std::vector<std::string>> string_list_member(const Call& c, const std::string& name,
                                                    bool required) {
  std::vector<std::string> out;
  if (!c.body.contains(name) || c.body[name].is_null()) {
    if (required) return bad_member(name, "a list of strings");
    return out;
  }
  if (!c.body[name].is_array()) return bad_member(name, "a list of strings");
  for (const auto& v : c.body[name]) {
    if (!v.is_string()) return bad_member(name, "a list of strings");
    out.push_back(v.get<std::string>());
  }
  return out;
}

Result<std::int64_t> integer_label(const Call& c, const std::string& name) {
  auto it = c.labels.find(name);
  if (it == c.labels.end() || it->second.empty() || it->second.size() > 9 ||
      it->second.find_first_not_of("0123456789") != std::string::npos)
    return bad_member(name, "a string of digits ([0-9]+)");
  return std::stoll(it->second);
}

json names_page(std::vector<std::string> names, std::size_t size, std::string* next) {
  if (names.size() > size) {
    names.resize(size);
    *next = names.back();
  }
  return json(names);
}

Result<std::int64_t> int_param(const Call& c, const char* name, std::int64_t fallback,
                               std::int64_t min, std::int64_t max) {
  auto v = c.q(name);
  if (!v) return fallback;
  char* end = nullptr;
  errno = 0;
  const long long n = std::strtoll(v->c_str(), &end, 10);
  if (v->empty() || *end != '\0' || errno != 0 || n < min || n > max)
    return bad_member(name,
                      "an integer from " + std::to_string(min) + " to " + std::to_string(max));
  return static_cast<std::int64_t>(n);
}

Status bad_member(const std::string& name, const std::string& constraint) {
  return invalid_request("1 validation error detected: Value at '" + name +
                         "' failed to satisfy constraint: Member must be " + constraint);
}

Result<PageRequest> page_request(const Call& c, const std::string& token_name,
                                 const std::string& size_name) {
  PageRequest p;
  if (auto ps = c.q(size_name)) {
    char* end = nullptr;
    long v = std::strtol(ps->c_str(), &end, 10);
    if (ps->empty() || *end != '\0' || v < 1 || v > 250)
      return bad_member(size_name, "between 1 and 250");
    p.size = static_cast<std::size_t>(v);
  }
  if (auto t = c.q(token_name)) p.after = *t;
  return p;
}

namespace {

// The request's parameters for the audit log: path labels, query and body, with the values of
// members that may carry secrets (private keys, tokens, passwords) replaced and long values cut.
json redacted(const json& j, std::size_t depth = 0) {
  if (depth > codec::kDefaultMaxDepth) return "(too deep)";
  if (j.is_object()) {
    json out = json::object();
    for (const auto& [k, v] : j.items()) {
      std::string lower = k;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      const bool secret =
          lower.find("private") != std::string::npos || lower.find("secret") != std::string::npos ||
          lower.find("password") != std::string::npos || lower.find("token") != std::string::npos;
      out[k] = secret ? json("(redacted)") : redacted(v, depth + 1);
    }
    return out;
  }
  if (j.is_array()) {
    json out = json::array();
    for (const auto& v : j) out.push_back(redacted(v, depth + 1));
    return out;
  }
  if (j.is_string() && j.get_ref<const std::string&>().size() > 1024)
    return j.get_ref<const std::string&>().substr(0, 1024) + "...(" +
           std::to_string(j.get_ref<const std::string&>().size()) + " characters)";
  return j;
}

// The access key of a verified request (its SigV4 credential scope's first part).
std::string access_key_of(const net::HttpRequest& req) {
  std::string auth = req.header("authorization");
  std::size_t at = auth.find("Credential=");
  if (at != std::string::npos) {
    at += 11;
    return auth.substr(at, auth.find('/', at) - at);
  }
  at = req.target.find("X-Amz-Credential=");
  if (at == std::string::npos) return "";
  at += 17;
  std::string v = uri_decode(req.target.substr(at, req.target.find('&', at) - at));
  return v.substr(0, v.find('/'));
}

}  // namespace

void RouteTable::add(const std::string& method, const std::string& path, Handler h) {
  // "/certificates/{certificateId}" -> ^/certificates/([^/]+)$
  std::string re = "^";
  std::vector<std::string> names;
  for (std::size_t i = 0; i < path.size();) {
    if (path[i] == '{') {
      std::size_t end = path.find('}', i);
      names.push_back(path.substr(i + 1, end - i - 1));
      re += "([^/]+)";
      i = end + 1;
    } else {
      re += path[i];
      ++i;
    }
  }
  re += "$";
  routes_.push_back({method, path, std::regex(re), names, std::move(h)});
}

struct IotApi::Impl {
  ApiContext ctx;
  RouteTable table;
  Console console;
  static constexpr std::string_view kConsoleApi = "/console/api/";

  std::function<std::optional<std::string>(const std::string&)> secret_of() {
    return [this](const std::string& key) -> std::optional<std::string> {
      auto it = ctx.config.credentials.find(key);
      if (it == ctx.config.credentials.end()) return std::nullopt;
      return it->second;
    };
  }

  Impl(registry::Registry& r, const Clock& c, ApiConfig cfg)
      : ctx{r, c, std::move(cfg)}, console(secret_of(), ctx.config.console_secure_cookie) {
    add_certificate_routes(table, ctx);
    add_policy_routes(table, ctx);
    add_thing_routes(table, ctx);
    add_template_routes(table, ctx);
    add_fleetkey_routes(table, ctx);
    add_type_and_group_routes(table, ctx);
    add_ca_routes(table, ctx);
    add_register_routes(table, ctx);
    add_device_routes(table, ctx);
  }

  // GET /metrics (Prometheus, no SigV4): with [api] metrics_token set, only with that bearer
  // token; without one, only from a loopback address.
  net::HttpResponse metrics(const net::HttpRequest& req) {
    if (!ctx.config.prometheus) return net::HttpResponse{404, "text/plain", {}, "no metrics\n"};
    if (!ctx.config.metrics_token.empty()) {
      const std::string auth = req.header("authorization");
      const std::string want = "Bearer " + ctx.config.metrics_token;
      if (!constant_time_equals(auth, want))
        return net::HttpResponse{
            401, "text/plain", {{"WWW-Authenticate", "Bearer"}}, "a bearer token is required\n"};
    } else if (!is_loopback_address(req.remote_address)) {
      return net::HttpResponse{403,
                               "text/plain",
                               {},
                               "/metrics answers loopback clients only; set [api] metrics_token "
                               "to scrape from elsewhere\n"};
    }
    return net::HttpResponse{
        200, "text/plain; version=0.0.4; charset=utf-8", {}, ctx.config.prometheus()};
  }

  // GET /crl, /crl.pem; POST /ocsp, GET /ocsp/<request>: nullopt for any other request.
  std::optional<net::HttpResponse> revocation_data(const net::HttpRequest& req) {
    const std::string path = req.target.substr(0, req.target.find('?'));
    if ((path == "/crl" || path == "/crl.pem") && req.method == "GET") {
      if (!ctx.config.crl) return net::HttpResponse{404, "text/plain", {}, "no CRL here\n"};
      auto der = ctx.config.crl();
      if (!der.is_ok()) {
        log::warn("api.crl_failed", {{"error", der.status().message()}});
        return net::HttpResponse{503, "text/plain", {}, "the CRL cannot be made now\n"};
      }
      if (path == "/crl") return net::HttpResponse{200, "application/pkix-crl", {}, *der};
      return net::HttpResponse{
          200, "application/x-pem-file", {}, crypto::der_to_pem(*der, "X509 CRL")};
    }
    const bool post = path == "/ocsp" && req.method == "POST";
    const bool get = path.rfind("/ocsp/", 0) == 0 && req.method == "GET";
    if (!post && !get) return std::nullopt;
    if (!ctx.config.ocsp) return net::HttpResponse{404, "text/plain", {}, "no OCSP here\n"};
    std::string request;
    if (post) {
      request = req.body;
    } else {
      // RFC 6960 A.1: the DER request, base64, URL-encoded.
      std::string b64 = uri_decode(std::string_view(path).substr(6));
      while (!b64.empty() && b64.back() == '=') b64.pop_back();
      for (char& c : b64) c = c == '+' ? '-' : c == '/' ? '_' : c;
      request = crypto::base64url_decode(b64).value_or(std::string());
    }
    std::string response = ctx.config.ocsp(request);
    if (response.empty())
      return net::HttpResponse{503, "text/plain", {}, "OCSP cannot be answered now\n"};
    return net::HttpResponse{200, "application/ocsp-response", {}, std::move(response)};
  }

  net::HttpResponse handle(const net::HttpRequest& req) {
    const std::string request_id = crypto::random_uuid();
    if (req.target == "/health" && req.method == "GET") {
      Status st = ctx.registry.read([](Txn& t) { return t.store().get_setting("-").status(); });
      json out = json::object();
      if (ctx.config.health)
        for (const auto& [k, v] : ctx.config.health()) out[k] = v;
      out["database"] = st.is_ok() ? "reachable" : "unreachable";
      // 503 lets a load balancer's HTTP check drain a node that cannot take devices now.
      const bool ok = st.is_ok() && out.value("eventFeed", "none") != "disconnected" &&
                      out.value("jetstream", "ok") != "unavailable" &&
                      out.value("sessions", "served") != "fenced";
      out["status"] = ok ? "ok" : "unavailable";
      return {ok ? 200 : 503, "application/json", {}, out.dump()};
    }
    if (auto revocation = revocation_data(req)) return *revocation;
    if (req.method == "GET" && req.target.substr(0, req.target.find('?')) == "/metrics")
      return metrics(req);
    std::string path = req.target.substr(0, req.target.find('?'));
    // Who asks: a SigV4 signature, or (under /console/api/) a console session.
    std::string access_key;
    if (path.rfind("/console", 0) == 0) {
      if (auto page = console.serve(req, path)) return *page;
      if (path.rfind(kConsoleApi, 0) != 0)
        return error_response(404, "ResourceNotFoundException", "no such console page", request_id);
      auto who = console.authorize(req);
      if (auto* refusal = std::get_if<net::HttpResponse>(&who)) return *refusal;
      access_key = std::get<std::string>(who);
      path = path.substr(kConsoleApi.size() - 1);  // "/console/api/things" -> "/things"
    } else {
      if (auto e = verify_sigv4(req, secret_of(), ctx.config.region, ctx.clock.now())) {
        log::warn("api.auth_failed", {{"peer", req.remote_address}, {"error", e->exception}});
        return error_response(403, e->exception, e->message, request_id);
      }
      access_key = access_key_of(req);
    }
    std::string raw_query = req.target.find('?') == std::string::npos
                                ? ""
                                : req.target.substr(req.target.find('?') + 1);
    bool path_matched = false;
    for (const Route& r : table.routes()) {
      std::smatch m;
      if (!std::regex_match(path, m, r.pattern)) continue;
      path_matched = true;
      if (r.method != req.method) continue;
      Call call{req, {}, {}, json::object()};
      for (std::size_t i = 0; i < r.label_names.size(); ++i)
        call.labels[r.label_names[i]] = uri_decode(m[i + 1].str());
      for (std::size_t s = 0; !raw_query.empty();) {
        std::size_t amp = raw_query.find('&', s);
        std::string part =
            raw_query.substr(s, amp == std::string::npos ? std::string::npos : amp - s);
        std::size_t eq = part.find('=');
        call.query[uri_decode(part.substr(0, eq))] =
            eq == std::string::npos ? "" : uri_decode(part.substr(eq + 1));
        if (amp == std::string::npos) break;
        s = amp + 1;
      }
      if (!req.body.empty()) {
        auto body = codec::parse_json(req.body,
                                      codec::JsonLimits{codec::kDefaultMaxDepth, req.body.size()});
        if (!body.is_ok())
          return error_response(400, "SerializationException",
                                "the request body: " + body.status().message(), request_id);
        if (!body->is_object())
          return error_response(400, "SerializationException",
                                "the request body is not a JSON object", request_id);
        call.body = std::move(*body);
      }
      // Pagination tokens are opaque to clients: what a handler pages after, sealed, so a
      // made-up or damaged token is refused instead of silently meaning "after this name".
      for (const char* k : {"nextToken", "marker"}) {
        auto it = call.query.find(k);
        if (it == call.query.end()) continue;
        auto raw = open_page_token(it->second);
        if (!raw)
          return error_response(400, "InvalidRequestException",
                                std::string("invalid ") + k + ": not a token fleetkeyd gave",
                                request_id);
        it->second = *raw;
      }
      Result<json> out = [&] {
        // The registry changes it makes are this caller's (the device timeline's actor).
        registry::ActorScope actor(access_key, operation_name(req.method, r.path));
        return r.handler(call);
      }();
      // Every change is in the audit log, committed before the answer (reads are not).
      if (req.method != "GET" && req.method != "HEAD") {
        storage::AuditRecord a;
        a.at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
        a.access_key = access_key;
        a.source = req.remote_address;
        a.operation = operation_name(req.method, r.path);
        a.resource = r.label_names.empty() ? "" : call.labels[r.label_names.front()];
        json params = {{"path", json(call.labels)},
                       {"query", json(call.query)},
                       {"body", redacted(call.body)}};
        a.request = params.dump();
        a.status = out.is_ok() ? 200 : http_status(out.status().code());
        if (!out.is_ok()) a.error_code = std::string(aws_exception_name(out.status().code()));
        if (Status st = ctx.registry.write([&](Txn& t) { return t.store().append_audit(a); });
            !st.is_ok())
          log::error("api.audit_failed", {{"operation", a.operation}, {"error", st.message()}});
      }
      if (out.is_ok() && out->is_object()) {
        for (const char* k : {"nextToken", "nextMarker"})
          if (out->contains(k) && (*out)[k].is_string())
            (*out)[k] = seal_page_token((*out)[k].get<std::string>());
      }
      if (!out.is_ok()) {
        Status st = out.status();
        log::info("api.request_failed", {{"method", req.method},
                                         {"path", path},
                                         {"error", std::string(aws_exception_name(st.code()))}});
        return error_response(http_status(st.code()), std::string(aws_exception_name(st.code())),
                              st.message(), request_id);
      }
      return {200, "application/json", {{"x-amzn-RequestId", request_id}}, out->dump()};
    }
    if (path_matched)
      return error_response(405, "MethodNotAllowedException",
                            "method " + req.method + " is not allowed on " + path, request_id);
    return error_response(404, "UnknownOperationException",
                          "unknown operation " + req.method + " " + path, request_id);
  }
};

IotApi::IotApi(registry::Registry& registry, const Clock& clock, ApiConfig config)
    : impl_(std::make_unique<Impl>(registry, clock, std::move(config))) {}
IotApi::~IotApi() = default;

net::HttpResponse IotApi::handle(const net::HttpRequest& request) {
  return impl_->handle(request);
}

}  // namespace fk::api
