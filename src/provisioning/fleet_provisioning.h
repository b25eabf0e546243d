// FleetProvisioning: the fleet provisioning MQTT API's server side (CreateKeysAndCertificate,
// CreateCertificateFromCsr, RegisterThing) over the registry and the CA.
//
// handle() takes one request published by a claim connection and returns the one reply for
// it (the /accepted or /rejected topic and payload, in the request's format). It blocks: it
// signs, generates keys and commits to the registry, so callers run it off the broker's I/O
// threads. An accepted reply is returned only after the registry change is durable; a
// rejected one leaves nothing stored and says why (statusCode, errorCode, errorMessage).
//
// Certificates made here start PENDING_ACTIVATION; the ownership token binds them to the
// claim certificate that asked, expires after an hour and works once. sweep() deletes the
// certificates nobody provisioned within the hour.
//
// fleetkey's lock-down (on by default, where AWS leaves it to a Lambda): RegisterThing refuses
// a thing that already exists, and each claim certificate may make at most
// `max_requests_per_second` requests (a burst of twice that), of which at most
// `max_server_keys_per_second` CreateKeysAndCertificate (server-made RSA keys cost ~100x a CSR
// signature: one claim must not take the machine's key-generation capacity).
//
// Thread-safety: every method may be called concurrently.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "base/clock.h"
#include "base/device_events.h"
#include "base/metrics.h"
#include "provisioning/messages.h"
#include "provisioning/ownership_token.h"
#include "provisioning/pre_provisioning_hook.h"
#include "provisioning/provisioning_template.h"
#include "provisioning/rate_limiter.h"
#include "registry/registry.h"

namespace fk::provisioning {

struct FleetProvisioningConfig {
  double max_requests_per_second = 50;    // per claim certificate; 0 = no limit
  double max_server_keys_per_second = 2;  // CreateKeysAndCertificate per claim; 0 = no limit
  // Per connection (claim certificate + client id), before the claim's budget is touched: the
  // claim is in every device's firmware, so one connection flooding must not spend the budget
  // every honest device of the fleet shares. A device needs two requests. 0 = no limit.
  double max_requests_per_client_per_second = 5;
  bool thing_must_not_exist = true;
  crypto::KeySpec server_key = crypto::KeySpec::rsa(2048);  // CreateKeysAndCertificate, as AWS
  // Every answer (accepted, or rejected with its errorCode) goes on the requesting device's
  // timeline (its claim certificate and client id); null: nowhere.
  DeviceEventSink* events = nullptr;
};

struct Requester {
  std::string claim_certificate_id;
  std::string client_id;
};

struct Reply {
  std::string topic;
  std::string payload;
  bool accepted = false;
};

class FleetProvisioning {
 public:
  // Loads (or makes, on first use) the token key kept in the registry.
  // `hook`: the transport for templates with a preProvisioningHook (null: such templates
  // refuse every RegisterThing).
  static Result<std::unique_ptr<FleetProvisioning>> create(registry::Registry& registry,
                                                           const Clock& clock,
                                                           FleetProvisioningConfig config = {},
                                                           PreProvisioningHook* hook = nullptr);

  Reply handle(const RequestTopic& request, std::string_view payload, const Requester& who);
  // handle() in two halves, so that a caller can refuse a flood before queueing it: admit()
  // checks the rate limits (per connection, then per claim) and returns the Throttled reply when
  // one is exceeded; handle_admitted() does the rest.
  std::optional<Reply> admit(const RequestTopic& request, const Requester& who);
  Reply handle_admitted(const RequestTopic& request, std::string_view payload,
                        const Requester& who);
  // The Throttled rejection (429) for a request that was not run (the queue was full).
  Reply throttled(const RequestTopic& request, const Requester& who, std::string why);

  // Deletes PENDING_ACTIVATION certificates older than the token lifetime that were never
  // provisioned; returns how many.
  Result<std::size_t> sweep();

  // Outcomes so far: "RegisterThing.Success", "CreateCertificateFromCsr.Failure.InvalidPayload"...,
  // and by claim certificate and template: "claim.<id>.accepted", "template.<name>.rejected".
  std::map<std::string, std::uint64_t> counters() const;
  // Requests by operation and result, and their durations, for GET /metrics.
  void write_metrics(metrics::Exposition& out) const;

 private:
  FleetProvisioning(registry::Registry& registry, const Clock& clock,
                    FleetProvisioningConfig config, std::string key, PreProvisioningHook* hook);
  Reply create_keys(const RequestTopic& r, std::string_view payload, const Requester& who);
  Reply create_from_csr(const RequestTopic& r, std::string_view payload, const Requester& who);
  Reply register_thing(const RequestTopic& r, std::string_view payload, const Requester& who);
  Reply reject(const RequestTopic& r, const Requester& who, int status, std::string code,
               std::string message);
  Reply accept(const RequestTopic& r, const Requester& who, std::string payload,
               std::string detail);
  void record(const Requester& who, const char* event, std::string reason, std::string detail,
              std::string thing = {});
  // "claim.<certificateId>.accepted|rejected" and "template.<name>.accepted|rejected" (the
  // console's counters; not Prometheus series, whose labels must stay few).
  void count_by_source(const RequestTopic& r, const Requester& who, bool accepted);
  static constexpr std::size_t kMaxCounters = 10'000;
  void count(const RequestTopic& r, const std::string& outcome);

  registry::Registry& registry_;
  const Clock& clock_;
  const FleetProvisioningConfig config_;
  const OwnershipTokens tokens_;
  PreProvisioningHook* const hook_;

  mutable std::mutex mu_;
  std::map<std::string, std::uint64_t> counters_;
  metrics::LabeledHistogram durations_{{"operation"}};
  KeyedRateLimiter claim_rate_;   // requests per claim certificate
  KeyedRateLimiter keygen_rate_;  // CreateKeysAndCertificate per claim certificate
  KeyedRateLimiter client_rate_;  // requests per connection of a claim
  // Parsed templates by name and version.
  std::map<std::pair<std::string, std::int64_t>, std::shared_ptr<const ProvisioningTemplate>>
      templates_;
};

}  // namespace fk::provisioning
