// Just-in-time registration (JITR) and provisioning (JITP), AWS's flow: a device certificate
// signed by a registered CA whose auto-registration is on is registered at its first connect.
//
// - JITR (the CA has no provisioning template): the certificate is recorded PENDING_ACTIVATION
//   under its CA and $aws/events/certificates/registered/<caCertificateId> is published; the
//   connect is refused (the owner's rule activates it; the device reconnects).
// - JITP (the CA's registrationConfig names a template, inline or by name): the certificate is
//   recorded and the template applied (thing, policies, ACTIVE status) in one registry
//   transaction; a failing template keeps nothing. The first connect is refused as AWS does,
//   unless `accept_first_connect` (fleetkey's option) lets it go on at once.
//
// Refusals say why: the CA does not allow auto-registration, the CA is INACTIVE, the template is
// missing, disabled or fails (with the template's own message).
//
// Thread-safety: any thread (it reads and writes the registry; call it off the I/O threads).
#pragma once

#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

#include "registry/registry.h"

namespace fk::provisioning {

struct JustInTimeConfig {
  bool accept_first_connect = false;  // JITP: the provisioning connect goes on (not AWS's way)
};

struct JustInTimeOutcome {
  enum class Kind {
    kNotApplicable,  // no registered CA signed it: the certificate is simply not registered
    kRefused,        // a registered CA signed it, but it may not be registered (reason says why)
    kRegistered,     // JITR: now PENDING_ACTIVATION
    kProvisioned,    // JITP: the template ran
    kAlreadyKnown,   // registered meanwhile (another connect, an admin): decide as usual
  };
  Kind kind = Kind::kNotApplicable;
  std::string reason;  // for the connect's refusal and the log
  bool accept_now = false;
  std::string certificate_id;
  std::string ca_certificate_id;
};

// A registrationConfig as RegisterCACertificate and UpdateCACertificate take it: {"templateBody",
// "roleArn"} or {"templateName"} (a JITP template that exists). Returns the JSON text to store
// ("" for an empty one). Errors: kInvalidRequest, kNotFound (templateName).
Result<std::string> check_registration_config(registry::Txn& txn, const nlohmann::json& config);

class JustInTime {
 public:
  // `publish` sends a server message to the broker's subscribers (QoS 0).
  using Publish = std::function<void(const std::string& topic, std::string payload)>;
  JustInTime(registry::Registry& registry, JustInTimeConfig config, Publish publish);

  // A connect presented this certificate (DER) and the registry does not know it.
  JustInTimeOutcome on_unregistered_certificate(std::string_view der);

 private:
  registry::Registry& registry_;
  const JustInTimeConfig config_;
  Publish publish_;
};

}  // namespace fk::provisioning
