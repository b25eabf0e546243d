#include "api/iot_api.h"

#include <functional>
#include <nlohmann/json.hpp>
#include <regex>

#include "api/sigv4.h"
#include "base/log.h"
#include "crypto/x509.h"

namespace fk::api {

using nlohmann::json;
using registry::Txn;
using storage::CertificateStatus;

namespace {

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

// One request, parsed: path labels, query parameters, JSON body.
struct Call {
  const net::HttpRequest& http;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> query;
  json body;

  std::optional<std::string> q(const std::string& k) const {
    auto it = query.find(k);
    if (it == query.end()) return std::nullopt;
    return it->second;
  }
  Result<bool> q_bool(const std::string& k, bool fallback) const {
    auto v = q(k);
    if (!v) return fallback;
    if (*v == "true") return true;
    if (*v == "false") return false;
    return invalid_request(k + " must be true or false");
  }
};

using Handler = std::function<Result<json>(Call&)>;

struct Route {
  std::string method;
  std::regex pattern;
  std::vector<std::string> label_names;
  Handler handler;
};

Status bad_member(const std::string& name, const std::string& type) {
  return invalid_request("1 validation error detected: Value at '" + name +
                         "' failed to satisfy constraint: Member must be " + type);
}

}  // namespace

struct IotApi::Impl {
  registry::Registry& registry;
  const Clock& clock;
  ApiConfig config;
  std::vector<Route> routes;

  Impl(registry::Registry& r, const Clock& c, ApiConfig cfg)
      : registry(r), clock(c), config(std::move(cfg)) {
    add_routes();
  }

  const registry::ArnScope& arns() const { return registry.config().arns; }

  void add(const std::string& method, const std::string& path, Handler h) {
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
    routes.push_back({method, std::regex(re), names, std::move(h)});
  }

  json certificate_description(const storage::CertificateRecord& c) const {
    return {{"certificateArn", arns().certificate(c.certificate_id)},
            {"certificateId", c.certificate_id},
            {"caCertificateId",
             c.ca_certificate_id.empty() ? json(nullptr) : json(c.ca_certificate_id)},
            {"status", storage::to_string(c.status)},
            {"certificatePem", c.pem},
            {"ownedBy", arns().account_id},
            {"creationDate", c.created_at},
            {"lastModifiedDate", c.updated_at},
            {"customerVersion", c.customer_version},
            {"generationId", c.generation_id},
            {"validity", {{"notBefore", c.not_before}, {"notAfter", c.not_after}}},
            {"certificateMode", c.certificate_mode}};
  }

