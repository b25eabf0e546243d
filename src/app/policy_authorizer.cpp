#include "app/policy_authorizer.h"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <future>

#include "base/log.h"

namespace fk::app {

using broker::AuthDecision;
using policy::MqttAction;

struct PolicyAuthorizer::Pool {
  explicit Pool(std::size_t n) : pool(n), rebinds(boost::asio::make_strand(pool)) {}
  boost::asio::thread_pool pool;
  boost::asio::strand<boost::asio::thread_pool::executor_type> rebinds;
};

// What the registry says about a certificate used with a client id (its key holds both ids).
// Only what differs between keys is kept, once per key: one is held for every connected device.
struct PolicyAuthorizer::Facts {
  AuthDecision certificate;               // the certificate (and its CA) is ACTIVE, or why not
  policy::PolicySet policies;             // default versions, documents shared
  std::vector<std::string> policy_names;  // sorted: which policy changes concern this key
  std::vector<std::string> group_names;   // sorted: the thing's groups and their ancestors
  std::shared_ptr<const policy::ThingFacts> thing;  // null: the client id names no thing
  std::optional<bool> thing_is_attached;
  // The registry does not know the certificate (just-in-time registration may apply).
  bool unregistered = false;
  // The certificate is the new one of a rotation its first connect completes.
  bool completes_rotation = false;
  // The certificate's facts as stored, only when no connection brought them (a rebind reads
  // the registry; each connection then uses its own certificate's).
  std::shared_ptr<const policy::CertificateFacts> stored_certificate;

  static bool has(const std::vector<std::string>& sorted, const std::string& name) {
    return std::binary_search(sorted.begin(), sorted.end(), name);
  }
};

namespace {

// The identity a connection's permissions keep: without the certificate's DER (only the
// connect decision reads it).
broker::ClientIdentity kept(const broker::ClientIdentity& client) {
  broker::ClientIdentity copy = client;
  copy.certificate_der = std::string();
  return copy;
}

// Facts cached for (certificate, client id) pairs, live or not. A certificate whose policy
// allows any client id can connect with endless new ids: past this many entries the cache
// starts again (live connections keep theirs). About 1-2 KB each, policy documents shared.
constexpr std::size_t kMaxCachedFacts = 100'000;

// "arn:aws:iot:...:cert/<id>" -> "<id>" (empty for any other ARN).
std::string_view certificate_in_arn(std::string_view arn) {
  const auto p = arn.rfind(":cert/");
  return p == std::string_view::npos ? std::string_view() : arn.substr(p + 6);
}

// "203.0.113.7:50012" / "[::1]:50012" -> the address alone (aws:SourceIp).
std::string source_ip(const std::string& remote) {
  if (!remote.empty() && remote[0] == '[') {
    auto end = remote.find(']');
    return end == std::string::npos ? remote : remote.substr(1, end - 1);
  }
  auto colon = remote.rfind(':');
  if (colon != std::string::npos && remote.find(':') == colon) return remote.substr(0, colon);
  return remote;
}

policy::CertificateFacts certificate_facts(const net::PeerCertificate& p) {
  return policy::CertificateFacts{p.subject_fields, p.issuer_fields(), p.subject_alt_names,
                                  p.issuer_alt_names(), p.serial_hex};
}

}  // namespace

// The request's context: the cached facts, and the connection's own certificate (shared with
// the connection rather than kept again in every cached entry).
policy::RequestContext PolicyAuthorizer::connection_context(const Facts& f,
                                                            const broker::ClientIdentity& c) {
  policy::RequestContext ctx;
  if (f.thing) ctx.thing = *f.thing;
  ctx.thing_is_attached = f.thing_is_attached;
  // The facts are keyed by this connection's certificate id: its certificate is theirs.
  if (c.peer) {
    ctx.certificate = certificate_facts(*c.peer);
  } else if (f.stored_certificate) {
    ctx.certificate = *f.stored_certificate;
  }
  ctx.client_id = c.client_id;
  ctx.source_ip = source_ip(c.remote_address);
  std::vector<std::string> attrs;
  if (c.persistent_connect) attrs.emplace_back("PersistentConnect");
  if (c.last_will) attrs.emplace_back("LastWill");
  ctx.connect_attributes = std::move(attrs);
  return ctx;
}

// One connection's answers. The bound Grant is swapped atomically when a change rebinds it.
class PolicyAuthorizer::ConnectionPermissions : public broker::Permissions {
 public:
  ConnectionPermissions(broker::ClientIdentity client,
                        std::shared_ptr<const std::string> arn_prefix, bool enforce)
      : client_(std::move(client)), prefix_(std::move(arn_prefix)), enforce_(enforce) {}

