// The API's routing table and request helpers, shared by the route files (one per area:
// certificates, policies, things). Internal to src/api.
#pragma once

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "api/iot_api.h"
#include "base/status.h"
#include "net/http_server.h"
#include "registry/registry.h"

namespace fk::api {

using nlohmann::json;

// One request, parsed: path labels, query parameters, JSON body.
struct Call {
  const net::HttpRequest& http;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> query;
  json body;

  std::optional<std::string> q(const std::string& k) const;
  Result<bool> q_bool(const std::string& k, bool fallback) const;
  // A required / optional string member of the body.
  Result<std::string> member(const std::string& name) const;
  Result<std::optional<std::string>> optional_member(const std::string& name) const;
  Result<bool> bool_member(const std::string& name, bool fallback) const;
};

// A body member that is a list of strings (absent: empty, unless required).
Result<std::vector<std::string>> string_list_member(const Call& c, const std::string& name,
                                                    bool required);
// AWS's name for a route's operation ("UpdateCertificate"), as CloudTrail logs it; fleetkey's
// own routes are "METHOD /route" ("POST /fleetkey/certificates/rotate").
std::string operation_name(std::string_view method, std::string_view route_path);

// An optional integer query parameter in [min, max] (absent: fallback).
Result<std::int64_t> int_param(const Call& c, const char* name, std::int64_t fallback,
                               std::int64_t min, std::int64_t max);
// A path label that must be a version number ("policyVersionId", "versionId").
Result<std::int64_t> integer_label(const Call& c, const std::string& name);
// At most `size` names as a JSON list; `*next` = the last one when more were read.
json names_page(std::vector<std::string> names, std::size_t size, std::string* next);

// AWS's validation error for a member ("Member must be ...").
Status bad_member(const std::string& name, const std::string& constraint);

// Both pagination styles: query (marker, pageSize) or (nextToken, maxResults), 1..250.
struct PageRequest {
  std::string after;
  std::size_t size = 25;
};
Result<PageRequest> page_request(const Call& c, const std::string& token_name,
                                 const std::string& size_name);

using Handler = std::function<Result<json>(Call&)>;

struct Route {
  std::string method;
  std::string path;  // the template ("/things/{thingName}"): with the method, the audit log's
                     // operation
  std::regex pattern;
  std::vector<std::string> label_names;
  Handler handler;
};

// What route handlers work with.
struct ApiContext {
  registry::Registry& registry;
  const Clock& clock;
  ApiConfig config;
  const registry::ArnScope& arns() const { return registry.config().arns; }
};

class RouteTable {
 public:
  // `path` with {labels}: "/certificates/{certificateId}".
  void add(const std::string& method, const std::string& path, Handler h);
  const std::vector<Route>& routes() const { return routes_; }

 private:
  std::vector<Route> routes_;
};

void add_certificate_routes(RouteTable& t, ApiContext& ctx);
void add_policy_routes(RouteTable& t, ApiContext& ctx);
void add_thing_routes(RouteTable& t, ApiContext& ctx);
void add_template_routes(RouteTable& t, ApiContext& ctx);
void add_fleetkey_routes(RouteTable& t, ApiContext& ctx);
void add_type_and_group_routes(RouteTable& t, ApiContext& ctx);
void add_ca_routes(RouteTable& t, ApiContext& ctx);
void add_register_routes(RouteTable& t, ApiContext& ctx);
void add_device_routes(RouteTable& t, ApiContext& ctx);

}  // namespace fk::api
