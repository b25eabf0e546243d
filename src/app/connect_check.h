// RegistryConnectCheck: the broker's connect decision until IoT policies arrive: the client
// certificate must be registered and ACTIVE, and so must the CA it was registered under.
// Registry reads run on a small worker pool, never on the broker's I/O threads; decisions are
// cached per certificate and dropped the moment the registry reports a change (invalidate()),
// so a reconnecting device costs no storage read and a revoked one is refused at once.
#pragma once

#include <memory>
#include <mutex>
#include <unordered_map>

#include "broker/authorizer.h"
#include "registry/registry.h"

namespace fk::app {

class RegistryConnectCheck {
 public:
  explicit RegistryConnectCheck(registry::Registry& registry, std::size_t workers = 2);
  ~RegistryConnectCheck();

  void check(const broker::ClientIdentity& client, std::function<void(broker::AuthDecision)> done);
  // The decision itself (synchronous; used by check() on a worker and by tests).
  broker::AuthDecision decide(const std::string& certificate_id);

  // Registry changes: a certificate's status, or any CA (all).
  void invalidate(const std::string& certificate_id);
  void invalidate_all();
  std::size_t cached() const;

 private:
  // Caches `d` unless the registry changed since `generation`; false = read again.
  bool remember(const std::string& id, const broker::AuthDecision& d, std::uint64_t generation);

  registry::Registry& registry_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, broker::AuthDecision> cache_;
  std::uint64_t generation_ = 0;
  struct Pool;
  std::unique_ptr<Pool> pool_;
};

}  // namespace fk::app
