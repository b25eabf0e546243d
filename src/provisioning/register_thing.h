// RegisterThing's registry change: a template's Plan applied inside one registry transaction
// (thing created or updated per OverrideSettings, groups and type, policies created or
// attached, certificate activated, thing attached to the certificate). If any step fails,
// the caller's write() keeps nothing.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "provisioning/provisioning_template.h"
#include "registry/registry.h"

namespace fk::provisioning {

struct RegisterOptions {
  std::string certificate_id;        // the certificate the ownership token names
  bool thing_must_not_exist = true;  // fleetkey's default lock-down
  std::string template_name;
  std::map<std::string, std::string> parameters;  // as the device sent them (after the hook)
  // kDevice: RegisterThing over MQTT with an ownership token (the certificate must be
  // PENDING_ACTIVATION and provisions once; allow-lists apply). kApi: the admin API's
  // RegisterThing on any ACTIVE, INACTIVE or PENDING_ACTIVATION certificate.
  enum class Source { kDevice, kApi };
  Source source = Source::kDevice;
};

// AWS's template pseudo parameters from a certificate's subject ("CommonName" -> "locker-1").
std::map<std::string, std::string> certificate_subject_parameters(const std::string& pem);

// A template's allow-list: RegisterThing is refused unless `parameter`'s value is on it; with
// `single_use` each value provisions once (until re-enabled). Kept in registry settings, one
// key per value, so a check is one read whatever the list's size.
struct AllowList {
  std::string parameter;
  bool single_use = true;
  std::int64_t generation = 0;  // bumped by each import; older values no longer count
};
Result<std::optional<AllowList>> get_allow_list(registry::Txn& txn, std::string_view template_name);
// How many values the list holds and how many a RegisterThing has used (a full scan).
struct AllowListSummary {
  std::size_t values = 0;
  std::size_t used = 0;
};
Result<AllowListSummary> summarize_allow_list(registry::Txn& txn, std::string_view template_name,
                                              const AllowList& list);
// Up to `limit` values after `after` (a value; "" = from the first), in order, with `used`.
Result<std::vector<std::pair<std::string, bool>>> list_allow_list_values(
    registry::Txn& txn, std::string_view template_name, const AllowList& list,
    const std::string& after, std::size_t limit);
// Replaces the template's allow-list with `values` (in the caller's transaction).
Status put_allow_list(registry::Txn& txn, std::string_view template_name, AllowList list,
                      const std::vector<std::string>& values);
Status delete_allow_list(registry::Txn& txn, std::string_view template_name);
// Lets values that have provisioned provision again (single-use mode).
Status reenable_values(registry::Txn& txn, std::string_view template_name,
                       const std::vector<std::string>& values);
// Whether a value is on the list, and whether it has provisioned.
struct AllowListEntry {
  bool listed = false;
  bool used = false;
};
Result<AllowListEntry> allow_list_entry(registry::Txn& txn, std::string_view template_name,
                                        const AllowList& list, std::string_view value);

struct Registered {
  std::string thing_name;
  std::map<std::string, std::string> resource_arns;  // logical name -> ARN
};

// The refusals apply_plan makes itself (token already used, allow-list), in AWS's rejected
// shape. Other failures are the registry's Status codes, which the caller maps.
struct Refusal {
  int status_code = 0;
  std::string error_code;  // empty: not one of apply_plan's own refusals
};

Result<Registered> apply_plan(registry::Txn& txn, const registry::ArnScope& arns, const Plan& plan,
                              const RegisterOptions& options, Refusal* refusal = nullptr);

// The registry setting that records a certificate as provisioned (tokens work once).
std::string claimed_key(std::string_view certificate_id);

}  // namespace fk::provisioning
