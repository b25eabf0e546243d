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

Result<std::string> WebhookHook::call(const std::string& target, const std::string& input_json) {
  FK_ASSIGN_OR_RETURN(auto response, net::http_post(target, input_json, timeout_));
  if (response.status < 200 || response.status > 299)
    return Status{ErrorCode::kUnavailable, "it answered HTTP " + std::to_string(response.status)};
  return response.body;
}

// Worker threads that take requests claim by claim in rotation: each claim certificate has its
// own FIFO queue, and a worker that frees up serves the next claim with work waiting, so a claim
// that floods (server-made RSA keys cost ~200 ms each) delays another claim's request by at
// most one request per worker, not by its whole backlog. The queues are bounded: past them a
// request is answered Throttled at once.
struct ProvisioningTopics::Pool {
  Pool(std::size_t workers, ProvisioningQueueLimits l) : limits(l) {
    for (std::size_t i = 0; i < workers; ++i) threads.emplace_back([this] { work(); });
  }

  struct Queue {
    std::deque<std::function<void()>> jobs;
  };

  // False when the claim's queue or the whole queue is full.
  bool push(const std::string& claim, std::function<void()> job, std::string& why) {
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
    Queue& q = queues[claim];
    if (q.jobs.size() >= limits.max_queued_per_claim) {
      why = "claim certificate " + claim + " has " + std::to_string(q.jobs.size()) +
            " requests waiting (at most " + std::to_string(limits.max_queued_per_claim) +
            "); retry with backoff";
      return false;
    }
    if (q.jobs.empty()) ready.push_back(claim);
    q.jobs.push_back(std::move(job));
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
        job = std::move(it->second.jobs.front());
        it->second.jobs.pop_front();
        --queued;
        if (it->second.jobs.empty()) {
          queues.erase(it);
        } else {
          ready.push_back(std::move(claim));  // its next request waits for its turn
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
  std::unordered_map<std::string, Queue> queues;  // claim certificate id -> its requests
  std::deque<std::string> ready;                  // claims with requests, in serving order
  std::size_t queued = 0;
  bool stopping = false;
  std::vector<std::thread> threads;
};

ProvisioningTopics::ProvisioningTopics(provisioning::FleetProvisioning& service,
                                       std::size_t workers, ProvisioningQueueLimits limits)
    : service_(service), pool_(std::make_unique<Pool>(workers, limits)) {}

ProvisioningTopics::~ProvisioningTopics() {
  stop();
}

void ProvisioningTopics::stop() {
  pool_->stop();
}

void ProvisioningTopics::run(std::function<void()> fn) {
  std::string why;
  if (!pool_->push("", std::move(fn), why))  // "" = fleetkeyd's own work (the sweep)
    log::warn("provisioning.internal_job_skipped", {{"reason", why}});
}

bool ProvisioningTopics::handles(std::string_view topic) const {
  return provisioning::parse_request_topic(topic).has_value();
}

void ProvisioningTopics::on_request(const broker::ClientIdentity& client,
                                    const broker::Message& request, Reply reply) {
  auto topic = provisioning::parse_request_topic(request.topic);
  if (!topic) return;
  provisioning::Requester who{client.certificate.certificate_id, client.client_id};
  auto send = [reply](provisioning::Reply r) {
    broker::Message m;
    m.topic = std::move(r.topic);
    m.payload = std::move(r.payload);
    m.qos = 1;
    reply(std::move(m));
  };
  std::string why;
  auto job = [this, t = *topic, payload = request.payload, who, send] {
    send(service_.handle(t, payload, who));
  };
  if (!pool_->push(who.claim_certificate_id, std::move(job), why)) {
    log::warn("provisioning.throttled",
              {{"client", who.client_id}, {"claim", who.claim_certificate_id}, {"reason", why}});
    send(service_.throttled(*topic, who, why));
  }
}

}  // namespace fk::app
