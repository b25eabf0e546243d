// Authorizer: the broker's question to the rest of fleetkey, "may this client do this?".
//
// The broker defines it and never learns what answers it (app/ wires in the registry-backed
// implementation; the IoT policy engine plugs in here). authorize_connect may take time (it
// can read the registry): it answers through a callback, from any thread, exactly once. The
// other calls sit on the publish path and must answer at once from memory.
//
// Thread-safety: all methods may be called concurrently from the broker's I/O threads.
#pragma once

#include <functional>
#include <string_view>

#include "broker/types.h"

namespace fk::broker {

class Authorizer {
 public:
  virtual ~Authorizer() = default;

  virtual void authorize_connect(const ClientIdentity& client,
                                 std::function<void(AuthDecision)> done) = 0;
  virtual AuthDecision authorize_publish(const ClientIdentity& client, std::string_view topic,
                                         bool retain) = 0;
  virtual AuthDecision authorize_subscribe(const ClientIdentity& client,
                                           std::string_view filter) = 0;
  virtual AuthDecision authorize_receive(const ClientIdentity& client, std::string_view topic) = 0;
};

// Allows everything once connected; connect is allowed by `connect_check` (e.g. "the
// certificate is ACTIVE in the registry"). The policy engine replaces it.
class AllowAllAfterConnect : public Authorizer {
 public:
  using ConnectCheck =
      std::function<void(const ClientIdentity&, std::function<void(AuthDecision)>)>;
  explicit AllowAllAfterConnect(ConnectCheck check) : check_(std::move(check)) {}
  void authorize_connect(const ClientIdentity& c, std::function<void(AuthDecision)> done) override {
    check_(c, std::move(done));
  }
  AuthDecision authorize_publish(const ClientIdentity&, std::string_view, bool) override {
    return AuthDecision::allow();
  }
  AuthDecision authorize_subscribe(const ClientIdentity&, std::string_view) override {
    return AuthDecision::allow();
  }
  AuthDecision authorize_receive(const ClientIdentity&, std::string_view) override {
    return AuthDecision::allow();
  }

 private:
  ConnectCheck check_;
};

}  // namespace fk::broker
