// RegisterThing's registry change: a template's Plan applied inside one registry transaction
// (thing created or updated per OverrideSettings, groups and type, policies created or
// attached, certificate activated, thing attached to the certificate). If any step fails,
// the caller's write() keeps nothing.
#pragma once

#include <map>
#include <string>

#include "provisioning/provisioning_template.h"
#include "registry/registry.h"

namespace fk::provisioning {

struct RegisterOptions {
  std::string certificate_id;        // the certificate the ownership token names
  bool thing_must_not_exist = true;  // fleetkey's default lock-down
};

struct Registered {
  std::string thing_name;
  std::map<std::string, std::string> resource_arns;  // logical name -> ARN
};

// Failures carry AWS's rejected shape in the message's owner: see PlanError.
Result<Registered> apply_plan(registry::Txn& txn, const registry::ArnScope& arns, const Plan& plan,
                              const RegisterOptions& options);

// The registry setting that records a certificate as provisioned (tokens work once).
std::string claimed_key(std::string_view certificate_id);

}  // namespace fk::provisioning
