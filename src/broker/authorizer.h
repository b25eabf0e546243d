// Authorizer: the broker's question to the rest of fleetkey, "may this client do this?".
//
// The broker defines it and never learns what answers it (app/ wires in the IoT policy engine
// over the registry). authorize_connect may take time (it can read the registry): it answers
// through a callback, from any thread, exactly once. An allowed connect comes with the
// connection's Permissions, which the broker asks on every PUBLISH, SUBSCRIBE and delivery:
// they answer at once from memory, and the authorizer may change what they answer while the
// connection lives (a policy or attachment changed).
//
// Thread-safety: all methods may be called concurrently from the broker's I/O threads; a
// Permissions object is shared by the threads that deliver to its connection.
#pragma once

#include <functional>
#include <memory>
#include <string_view>

#include "broker/types.h"

namespace fk::broker {

class Permissions {
 public:
  virtual ~Permissions() = default;
  virtual AuthDecision publish(std::string_view topic, bool retain) const = 0;
  virtual AuthDecision subscribe(std::string_view filter) const = 0;
  virtual AuthDecision receive(std::string_view topic) const = 0;
};
using PermissionsPtr = std::shared_ptr<const Permissions>;

struct ConnectDecision {
  AuthDecision decision;
  PermissionsPtr permissions;  // set when decision.allowed
  // Not decided yet: ask again with ClientIdentity::certificate_der set (an unknown certificate
  // that a registered CA may have signed: just-in-time registration). Read from the TLS session
  // only then, so that a known certificate's connect never copies its DER.
  bool wants_certificate_der = false;
};

class Authorizer {
 public:
  virtual ~Authorizer() = default;
  virtual void authorize_connect(const ClientIdentity& client,
                                 std::function<void(ConnectDecision)> done) = 0;
};

// Everything is allowed once connected.
class AllowAll : public Permissions {
 public:
  AuthDecision publish(std::string_view, bool) const override { return AuthDecision::allow(); }
  AuthDecision subscribe(std::string_view) const override { return AuthDecision::allow(); }
  AuthDecision receive(std::string_view) const override { return AuthDecision::allow(); }
};

// Allows everything once connected; connect is allowed by `connect_check` (e.g. "the
// certificate is ACTIVE in the registry"). For tests and benchmarks of the broker alone.
class AllowAllAfterConnect : public Authorizer {
 public:
  using ConnectCheck =
      std::function<void(const ClientIdentity&, std::function<void(AuthDecision)>)>;
  explicit AllowAllAfterConnect(ConnectCheck check) : check_(std::move(check)) {}
  void authorize_connect(const ClientIdentity& c,
                         std::function<void(ConnectDecision)> done) override {
    check_(c, [done = std::move(done)](AuthDecision d) {
      done(ConnectDecision{std::move(d), std::make_shared<AllowAll>()});
    });
  }

 private:
  ConnectCheck check_;
};

}  // namespace fk::broker