  const broker::ClientIdentity& client() const { return client_; }
  // Readers use the current Grant without a reference count (it is on the path of every
  // message); earlier Grants stay alive until the connection ends, so a reader that loaded one
  // just before a rebind is never left with a dangling pointer. Rebinds are rare (a policy,
  // attachment or thing change that concerns this connection).
  void bind(std::shared_ptr<const policy::Grant> grant) {
    static std::mutex mu;  // binds are rare: one lock for all connections
    std::lock_guard<std::mutex> lock(mu);
    current_.store(grant.get(), std::memory_order_release);
    if (grant_) earlier_.push_back(std::move(grant_));
    grant_ = std::move(grant);
  }

  policy::Verdict check(MqttAction a, std::string_view kind, std::string_view name) const {
    const policy::Grant* g = current_.load(std::memory_order_acquire);
    if (!g) return {};
    return g->check(a, resource(kind, name));
  }

  AuthDecision publish(std::string_view topic, bool retain) const override {
    if (!enforce_) return AuthDecision::allow();
    const policy::Grant* g = current_.load(std::memory_order_acquire);
    if (!g || !g->allows(MqttAction::kPublish, resource("topic/", topic)))
      return deny(MqttAction::kPublish, "topic/", topic);
    if (retain && !g->allows(MqttAction::kRetainPublish, resource("topic/", topic)))
      return deny(MqttAction::kRetainPublish, "topic/", topic);
    return AuthDecision::allow();
  }
  AuthDecision subscribe(std::string_view filter) const override {
    if (!enforce_) return AuthDecision::allow();
    const policy::Grant* g = current_.load(std::memory_order_acquire);
    if (!g || !g->allows(MqttAction::kSubscribe, resource("topicfilter/", filter)))
      return deny(MqttAction::kSubscribe, "topicfilter/", filter);
    return AuthDecision::allow();
  }
  AuthDecision receive(std::string_view topic) const override {
    if (!enforce_) return AuthDecision::allow();
    const policy::Grant* g = current_.load(std::memory_order_acquire);
    if (!g || !g->allows(MqttAction::kReceive, resource("topic/", topic)))
      return deny(MqttAction::kReceive, "topic/", topic);
    return AuthDecision::allow();
  }

 private:
  // The ARN in a per-thread buffer: no allocation on the publish path once warm.
  const std::string& resource(std::string_view kind, std::string_view name) const {
    thread_local std::string buffer;
    buffer.assign(*prefix_);
    buffer.append(kind);
    buffer.append(name);
    return buffer;
  }

  AuthDecision deny(MqttAction a, std::string_view kind, std::string_view name) const {
    policy::Verdict v = check(a, kind, name);
    std::string why = std::string(policy::action_name(a)) + " on " + std::string(kind) +
                      std::string(name) + " for certificate " +
                      client_.certificate().certificate_id + " (client " + client_.client_id +
                      "): " + v.explain();
    return AuthDecision::deny(std::move(why));
  }

