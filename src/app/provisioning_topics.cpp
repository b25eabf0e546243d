#include "app/provisioning_topics.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/log.h"
#include "net/http_client.h"

namespace fk::app {

namespace {

// A provisioning::Reply sent back to the connection that asked (QoS 1).
std::function<void(provisioning::Reply)> sender(broker::ReservedTopicHandler::Reply reply) {
  return [reply = std::move(reply)](provisioning::Reply r) {
    broker::Message m;
    m.topic = std::move(r.topic);
    m.payload = std::move(r.payload);
    m.qos = 1;
    reply(std::move(m));
  };
}

}  // namespace

Result<std::string> WebhookHook::call(const std::string& target, const std::string& input_json) {
  FK_ASSIGN_OR_RETURN(auto response, net::http_post(target, input_json, timeout_));
  if (response.status < 200 || response.status > 299)
    return Status{ErrorCode::kUnavailable, "it answered HTTP " + std::to_string(response.status)};
  return response.body;
}

// Worker threads that take requests in rotation, claim by claim and, within a claim, connection
// by connection: each (claim, client id) has its own FIFO queue, each claim its ring of those,
// and a worker that frees up serves the next claim with work waiting, taking that claim's next
// connection in turn. So a claim that floods (server-made RSA keys cost ~200 ms each) delays
// another claim's request by at most one request per worker, and one device flooding with the
// fleet's shared claim delays the other devices of that claim by as little. The queues are
// bounded (in all and per claim): past them a request is answered Throttled at once.
struct ProvisioningTopics::Pool {
  Pool(std::size_t workers, ProvisioningQueueLimits l) : limits(l) {
    for (std::size_t i = 0; i < workers; ++i) threads.emplace_back([this] { work(); });
  }

  struct Claim {
    std::unordered_map<std::string, std::deque<std::function<void()>>> by_client;
    std::deque<std::string> ready;  // clients with requests, in serving order
    std::size_t queued = 0;
  };

  // False when the claim's queue or the whole queue is full.
  bool push(const std::string& claim, const std::string& client, std::function<void()> job,
            std::string& why) {
    std::lock_guard<std::mutex> lock(mu);
    if (stopping) {
      why = "fleetkeyd is stopping";
      return false;
    }
    if (queued >= limits.max_queued) {
      why = "the provisioning queue is full (" + std::to_string(limits.max_queued) +
            " requests waiting); retry with backoff";
      return false;
    }
    Claim& c = queues[claim];
    if (c.queued >= limits.max_queued_per_claim) {
      why = "claim certificate " + claim + " has " + std::to_string(c.queued) +
            " requests waiting (at most " + std::to_string(limits.max_queued_per_claim) +
            "); retry with backoff";
      return false;
    }
    if (c.queued == 0) ready.push_back(claim);
    auto& jobs = c.by_client[client];
    if (jobs.empty()) c.ready.push_back(client);
    jobs.push_back(std::move(job));
    ++c.queued;
    ++queued;
    cv.notify_one();
    return true;
  }

  void work() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [this] { return stopping || !ready.empty(); });
        if (ready.empty()) return;  // stopping, and every queued request is done
        std::string claim = std::move(ready.front());
        ready.pop_front();
        auto it = queues.find(claim);
        Claim& c = it->second;
        std::string client = std::move(c.ready.front());
        c.ready.pop_front();
        auto jobs = c.by_client.find(client);
        job = std::move(jobs->second.front());
        jobs->second.pop_front();
        --c.queued;
        --queued;
        if (jobs->second.empty()) {
          c.by_client.erase(jobs);
        } else {
          c.ready.push_back(std::move(client));  // its next request waits for its turn
        }
        if (c.queued == 0) {
          queues.erase(it);
        } else {
          ready.push_back(std::move(claim));
        }
      }
      job();
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (stopping) return;
      stopping = true;
    }
    cv.notify_all();
    for (auto& t : threads) t.join();
  }

  ProvisioningQueueLimits limits;
  std::mutex mu;
  std::condition_variable cv;
  std::unordered_map<std::string, Claim> queues;  // claim certificate id -> its requests
  std::deque<std::string> ready;                  // claims with requests, in serving order
  std::size_t queued = 0;
  bool stopping = false;
  std::vector<std::thread> threads;
};

ProvisioningTopics::ProvisioningTopics(provisioning::FleetProvisioning& service,
                                       std::size_t workers, ProvisioningQueueLimits limits,
                                       provisioning::CertificateRotation* rotation)
    : service_(service), rotation_(rotation), pool_(std::make_unique<Pool>(workers, limits)) {}

ProvisioningTopics::~ProvisioningTopics() {
  stop();
}

void ProvisioningTopics::stop() {
  pool_->stop();
}

void ProvisioningTopics::run(std::function<void()> fn) {
  std::string why;
  if (!pool_->push("", "", std::move(fn), why))  // "" = fleetkeyd's own work (the sweep)
    log::warn("provisioning.internal_job_skipped", {{"reason", why}});
}

bool ProvisioningTopics::handles(std::string_view topic) const {
  if (rotation_ && provisioning::parse_rotation_topic(topic)) return true;
  return provisioning::parse_request_topic(topic).has_value();
}

void ProvisioningTopics::on_request(const broker::ClientIdentity& client,
                                    const broker::Message& request, Reply reply) {
  if (auto format = provisioning::parse_rotation_topic(request.topic); format && rotation_) {
    on_rotation(*format, client, request, std::move(reply));
    return;
  }
  auto topic = provisioning::parse_request_topic(request.topic);
  if (!topic) return;
  provisioning::Requester who{client.certificate().certificate_id, client.client_id};
  auto send = sender(std::move(reply));
  // A flood is refused here, on the I/O thread, before it takes a place in the queue.
  if (auto throttled = service_.admit(*topic, who)) {
    send(std::move(*throttled));
    return;
  }
  std::string why;
  auto job = [this, t = *topic, payload = request.payload, who, send] {
    // What the request changes is made by the device with this claim.
    registry::ActorScope actor("claim certificate " + who.claim_certificate_id + " (client " +
                               who.client_id + ")");
    send(service_.handle_admitted(t, payload, who));
  };
  if (!pool_->push(who.claim_certificate_id, who.client_id, std::move(job), why)) {
    log::warn("provisioning.throttled",
              {{"client", who.client_id}, {"claim", who.claim_certificate_id}, {"reason", why}});
    send(service_.throttled(*topic, who, why));
  }
}

// Rotation requests share the workers and their fair queue, keyed by the requesting
// certificate (as provisioning requests are by claim).
void ProvisioningTopics::on_rotation(provisioning::Format format,
                                     const broker::ClientIdentity& client,
                                     const broker::Message& request, Reply reply) {
  provisioning::Requester who{client.certificate().certificate_id, client.client_id};
  auto send = sender(std::move(reply));
  if (auto throttled = rotation_->admit(format, who)) {
    send(std::move(*throttled));
    return;
  }
  std::string why;
  auto job = [this, format, payload = request.payload, who, send] {
    registry::ActorScope actor("certificate " + who.claim_certificate_id + " (rotation, client " +
                               who.client_id + ")");
    send(rotation_->handle_admitted(format, payload, who));
  };
  if (!pool_->push(who.claim_certificate_id, who.client_id, std::move(job), why))
    send(rotation_->throttled(format, why));
}

}  // namespace fk::app
