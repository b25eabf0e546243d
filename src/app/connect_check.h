// RegistryConnectCheck: the broker's connect decision until IoT policies arrive: the client
// certificate must be registered and ACTIVE, and so must the CA it was registered under.
// Registry reads run on a small worker pool, never on the broker's I/O threads.
#pragma once

#include <memory>

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

 private:
  registry::Registry& registry_;
  struct Pool;
  std::unique_ptr<Pool> pool_;
};

}  // namespace fk::app
