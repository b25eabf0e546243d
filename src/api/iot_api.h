// IotApi: the AWS IoT control-plane REST API (rest-json, spec section 6) over the registry.
// Each request is checked for a valid SigV4 signature, routed by method and path, and
// answered with AWS's members, statuses and error shape (x-amzn-ErrorType, {"message"},
// x-amzn-RequestId). Registry changes are committed before the 200 is sent.
//
// Thread-safety: handle() may be called concurrently.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "net/http_server.h"
#include "registry/registry.h"

namespace fk::provisioning {
class CertificateRotation;
}

namespace fk::api {

// What the broker would answer a connect now (no side effects), for GET /fleetkey/diagnose.
struct ConnectCheck {
  bool allowed = false;
  std::string cause;   // the refusal's fixed word ("certificate_not_active", "policy_denied")
  std::string reason;  // the sentence, with the deciding statement for a policy refusal
};

// A live MQTT connection on this node.
struct LiveConnectionInfo {
  std::string client_id;
  std::string remote_address;
  std::int64_t connected_at_ms = 0;
};

struct ApiConfig {
  std::string region = "us-east-1";
  std::map<std::string, std::string> credentials;  // access key id -> secret
  std::string mqtt_endpoint;                       // DescribeEndpoint's answer (host)
  std::uint16_t mqtt_port = 8883;
  std::string root_ca_pem;  // what devices trust for the server (GET /fleetkey/root-ca)
  // The CA that signs device certificates (under the root): with it a device can check its
  // own certificate's chain before connecting.
  std::string issuing_ca_pem;
  // Counters for GET /fleetkey/metrics (provisioning outcomes, broker figures).
  std::function<std::map<std::string, std::uint64_t>()> metrics;
  // GET /health (no signature): what the node says of itself besides the registry check
  // ("node", "backend", "eventFeed": "connected" | "disconnected" | "none"); a node whose
  // event feed is disconnected answers 503, as does one that cannot read the registry.
  std::function<std::map<std::string, std::string>()> health;
  // The cluster's nodes for /fleetkey/status (each: "node", "api", "mqttPort", "connections",
  // "seenSecondsAgo"); unset: this node only.
  std::function<std::vector<std::map<std::string, std::string>>()> nodes;
  // Revocation data of the issuing CA (no signature, as CAs publish them): GET /crl (DER),
  // GET /crl.pem, POST /ocsp and GET /ocsp/<base64 request> (RFC 6960 appendix A). Unset: 404.
  std::function<Result<std::string>()> crl;           // DER
  std::function<std::string(std::string_view)> ocsp;  // DER request -> DER response
  // GET /metrics: the Prometheus text (no SigV4); unset: 404. `metrics_token` non-empty: the
  // scrape must bring "Authorization: Bearer <token>"; empty: loopback clients only.
  std::function<std::string()> prometheus;
  std::string metrics_token;
  // POST /fleetkey/certificates/rotate (`fleetkey certs rotate`); null: 404.
  provisioning::CertificateRotation* rotation = nullptr;
  // The device timeline and diagnose (GET /fleetkey/timeline/{name}, /fleetkey/diagnose/{name};
  // docs/timeline.md). flush_timeline: writes the events still queued (an answer includes what
  // just happened); check_connect: the connect decision for (certificate, client id);
  // live_connections: this node's connections of a certificate. Unset: not consulted.
  std::function<void()> flush_timeline;
  std::function<ConnectCheck(const std::string& certificate_id, const std::string& client_id)>
      check_connect;
  std::function<std::vector<LiveConnectionInfo>(const std::string& certificate_id)>
      live_connections;
  // The web console (/console/; docs/console.md): its session cookie gets Secure (the API is
  // served over TLS).
  bool console_secure_cookie = false;
};

class IotApi {
 public:
  IotApi(registry::Registry& registry, const Clock& clock, ApiConfig config);
  ~IotApi();

  net::HttpResponse handle(const net::HttpRequest& request);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fk::api
