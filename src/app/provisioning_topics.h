// ProvisioningTopics: the broker's ReservedTopicHandler for the fleet provisioning topics and
// fleetkey's certificate rotation topic ($fleetkey/certificates/rotate/...).
// Requests run on a worker pool (signing, key generation and commits stay off the broker's
// I/O threads), served fairly claim by claim from bounded queues; each reply goes back to the
// connection that asked (the broker delivers it only to a matching subscription it holds, and
// checks iot:Receive).
#pragma once

#include <chrono>
#include <memory>

#include "broker/reserved_topic_handler.h"
#include "provisioning/fleet_provisioning.h"
#include "provisioning/rotation.h"

namespace fk::app {

// The pre-provisioning hook over HTTP(S), with the configured deadline.
class WebhookHook : public provisioning::PreProvisioningHook {
 public:
  explicit WebhookHook(std::chrono::milliseconds timeout) : timeout_(timeout) {}
  Result<std::string> call(const std::string& target, const std::string& input_json) override;

 private:
  std::chrono::milliseconds timeout_;
};

// Requests waiting for a worker: in all, and per claim certificate. Past either, a request is
// answered Throttled (429) at once instead of waiting.
struct ProvisioningQueueLimits {
  std::size_t max_queued = 1024;
  std::size_t max_queued_per_claim = 256;
};

class ProvisioningTopics : public broker::ReservedTopicHandler {
 public:
  // `rotation` null: no rotation topic.
  ProvisioningTopics(provisioning::FleetProvisioning& service, std::size_t workers,
                     ProvisioningQueueLimits limits = {},
                     provisioning::CertificateRotation* rotation = nullptr);
  ~ProvisioningTopics() override;

  bool handles(std::string_view topic) const override;
  void on_request(const broker::ClientIdentity& client, const broker::Message& request,
                  Reply reply) override;
  // Finishes the requests in flight (call before the broker stops).
  void stop();
  // Runs `fn` on the worker pool (the hourly sweep of unclaimed certificates).
  void run(std::function<void()> fn);

 private:
  void on_rotation(provisioning::Format format, const broker::ClientIdentity& client,
                   const broker::Message& request, Reply reply);

  provisioning::FleetProvisioning& service_;
  provisioning::CertificateRotation* rotation_;
  struct Pool;
  std::unique_ptr<Pool> pool_;
};

}  // namespace fk::app