  void add_routes() {
    add("POST", "/keys-and-certificate", [this](Call& c) -> Result<json> {
      FK_ASSIGN_OR_RETURN(bool active, c.q_bool("setAsActive", false));
      FK_ASSIGN_OR_RETURN(auto r,
                          registry.create_keys_and_certificate(
                              crypto::KeySpec::rsa(2048),
                              active ? CertificateStatus::kActive : CertificateStatus::kInactive));
      return json{{"certificateArn", arns().certificate(r.certificate.certificate_id)},
                  {"certificateId", r.certificate.certificate_id},
                  {"certificatePem", r.certificate.pem},
                  {"keyPair",
                   {{"PublicKey", r.keys.public_key_pem}, {"PrivateKey", r.keys.private_key_pem}}}};
    });
    add("POST", "/certificates", [this](Call& c) -> Result<json> {
      FK_ASSIGN_OR_RETURN(bool active, c.q_bool("setAsActive", false));
      if (!c.body.contains("certificateSigningRequest") ||
          !c.body["certificateSigningRequest"].is_string())
        return bad_member("certificateSigningRequest", "a string");
      auto r = registry.create_certificate_from_csr(
          c.body["certificateSigningRequest"].get<std::string>(),
          active ? CertificateStatus::kActive : CertificateStatus::kInactive);
      if (!r.is_ok() && r.status().code() == ErrorCode::kCertificateValidation)
        return invalid_request(r.status().message());  // AWS: InvalidRequestException
      FK_RETURN_IF_ERROR(r.status());
      return json{{"certificateArn", arns().certificate(r->certificate_id)},
                  {"certificateId", r->certificate_id},
                  {"certificatePem", r->pem}};
    });
    add("GET", "/certificates/{certificateId}", [this](Call& c) -> Result<json> {
      json out;
      FK_RETURN_IF_ERROR(registry.read([&](Txn& t) -> Status {
        FK_ASSIGN_OR_RETURN(auto cert, t.describe_certificate(c.labels["certificateId"]));
        out = {{"certificateDescription", certificate_description(cert)}};
        return Status::ok();
      }));
      return out;
    });
    add("PUT", "/certificates/{certificateId}", [this](Call& c) -> Result<json> {
      auto status_text = c.q("newStatus");
      if (!status_text) return bad_member("newStatus", "one of ACTIVE, INACTIVE, REVOKED");
      FK_ASSIGN_OR_RETURN(CertificateStatus status,
                          storage::parse_certificate_status(*status_text));
      FK_RETURN_IF_ERROR(registry.write(
          [&](Txn& t) { return t.update_certificate_status(c.labels["certificateId"], status); }));
      return json::object();
    });
    add("DELETE", "/certificates/{certificateId}", [this](Call& c) -> Result<json> {
      FK_ASSIGN_OR_RETURN(bool force, c.q_bool("forceDelete", false));
      FK_RETURN_IF_ERROR(registry.write(
          [&](Txn& t) { return t.delete_certificate(c.labels["certificateId"], force); }));
      return json::object();
    });
    add("GET", "/certificates", [this](Call& c) -> Result<json> {
      storage::CertificateQuery query;
      FK_ASSIGN_OR_RETURN(query.ascending, c.q_bool("isAscendingOrder", false));
      std::size_t page_size = 25;
      if (auto ps = c.q("pageSize")) {
        char* end = nullptr;
        long v = std::strtol(ps->c_str(), &end, 10);
        if (*end != '\0' || v < 1 || v > 250) return bad_member("pageSize", "between 1 and 250");
        page_size = static_cast<std::size_t>(v);
      }
      query.page.limit = page_size + 1;
      if (auto marker = c.q("marker")) query.page.after = *marker;
      json certs = json::array();
      std::string next;
      FK_RETURN_IF_ERROR(registry.read([&](Txn& t) -> Status {
        FK_ASSIGN_OR_RETURN(auto list, t.store().list_certificates(query));
        if (list.size() > page_size) {
          list.resize(page_size);
          next = storage::certificate_page_key(list.back());
        }
        for (const auto& cert : list) {
          certs.push_back({{"certificateArn", arns().certificate(cert.certificate_id)},
                           {"certificateId", cert.certificate_id},
                           {"status", storage::to_string(cert.status)},
                           {"certificateMode", cert.certificate_mode},
                           {"creationDate", cert.created_at}});
        }
        return Status::ok();
      }));
      json out = {{"certificates", certs}};
      if (!next.empty()) out["nextMarker"] = next;
      return out;
    });
    add("GET", "/endpoint", [this](Call&) -> Result<json> {
      return json{{"endpointAddress", config.mqtt_endpoint}};
    });
  }

  net::HttpResponse handle(const net::HttpRequest& req) {
    const std::string request_id = crypto::random_uuid();
    if (req.target == "/health" && req.method == "GET") {
      Status st = registry.read([](Txn& t) { return t.store().get_setting("-").status(); });
      if (!st.is_ok()) return {503, "application/json", {}, R"({"status":"unavailable"})"};
      return {200, "application/json", {}, R"({"status":"ok"})"};
    }
    auto secret_of = [this](const std::string& key) -> std::optional<std::string> {
      auto it = config.credentials.find(key);
      if (it == config.credentials.end()) return std::nullopt;
      return it->second;
    };
    if (auto e = verify_sigv4(req, secret_of, config.region, clock.now())) {
      log::warn("api.auth_failed", {{"peer", req.remote_address}, {"error", e->exception}});
      return error_response(403, e->exception, e->message, request_id);
    }
    std::string path = req.target.substr(0, req.target.find('?'));
    std::string raw_query = req.target.find('?') == std::string::npos
                                ? ""
                                : req.target.substr(req.target.find('?') + 1);
    bool path_matched = false;
    for (const Route& r : routes) {
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
        call.body = json::parse(req.body, nullptr, false);
        if (call.body.is_discarded() || !call.body.is_object())
          return error_response(400, "SerializationException",
                                "the request body is not a JSON object", request_id);
      }
      Result<json> out = r.handler(call);
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
