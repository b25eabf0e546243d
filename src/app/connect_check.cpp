#include "app/connect_check.h"

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

namespace fk::app {

struct RegistryConnectCheck::Pool {
  explicit Pool(std::size_t n) : pool(n) {}
  boost::asio::thread_pool pool;
};

RegistryConnectCheck::RegistryConnectCheck(registry::Registry& registry, std::size_t workers)
    : registry_(registry), pool_(std::make_unique<Pool>(workers)) {}

RegistryConnectCheck::~RegistryConnectCheck() {
  pool_->pool.join();
}

broker::AuthDecision RegistryConnectCheck::decide(const std::string& certificate_id) {
  broker::AuthDecision decision = broker::AuthDecision::deny("registry unavailable");
  Status st = registry_.read([&](registry::Txn& t) -> Status {
    FK_ASSIGN_OR_RETURN(auto cert, t.store().get_certificate(certificate_id));
    if (!cert) {
      decision = broker::AuthDecision::deny("certificate " + certificate_id + " is not registered");
      return Status::ok();
    }
    if (cert->status != storage::CertificateStatus::kActive) {
      decision = broker::AuthDecision::deny("certificate " + certificate_id + " is " +
                                            std::string(storage::to_string(cert->status)));
      return Status::ok();
    }
    if (!cert->ca_certificate_id.empty()) {
      FK_ASSIGN_OR_RETURN(auto ca, t.store().get_ca_certificate(cert->ca_certificate_id));
      if (ca && ca->status != storage::CertificateStatus::kActive) {
        decision = broker::AuthDecision::deny("the CA certificate " + ca->certificate_id + " is " +
                                              std::string(storage::to_string(ca->status)));
        return Status::ok();
      }
    }
    decision = broker::AuthDecision::allow();
    return Status::ok();
  });
  if (!st.is_ok()) decision = broker::AuthDecision::deny("registry error: " + st.message());
  return decision;
}

void RegistryConnectCheck::check(const broker::ClientIdentity& client,
                                 std::function<void(broker::AuthDecision)> done) {
  std::string id = client.certificate.certificate_id;
  std::uint64_t generation;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = cache_.find(id);
    if (it != cache_.end()) {
      broker::AuthDecision d = it->second;
      done(std::move(d));
      return;
    }
    generation = generation_;
  }
  boost::asio::post(pool_->pool, [this, id, generation, done = std::move(done)]() mutable {
    // If the registry changed while it was being read, read again: never answer from a
    // snapshot older than the last change we were told about.
    for (;;) {
      broker::AuthDecision d = decide(id);
      if (remember(id, d, generation)) {
        done(std::move(d));
        return;
      }
      std::lock_guard<std::mutex> lock(mu_);
      generation = generation_;
    }
  });
}

bool RegistryConnectCheck::remember(const std::string& id, const broker::AuthDecision& d,
                                    std::uint64_t generation) {
  std::lock_guard<std::mutex> lock(mu_);
  // A change that arrived while the registry was being read makes the answer stale.
  if (generation != generation_) return false;
  if (cache_.size() >= 1'000'000) cache_.clear();
  cache_[id] = d;
  return true;
}

void RegistryConnectCheck::invalidate(const std::string& certificate_id) {
  std::lock_guard<std::mutex> lock(mu_);
  ++generation_;
  cache_.erase(certificate_id);
}

void RegistryConnectCheck::invalidate_all() {
  std::lock_guard<std::mutex> lock(mu_);
  ++generation_;
  cache_.clear();
}

std::size_t RegistryConnectCheck::cached() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cache_.size();
}

}  // namespace fk::app
