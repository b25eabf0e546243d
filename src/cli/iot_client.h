// IotClient: fleetkeyd's AWS IoT REST API, signed with SigV4, over one kept-alive connection.
// AWS errors come back as a Status whose code matches the exception (ResourceNotFoundException
// -> kNotFound, ...) and whose message is AWS's; 403s are kUnauthorized; a server that cannot
// be reached is kUnavailable.
//
// Thread-safety: one IotClient per thread.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "cli/settings.h"

namespace fk::net {
class HttpClient;
}

namespace fk::cli {

using nlohmann::json;

// A path segment or query value, percent-encoded.
std::string encode(std::string_view s);

class IotClient {
 public:
  static Result<std::unique_ptr<IotClient>> create(const Connection& connection);
  ~IotClient();

  // `target` is the encoded path and query ("/things/x?maxResults=2"); `body` null for none.
  // `headers` are extra ones (x-amzn-principal). The reply's JSON ({} for an empty body).
  Result<json> call(const std::string& method, const std::string& target,
                    const json& body = nullptr,
                    const std::vector<std::pair<std::string, std::string>>& headers = {});

  // Every item of a paged list operation, 250 per page (nextMarker/nextToken followed).
  // `size_param`: the operation's page size parameter, "pageSize" (marker style) or
  // "maxResults" (token style).
  Result<std::vector<json>> list_all(const std::string& path, const std::string& items_member,
                                     const std::string& size_param);

  const Connection& connection() const { return connection_; }

 private:
  IotClient(Connection c, std::unique_ptr<net::HttpClient> http);
  Connection connection_;
  std::unique_ptr<net::HttpClient> http_;
};

}  // namespace fk::cli
