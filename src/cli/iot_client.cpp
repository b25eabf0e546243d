#include "cli/iot_client.h"

#include "api/sigv4.h"
#include "base/clock.h"
#include "net/http_client.h"
#include "net/http_server.h"

namespace fk::cli {
namespace {

// The AWS exception names as ErrorCodes (the inverse of aws_exception_name).
ErrorCode code_of(std::string_view type, int http_status) {
  for (int i = static_cast<int>(ErrorCode::kInvalidRequest);
       i <= static_cast<int>(ErrorCode::kInternal); ++i) {
    auto code = static_cast<ErrorCode>(i);
    if (aws_exception_name(code) == type) return code;
  }
  if (http_status == 403 || http_status == 401) return ErrorCode::kUnauthorized;
  if (http_status == 404) return ErrorCode::kNotFound;
  if (http_status == 409) return ErrorCode::kAlreadyExists;
  if (http_status >= 500) return ErrorCode::kUnavailable;
  return ErrorCode::kInvalidRequest;
}

}  // namespace

std::string encode(std::string_view s) {
  return api::uri_encode(s, false);
}

IotClient::IotClient(Connection c, std::unique_ptr<net::HttpClient> http)
    : connection_(std::move(c)), http_(std::move(http)) {}
IotClient::~IotClient() = default;

Result<std::unique_ptr<IotClient>> IotClient::create(const Connection& connection) {
  FK_ASSIGN_OR_RETURN(auto http,
                      net::HttpClient::create(connection.endpoint_url, std::chrono::seconds(60),
                                              connection.ca_bundle));
  return std::unique_ptr<IotClient>(new IotClient(connection, std::move(http)));
}

Result<json> IotClient::call(const std::string& method, const std::string& target, const json& body,
                             const std::vector<std::pair<std::string, std::string>>& headers) {
  net::HttpRequest req;
  req.method = method;
  req.target = target;
  if (!body.is_null()) {
    req.body = body.dump();
    req.headers.emplace_back("content-type", "application/json");
  }
  req.headers.emplace_back("host", http_->host_header());
  for (const auto& h : headers) req.headers.push_back(h);
  api::sign_sigv4(req, connection_.access_key_id, connection_.secret_access_key, connection_.region,
                  SystemClock::instance().now());
  net::HttpHeaders send;
  for (const auto& [k, v] : req.headers)
    if (k != "host") send.emplace_back(k, v);
  send.emplace_back("user-agent", "fleetkey-cli/1");
  auto res = http_->send(method, target, send, req.body);
  if (!res.is_ok())
    return Status{ErrorCode::kUnavailable, "cannot reach fleetkeyd at " + connection_.endpoint_url +
                                               ": " + res.status().message()};
  json reply = res->body.empty() ? json::object() : json::parse(res->body, nullptr, false);
  if (res->status >= 200 && res->status < 300) {
    if (reply.is_discarded())
      return Status{ErrorCode::kInternal, "fleetkeyd answered " + method + " " + target +
                                              " with a body that is not JSON"};
    return reply;
  }
  std::string type = res->header("x-amzn-errortype");
  type = type.substr(0, type.find(':'));
  std::string message = reply.is_object() ? reply.value("message", std::string()) : "";
  if (message.empty()) message = "HTTP " + std::to_string(res->status);
  ErrorCode code = code_of(type, res->status);
  if (res->status == 403) message += " (credentials from " + connection_.credentials_source + ")";
  return Status{code, message};
}

Result<std::vector<json>> IotClient::list_all(const std::string& path,
                                              const std::string& items_member,
                                              const std::string& size_param) {
  std::vector<json> out;
  std::string marker_param, marker;
  for (;;) {
    std::string target = path + (path.find('?') == std::string::npos ? "?" : "&");
    target += marker.empty() ? "" : marker_param + "=" + encode(marker) + "&";
    target += size_param + "=250";
    FK_ASSIGN_OR_RETURN(json page, call("GET", target));
    if (page.contains(items_member) && page[items_member].is_array())
      for (auto& item : page[items_member]) out.push_back(std::move(item));
    if (page.contains("nextMarker") && page["nextMarker"].is_string()) {
      marker_param = "marker";
      marker = page["nextMarker"];
    } else if (page.contains("nextToken") && page["nextToken"].is_string()) {
      marker_param = "nextToken";
      marker = page["nextToken"];
    } else {
      return out;
    }
  }
}

}  // namespace fk::cli
