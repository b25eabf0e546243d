// PolicyAuthorizer: the broker's Authorizer backed by the registry and the IoT policy engine.
//
// Connect: the client certificate must be registered and ACTIVE (and so must the CA it was
// registered under), and the policies that apply to it (registry/effective_policies.h) must
// allow iot:Connect on client/<clientId>. The connection then gets Permissions that answer
// iot:Publish, iot:RetainPublish, iot:Subscribe and iot:Receive from a policy::Grant bound to
// it (variables substituted, conditions decided), without touching the registry.
//
// Changes: the registry's events (policy, default version, attachment, thing, group, principal,
// certificate, CA) name what changed; on_registry_events() drops the cached facts they touch
// and rebinds the Permissions of every live connection they affect, off the I/O threads, within
// milliseconds (AWS takes 6-8 minutes). Each denial carries the action, the resource, the
// principal and the statement that decided (or "no statement allowed it").
//
// `enforce_policies = false` keeps only the certificate check (everything is allowed once
// connected): for benchmarks of the broker with authorization off.
//
// Thread-safety: every method may be called from any thread. Registry reads run on a small
// worker pool; rebinds run one at a time in event order.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "broker/authorizer.h"
#include "provisioning/just_in_time.h"
#include "provisioning/rotation.h"
#include "registry/effective_policies.h"
#include "registry/registry.h"

namespace fk::app {

class PolicyAuthorizer : public broker::Authorizer {
 public:
  PolicyAuthorizer(registry::Registry& registry, bool enforce_policies = true,
                   std::size_t workers = 2);
  ~PolicyAuthorizer() override;

  void authorize_connect(const broker::ClientIdentity& client,
                         std::function<void(broker::ConnectDecision)> done) override;

  // The decision itself, synchronously (reads the registry; used by authorize_connect on a
  // worker, and by tests).
  broker::ConnectDecision decide(const broker::ClientIdentity& client);

  // The decision for a connect with this registered certificate and client id as if it came
  // now, read afresh and without side effects (no just-in-time registration, no rotation
  // completed, nothing cached): for `fleetkey diagnose`.
  broker::AuthDecision explain_connect(const std::string& certificate_id,
                                       const std::string& client_id);

  // A gate on new connects, asked before any decision (cached or read): a reason to refuse
  // them all (e.g. the node has lost the shared registry and would decide from stale facts),
  // or nothing. Set once, before connections arrive.
  void set_connect_gate(std::function<std::optional<std::string>()> gate) {
    gate_ = std::move(gate);
  }

  // A certificate the registry does not know goes through just-in-time registration (JITR or
  // JITP, when a registered CA that allows it signed it) before it is refused. Set once, before
  // connections arrive; null: none.
  void set_just_in_time(provisioning::JustInTime* jit) { just_in_time_ = jit; }
  // The first allowed connect with a rotated certificate completes its rotation (the old
  // certificate becomes INACTIVE). Set once, before connections arrive; null: none.
  void set_rotation(provisioning::CertificateRotation* rotation) { rotation_ = rotation; }

  // What fleetkeyd's registry listener calls after each commit.
  void on_registry_events(const std::vector<registry::RegistryEvent>& events);

  // Finishes the decisions under way and makes no more (server shutdown, before the broker and
  // the just-in-time registration go).
  void stop();

  // Waits until every rebind queued so far has been applied (tests).
  void wait_for_rebinds();
  std::size_t cached() const;
  std::size_t live_connections() const;
  std::size_t live_entries() const;  // (certificate, client id) pairs tracked for rebinds

  class ConnectionPermissions;  // one per connection (defined in the .cpp)

 private:
  std::function<std::optional<std::string>()> gate_;
  provisioning::JustInTime* just_in_time_ = nullptr;
  provisioning::CertificateRotation* rotation_ = nullptr;
  struct Facts;
  using FactsPtr = std::shared_ptr<const Facts>;
  using Key = std::pair<std::string, std::string>;  // certificate id, client id

  // `peer`: the connecting certificate as the TLS layer read it (spares parsing it again).
  Result<FactsPtr> load(const Key& key, const net::PeerCertificate* peer = nullptr);
  FactsPtr cached_facts(const Key& key, std::uint64_t* generation);
  bool affected(const Key& key, const Facts& f, const registry::RegistryEvent& e) const;
  static policy::RequestContext connection_context(const Facts& f, const broker::ClientIdentity& c);
  // The facts' policies, shared with the Grants made from them (kept alive by them).
  static std::shared_ptr<const policy::PolicySet> policies_of(const FactsPtr& f);
  // The cached or live keys an event can concern; nullopt: only a scan of all can tell.
  std::optional<std::set<Key>> candidates(const registry::RegistryEvent& e) const;
  void index(const Key& key);  // by_client_
  void clear_cache();
  void sweep_live();  // with mu_ held
  void rebind(const std::vector<Key>& keys);

  registry::Registry& registry_;
  const bool enforce_;
  // "arn:aws:iot:<region>:<account>:", shared by every connection's permissions and Grant.
  const std::shared_ptr<const std::string> arn_prefix_;
  mutable std::mutex mu_;
  std::uint64_t generation_ = 0;
  std::map<Key, FactsPtr> cache_;  // ordered by certificate id first: ranges per certificate
  // client id -> certificate ids seen with it (keys of cache_ and live_; may hold stale ones).
  // (Most client ids are used with one certificate: one node each, no set per client id.)
  std::unordered_multimap<std::string, std::string> by_client_;
  struct Live {
    FactsPtr facts;      // what the connections were last bound from
    bool stale = false;  // a change hit them: not for new connects until rebound
    std::vector<std::weak_ptr<ConnectionPermissions>> connections;
    // Drops the connections that ended; true when none is left (the entry can go).
    bool forget_ended() {
      std::erase_if(connections, [](const auto& w) { return w.expired(); });
      return connections.empty();
    }
  };
  std::map<Key, Live> live_;
  void retire(std::map<Key, Live>::iterator it, bool stale);  // with mu_ held
  std::size_t live_sweep_at_ = 1024;
  struct Pool;
  std::unique_ptr<Pool> pool_;
};

}  // namespace fk::app