  const broker::ClientIdentity client_;
  const std::shared_ptr<const std::string> prefix_;  // the authorizer's, shared
  const bool enforce_;
  std::atomic<const policy::Grant*> current_{nullptr};
  std::shared_ptr<const policy::Grant> grant_;  // the current one
  std::vector<std::shared_ptr<const policy::Grant>> earlier_;
};

std::shared_ptr<const policy::PolicySet> PolicyAuthorizer::policies_of(const FactsPtr& f) {
  return std::shared_ptr<const policy::PolicySet>(f, &f->policies);
}

PolicyAuthorizer::PolicyAuthorizer(registry::Registry& registry, bool enforce_policies,
                                   std::size_t workers)
    : registry_(registry),
      enforce_(enforce_policies),
      arn_prefix_(std::make_shared<const std::string>(registry.config().arns.prefix())),
      pool_(std::make_unique<Pool>(workers)) {}

PolicyAuthorizer::~PolicyAuthorizer() {
  stop();
}

void PolicyAuthorizer::stop() {
  pool_->pool.join();  // a second join does nothing
}

Result<PolicyAuthorizer::FactsPtr> PolicyAuthorizer::load(const Key& key,
                                                          const net::PeerCertificate* peer) {
  auto facts = std::make_shared<Facts>();
  facts->certificate = AuthDecision::deny("registry unavailable", "registry_unavailable");
  Status st = registry_.read([&](registry::Txn& t) -> Status {
    const std::string& id = key.first;
    FK_ASSIGN_OR_RETURN(auto cert, t.store().get_certificate(id));
    if (!cert) {
      facts->certificate =
          AuthDecision::deny("certificate " + id + " is not registered", "certificate_unknown");
      facts->unregistered = true;
      return Status::ok();
    }
    if (cert->status != storage::CertificateStatus::kActive) {
      facts->certificate = AuthDecision::deny(
          "certificate " + id + " is " + std::string(storage::to_string(cert->status)),
          cert->status == storage::CertificateStatus::kRevoked ? "certificate_revoked"
                                                               : "certificate_not_active");
      return Status::ok();
    }
    if (!cert->ca_certificate_id.empty()) {
      FK_ASSIGN_OR_RETURN(auto ca, t.store().get_ca_certificate(cert->ca_certificate_id));
      if (ca && ca->status != storage::CertificateStatus::kActive) {
        facts->certificate =
            AuthDecision::deny("the CA certificate " + ca->certificate_id + " is " +
                                   std::string(storage::to_string(ca->status)),
                               "ca_not_active");
        return Status::ok();
      }
    }
    facts->certificate = AuthDecision::allow();
    if (rotation_ != nullptr) {
      FK_ASSIGN_OR_RETURN(facts->completes_rotation,
                          provisioning::CertificateRotation::completes_rotation(t, id));
    }
    if (!enforce_) return Status::ok();
    std::optional<policy::CertificateFacts> known;
    if (peer != nullptr && peer->certificate_id == id) known = certificate_facts(*peer);
    FK_ASSIGN_OR_RETURN(auto effective,
                        registry::load_effective_policies(t, registry_.config().arns, id,
                                                          key.second, known ? &*known : nullptr));
    facts->policies = std::move(effective.policies);
    facts->policies.shrink_to_fit();
    facts->policy_names.assign(effective.policy_names.begin(), effective.policy_names.end());
    facts->group_names.assign(effective.group_names.begin(), effective.group_names.end());
    if (effective.context.thing)
      facts->thing =
          std::make_shared<const policy::ThingFacts>(std::move(*effective.context.thing));
    facts->thing_is_attached = effective.context.thing_is_attached;
    // A connection brings its certificate's facts (connection_context); the cached entry keeps
    // them only when none did.
    if (!known && effective.context.certificate)
      facts->stored_certificate = std::make_shared<const policy::CertificateFacts>(
          std::move(*effective.context.certificate));
    return Status::ok();
  });
  if (!st.is_ok()) return st;
  return FactsPtr(std::move(facts));
}

PolicyAuthorizer::FactsPtr PolicyAuthorizer::cached_facts(const Key& key,
                                                          std::uint64_t* generation) {
  std::lock_guard<std::mutex> lock(mu_);
  *generation = generation_;
  if (auto it = cache_.find(key); it != cache_.end()) return it->second;
  auto live = live_.find(key);
  return live == live_.end() || live->second.stale ? nullptr : live->second.facts;
}

// A live entry whose connections all ended: its facts go back to the cache (the next
// reconnect needs no registry read), unless `stale`.
void PolicyAuthorizer::retire(std::map<Key, Live>::iterator it, bool stale) {
  if (!stale && !it->second.stale) {
    if (cache_.size() >= kMaxCachedFacts) clear_cache();
    cache_[it->first] = it->second.facts;
  }
  live_.erase(it);
}

AuthDecision PolicyAuthorizer::explain_connect(const std::string& certificate_id,
                                               const std::string& client_id) {
  auto loaded = load(Key{certificate_id, client_id});
  if (!loaded.is_ok())
    return AuthDecision::deny("registry error: " + loaded.status().message(),
                              "registry_unavailable");
  const Facts& facts = **loaded;
  if (!facts.certificate.allowed || !enforce_) return facts.certificate;
  broker::ClientIdentity client;  // no TLS peer: the stored certificate's facts are used
  client.client_id = client_id;
  policy::Grant grant(policies_of(*loaded), connection_context(facts, client), arn_prefix_);
  const std::string resource = *arn_prefix_ + "client/" + client_id;
  if (grant.allows(MqttAction::kConnect, resource)) return AuthDecision::allow();
  return AuthDecision::deny("iot:Connect on client/" + client_id + " for certificate " +
                                certificate_id + ": " +
                                grant.check(MqttAction::kConnect, resource).explain(),
                            "policy_denied");
}

broker::ConnectDecision PolicyAuthorizer::decide(const broker::ClientIdentity& client) {
  const Key key{client.certificate().certificate_id, client.client_id};
  bool tried_just_in_time = false;
  bool tried_rotation = false;
  for (;;) {
    std::uint64_t generation = 0;
    FactsPtr facts = cached_facts(key, &generation);
    if (!facts) {
      auto loaded = load(key, &client.certificate());
      if (!loaded.is_ok())
        return {AuthDecision::deny("registry error: " + loaded.status().message(),
                                   "registry_unavailable"),
                nullptr};
      facts = std::move(*loaded);
    }
    if (facts->unregistered && just_in_time_ != nullptr && client.certificate_der.empty()) {
      // Asked again with the certificate's DER (read from the TLS session only for this).
      broker::ConnectDecision ask;
      ask.decision = AuthDecision::deny("certificate " + key.first + " is not registered",
                                        "certificate_unknown");
      ask.wants_certificate_der = true;
      return ask;
    }
    if (facts->unregistered && just_in_time_ != nullptr && !tried_just_in_time) {
      tried_just_in_time = true;
      using Kind = provisioning::JustInTimeOutcome::Kind;
      registry::ActorScope actor("fleetkeyd: just-in-time registration");
      auto outcome = just_in_time_->on_unregistered_certificate(client.certificate_der);
      switch (outcome.kind) {
        case Kind::kRegistered:
        case Kind::kProvisioned:
          if (!outcome.accept_now)
            return {AuthDecision::deny(outcome.reason, "registered_just_in_time"), nullptr};
          continue;  // JITP with accept_first_connect: decide on what it made
        case Kind::kAlreadyKnown:
          continue;
        case Kind::kRefused:
        case Kind::kNotApplicable: {
          // Cached as a plain refusal: the next connect with it is answered without another
          // attempt (a CA change clears the cache).
          auto refused = std::make_shared<Facts>(*facts);
          refused->unregistered = false;
          if (!outcome.reason.empty())
            refused->certificate = AuthDecision::deny(outcome.reason, "certificate_unknown");
          facts = std::move(refused);
          break;
        }
      }
    }
    if (!facts->certificate.allowed) {
      std::lock_guard<std::mutex> lock(mu_);
      if (generation != generation_) continue;  // changed while reading: read again
      if (cache_.size() >= kMaxCachedFacts) clear_cache();
      cache_[key] = facts;
      return {facts->certificate, nullptr};
    }
    auto perms = std::make_shared<ConnectionPermissions>(kept(client), arn_prefix_, enforce_);
    if (enforce_) {
      auto grant = std::make_shared<const policy::Grant>(
          policies_of(facts), connection_context(*facts, client), arn_prefix_);
      const std::string resource = *arn_prefix_ + "client/" + client.client_id;
      if (!grant->allows(MqttAction::kConnect, resource)) {
        policy::Verdict v = grant->check(MqttAction::kConnect, resource);
        return {
            AuthDecision::deny("iot:Connect on client/" + client.client_id + " for certificate " +
                                   client.certificate().certificate_id + ": " + v.explain(),
                               "policy_denied"),
            nullptr};
      }
      perms->bind(std::move(grant));
    }
    if (facts->completes_rotation && rotation_ != nullptr && !tried_rotation) {
      // Allowed: this connect completes the rotation (the old certificate becomes INACTIVE),
      // then decides again on facts read after it.
      tried_rotation = true;
      registry::ActorScope actor(
          "fleetkeyd: rotation completed by the new certificate's "
          "first connect");
      if (Status st = rotation_->complete(key.first); !st.is_ok())
        log::warn("rotation.complete_failed",
                  {{"certificate", key.first}, {"reason", st.message()}});
      std::lock_guard<std::mutex> lock(mu_);
      cache_.erase(key);
      if (auto live = live_.find(key); live != live_.end()) live->second.stale = true;
      continue;
    }
    std::lock_guard<std::mutex> lock(mu_);
    // A change that arrived while the registry was being read makes these facts stale.
    if (generation != generation_) continue;
    if (!enforce_) {
      if (cache_.size() >= kMaxCachedFacts) clear_cache();
      cache_[key] = facts;
    }
    index(key);
    if (enforce_) {
      // Kept once per key: by the live entry while a connection uses it, else by the cache.
      cache_.erase(key);
      Live& live = live_[key];
      live.facts = facts;
      live.stale = false;
      // Forget connections that are gone while we are here.
      live.forget_ended();
      live.connections.push_back(perms);
      sweep_live();
    }
    return {AuthDecision::allow(), perms};
  }
}

void PolicyAuthorizer::authorize_connect(const broker::ClientIdentity& client,
                                         std::function<void(broker::ConnectDecision)> done) {
  if (gate_) {
    if (auto why = gate_()) {
      broker::ConnectDecision refused;
      refused.decision = broker::AuthDecision::deny(*why, "registry_unavailable");
      done(std::move(refused));
      return;
    }
  }
  {
    // The common reconnect: facts cached, answer on the caller's thread (no registry read).
    std::uint64_t generation = 0;
    auto facts = cached_facts({client.certificate().certificate_id, client.client_id}, &generation);
    if (facts && !(facts->unregistered && just_in_time_ != nullptr) &&
        !(facts->completes_rotation && rotation_ != nullptr)) {
      done(decide(client));
      return;
    }
  }
  boost::asio::post(pool_->pool,
                    [this, client, done = std::move(done)]() mutable { done(decide(client)); });
}

bool PolicyAuthorizer::affected(const Key& key, const Facts& f,
                                const registry::RegistryEvent& e) const {
  using K = registry::RegistryEvent::Kind;
  const auto& [certificate_id, client_id] = key;
  const auto& arns = registry_.config().arns;
  switch (e.kind) {
    case K::kCertificateStatusChanged:
    case K::kCertificateDeleted:
      return certificate_id == e.subject;
    case K::kCaCertificateChanged:
      return true;
    case K::kPolicyChanged:
      return Facts::has(f.policy_names, e.subject);
    case K::kPolicyAttachmentChanged:
      return certificate_in_arn(e.detail) == certificate_id ||
             e.detail.rfind(arns.thing_group(""), 0) == 0;  // group trees: recheck all
    case K::kThingPrincipalChanged:
      return e.subject == client_id || certificate_in_arn(e.detail) == certificate_id;
    case K::kThingChanged:
    case K::kGroupMembershipChanged:
      return e.subject == client_id || e.detail == client_id ||
             Facts::has(f.group_names, e.subject);
    case K::kTemplateChanged:
      return false;
  }
  return true;
}

void PolicyAuthorizer::index(const Key& key) {
  auto [from, to] = by_client_.equal_range(key.second);
  for (auto it = from; it != to; ++it)
    if (it->second == key.first) return;
  by_client_.emplace(key.second, key.first);
}

std::optional<std::set<PolicyAuthorizer::Key>> PolicyAuthorizer::candidates(
    const registry::RegistryEvent& e) const {
  using K = registry::RegistryEvent::Kind;
  std::set<Key> out;
  auto by_certificate = [&](std::string_view cert) {
    if (cert.empty()) return;
    const Key from{std::string(cert), std::string()};
    for (auto it = cache_.lower_bound(from); it != cache_.end() && it->first.first == cert; ++it)
      out.insert(it->first);
    for (auto it = live_.lower_bound(from); it != live_.end() && it->first.first == cert; ++it)
      out.insert(it->first);
  };
  auto by_client = [&](const std::string& client) {
    auto [from, to] = by_client_.equal_range(client);
    for (auto it = from; it != to; ++it) out.insert({it->second, client});
  };
  switch (e.kind) {
    case K::kCertificateStatusChanged:
    case K::kCertificateDeleted:
      by_certificate(e.subject);
      return out;
    case K::kThingChanged:
      by_client(e.subject);
      return out;
    case K::kGroupMembershipChanged:
      by_client(e.detail);
      return out;
    case K::kThingPrincipalChanged:
      by_client(e.subject);
      by_certificate(certificate_in_arn(e.detail));
      return out;
    case K::kPolicyAttachmentChanged:
      if (auto cert = certificate_in_arn(e.detail); !cert.empty()) {
        by_certificate(cert);
        return out;
      }
      return std::nullopt;  // a group: its descendants' things, found by a scan
    case K::kTemplateChanged:
      return out;
    case K::kPolicyChanged:
    case K::kCaCertificateChanged:
      return std::nullopt;
  }
  return std::nullopt;
}

void PolicyAuthorizer::on_registry_events(const std::vector<registry::RegistryEvent>& events) {
  std::vector<Key> rebind_keys;
  {
    std::lock_guard<std::mutex> lock(mu_);
    bool relevant = false;
    for (const auto& e : events) {
      if (e.kind != registry::RegistryEvent::Kind::kTemplateChanged) relevant = true;
    }
    if (!relevant) return;
    ++generation_;
    // Most events name a certificate or a thing: only the entries for those are looked at.
    // Policy, CA and group-attachment changes scan every entry.
    std::set<Key> keys;
    bool scan = false;
    for (const auto& e : events) {
      auto c = candidates(e);
      if (!c) {
        scan = true;
        break;
      }
      keys.insert(c->begin(), c->end());
    }
    auto hit = [&](const Key& k, const Facts& f) {
      for (const auto& e : events) {
        if (affected(k, f, e)) return true;
      }
      return false;
    };
    std::set<Key> rebind;
    if (scan) {
      std::erase_if(cache_, [&](const auto& kv) { return hit(kv.first, *kv.second); });
      for (auto it = live_.begin(); it != live_.end();) {
        const bool stale = hit(it->first, *it->second.facts);
        if (it->second.forget_ended()) {
          auto next = std::next(it);
          retire(it, stale);
          it = next;
          continue;
        }
        if (stale) {
          it->second.stale = true;
          rebind.insert(it->first);
        }
        ++it;
      }
    } else {
      for (const auto& k : keys) {
        if (auto it = cache_.find(k); it != cache_.end() && hit(k, *it->second)) cache_.erase(it);
        auto it = live_.find(k);
        if (it == live_.end()) continue;
        const bool stale = hit(it->first, *it->second.facts);
        if (it->second.forget_ended()) {
          retire(it, stale);
        } else if (stale) {
          it->second.stale = true;
          rebind.insert(k);
        }
      }
    }
    rebind_keys.assign(rebind.begin(), rebind.end());
  }
  if (!rebind_keys.empty() && enforce_) {
    boost::asio::post(pool_->rebinds, [this, keys = std::move(rebind_keys)] { rebind(keys); });
  }
}

void PolicyAuthorizer::rebind(const std::vector<Key>& keys) {
  for (const auto& key : keys) {
    std::vector<std::shared_ptr<ConnectionPermissions>> conns;
    std::uint64_t generation = 0;  // facts read after it may be newer than any change before
    {
      std::lock_guard<std::mutex> lock(mu_);
      generation = generation_;
      auto it = live_.find(key);
      if (it == live_.end()) continue;
      if (it->second.forget_ended()) {
        live_.erase(it);
        continue;
      }
      for (const auto& w : it->second.connections) {
        if (auto p = w.lock()) conns.push_back(std::move(p));
      }
    }
    if (conns.empty()) continue;
    auto loaded = load(key);
    if (loaded.is_ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = live_.find(key);
      if (it != live_.end() && generation == generation_) {
        it->second.facts = *loaded;
        it->second.stale = false;
      }
    }
    for (auto& c : conns) {
      if (!loaded.is_ok() || !(*loaded)->certificate.allowed) {
        // The certificate is gone or not ACTIVE: allow nothing (the broker also cuts it).
        c->bind(
            std::make_shared<const policy::Grant>(policy::PolicySet{}, policy::RequestContext{}));
        continue;
      }
      c->bind(std::make_shared<const policy::Grant>(
          policies_of(*loaded), connection_context(**loaded, c->client()), arn_prefix_));
    }
    FK_LOG_DEBUG("authz.rebound", {{"certificate", key.first},
                                   {"client", key.second},
                                   {"connections", std::to_string(conns.size())}});
  }
}

void PolicyAuthorizer::wait_for_rebinds() {
  std::promise<void> done;
  boost::asio::post(pool_->rebinds, [&] { done.set_value(); });
  done.get_future().wait();
}

void PolicyAuthorizer::sweep_live() {
  // Connections that ended leave their (certificate, client id) entry behind, and an expired
  // weak_ptr keeps its ConnectionPermissions' memory: with ever new client ids the table would
  // only grow. Swept whenever it has doubled since the last sweep (amortised O(1) per connect).
  if (live_.size() < live_sweep_at_) return;
  for (auto it = live_.begin(); it != live_.end();) {
    auto next = std::next(it);
    if (it->second.forget_ended()) retire(it, /*stale=*/false);
    it = next;
  }
  live_sweep_at_ = std::max<std::size_t>(1024, 2 * live_.size());
}

void PolicyAuthorizer::clear_cache() {
  cache_.clear();
  by_client_.clear();
  for (const auto& [key, live] : live_) index(key);
}

std::size_t PolicyAuthorizer::cached() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cache_.size() + live_.size();  // a key's facts are in one of them
}

std::size_t PolicyAuthorizer::live_entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return live_.size();
}

std::size_t PolicyAuthorizer::live_connections() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::size_t n = 0;
  for (const auto& [k, live] : live_) {
    for (const auto& w : live.connections) n += w.expired() ? 0 : 1;
  }
  return n;
}

}  // namespace fk::app
