#include "registry/registry.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "base/log.h"
#include "base/strings.h"
#include "crypto/x509.h"
#include "registry/validation.h"

namespace fk::registry {

using storage::Page;

namespace {

Status version_conflict(std::string m) {
  return {ErrorCode::kVersionConflict, std::move(m)};
}
Status delete_conflict(std::string m) {
  return {ErrorCode::kDeleteConflict, std::move(m)};
}
Status cert_state(std::string m) {
  return {ErrorCode::kCertificateState, std::move(m)};
}

// AWS attributePayload: replace all, or merge where an empty value removes the attribute.
void apply_attributes(Attributes& target, const Attributes& update, bool merge) {
  if (!merge) {
    target = update;
    return;
  }
  for (const auto& [k, v] : update) {
    if (v.empty()) {
      target.erase(k);
    } else {
      target[k] = v;
    }
  }
}

template <typename T>
Result<T> require(storage::Maybe<T> found, const std::string& missing) {
  if (!found.is_ok()) return found.status();
  if (!found->has_value()) return not_found(missing);
  return std::move(**found);
}

bool has_any(const storage::Names& names) {
  return names.is_ok() && !names->empty();
}

}  // namespace

// ---------------------------------------------------------------- things

Result<ThingRecord> Txn::create_thing(const CreateThingRequest& req) {
  FK_RETURN_IF_ERROR(check_thing_name("thing name", req.name));
  if (!req.type_name.empty()) {
    FK_RETURN_IF_ERROR(check_thing_name("thing type name", req.type_name));
    FK_ASSIGN_OR_RETURN(ThingTypeRecord type,
                        require(t_.get_thing_type(req.type_name),
                                "thing type " + req.type_name + " does not exist"));
    if (type.deprecated)
      return invalid_request("thing type " + req.type_name +
                             " is deprecated: no new things can use it");
  }
  FK_RETURN_IF_ERROR(check_attributes(req.attributes, !req.type_name.empty()));
  FK_ASSIGN_OR_RETURN(auto existing, t_.get_thing(req.name));
  if (existing) {
    if (existing->type_name == req.type_name && existing->attributes == req.attributes)
      return *existing;  // AWS: idempotent for an identical thing
    return already_exists("thing " + req.name + " already exists with a different configuration");
  }
  ThingRecord thing{req.name, crypto::random_uuid(), req.type_name, req.attributes,
                    1,        clock_.now()};
  FK_RETURN_IF_ERROR(t_.put_thing(thing));
  emit(RegistryEvent::Kind::kThingChanged, thing.name);
  FK_RETURN_IF_ERROR(timeline("thing_created", "", "", thing.name, ""));
  return thing;
}

Result<ThingRecord> Txn::describe_thing(std::string_view name) {
  return require(t_.get_thing(name), "thing " + std::string(name) + " does not exist");
}

Status Txn::update_thing(const UpdateThingRequest& req) {
  FK_ASSIGN_OR_RETURN(ThingRecord thing, describe_thing(req.name));
  if (req.expected_version && *req.expected_version != thing.version)
    return version_conflict("thing " + req.name + " is at version " +
                            std::to_string(thing.version) + ", not the expected " +
                            std::to_string(*req.expected_version));
  if (req.remove_type && req.type_name)
    return invalid_request("thingTypeName and removeThingType cannot be used together");
  if (req.remove_type) thing.type_name.clear();
  if (req.type_name && *req.type_name != thing.type_name) {
    FK_ASSIGN_OR_RETURN(ThingTypeRecord type,
                        require(t_.get_thing_type(*req.type_name),
                                "thing type " + *req.type_name + " does not exist"));
    if (type.deprecated) return invalid_request("thing type " + *req.type_name + " is deprecated");
    thing.type_name = *req.type_name;
  }
  if (req.attributes) {
    apply_attributes(thing.attributes, *req.attributes, req.merge_attributes);
  }
  FK_RETURN_IF_ERROR(check_attributes(thing.attributes, !thing.type_name.empty()));
  ++thing.version;
  FK_RETURN_IF_ERROR(t_.put_thing(thing));
  emit(RegistryEvent::Kind::kThingChanged, thing.name);
  return Status::ok();
}

Status Txn::delete_thing(std::string_view name, std::optional<std::int64_t> expected_version) {
  FK_ASSIGN_OR_RETURN(auto thing, t_.get_thing(name));
  if (!thing) return Status::ok();  // AWS: deleting a missing thing succeeds
  if (expected_version && *expected_version != thing->version)
    return version_conflict("thing " + std::string(name) + " is at version " +
                            std::to_string(thing->version) + ", not the expected " +
                            std::to_string(*expected_version));
  if (has_any(t_.list_thing_principals(name, Page{"", 1})))
    return invalid_request("Cannot delete. Thing " + std::string(name) +
                           " is still attached to one or more principals");
  FK_ASSIGN_OR_RETURN(auto groups, t_.list_groups_of_thing(name, Page{}));
  for (const auto& g : groups) {
    FK_RETURN_IF_ERROR(t_.remove_group_member(g, name));
    emit(RegistryEvent::Kind::kGroupMembershipChanged, g, std::string(name));
  }
  FK_RETURN_IF_ERROR(t_.delete_thing(name));
  emit(RegistryEvent::Kind::kThingChanged, std::string(name));
  return timeline("thing_deleted", "", "", std::string(name), "");
}

// ---------------------------------------------------------------- thing types

Result<ThingTypeRecord> Txn::create_thing_type(std::string_view name, std::string_view description,
                                               const std::vector<std::string>& searchable) {
  FK_RETURN_IF_ERROR(check_thing_name("thing type name", name));
  if (description.size() > 2028)
    return invalid_request("thing type description is longer than 2028 characters");
  if (searchable.size() > 3)
    return invalid_request("a thing type may have at most 3 searchable attributes");
  FK_ASSIGN_OR_RETURN(auto existing, t_.get_thing_type(name));
  if (existing) {
    if (existing->description == description && existing->searchable_attributes == searchable)
      return *existing;
    return already_exists("thing type " + std::string(name) + " already exists");
  }
  ThingTypeRecord type{
      std::string(name), crypto::random_uuid(), std::string(description), searchable, false, 0,
      clock_.now()};
  FK_RETURN_IF_ERROR(t_.put_thing_type(type));
  return type;
}

Result<ThingTypeRecord> Txn::describe_thing_type(std::string_view name) {
  return require(t_.get_thing_type(name), "thing type " + std::string(name) + " does not exist");
}

Status Txn::deprecate_thing_type(std::string_view name, bool undo) {
  FK_ASSIGN_OR_RETURN(ThingTypeRecord type, describe_thing_type(name));
  type.deprecated = !undo;
  type.deprecated_at = undo ? 0 : clock_.now();
  return t_.put_thing_type(type);
}

Status Txn::delete_thing_type(std::string_view name) {
  FK_ASSIGN_OR_RETURN(ThingTypeRecord type, describe_thing_type(name));
  if (!type.deprecated)
    return invalid_request("thing type " + std::string(name) +
                           " must be deprecated before it can be deleted");
  storage::ThingQuery q;
  q.type_name = std::string(name);
  q.page.limit = 1;
  FK_ASSIGN_OR_RETURN(auto users, t_.list_things(q));
  if (!users.empty())
    return invalid_request("thing type " + std::string(name) + " is still used by thing " +
                           users.front().name);
  return t_.delete_thing_type(name);
}

// ---------------------------------------------------------------- thing groups

Result<ThingGroupRecord> Txn::create_thing_group(const CreateThingGroupRequest& req) {
  FK_RETURN_IF_ERROR(check_thing_name("thing group name", req.name));
  FK_RETURN_IF_ERROR(check_attributes(req.attributes, /*has_type=*/true));
  if (req.description.size() > 2028)
    return invalid_request("thing group description is longer than 2028 characters");
  if (!req.parent_name.empty()) {
    FK_RETURN_IF_ERROR(require(t_.get_thing_group(req.parent_name),
                               "parent thing group " + req.parent_name + " does not exist")
                           .status());
  }
  FK_ASSIGN_OR_RETURN(auto existing, t_.get_thing_group(req.name));
  if (existing) {
    if (existing->parent_name == req.parent_name && existing->description == req.description &&
        existing->attributes == req.attributes)
      return *existing;
    return already_exists("thing group " + req.name + " already exists");
  }
  ThingGroupRecord g{req.name,        crypto::random_uuid(), req.parent_name,
                     req.description, req.attributes,        1,
                     clock_.now()};
  FK_RETURN_IF_ERROR(t_.put_thing_group(g));
  return g;
}

Result<ThingGroupRecord> Txn::describe_thing_group(std::string_view name) {
  return require(t_.get_thing_group(name), "thing group " + std::string(name) + " does not exist");
}

Result<std::int64_t> Txn::update_thing_group(std::string_view name,
                                             std::optional<std::string> description,
                                             std::optional<Attributes> attributes, bool merge,
                                             std::optional<std::int64_t> expected_version) {
  FK_ASSIGN_OR_RETURN(ThingGroupRecord g, describe_thing_group(name));
  if (expected_version && *expected_version != g.version)
    return version_conflict("thing group " + std::string(name) + " is at version " +
                            std::to_string(g.version));
  if (description) g.description = *description;
  if (attributes) {
    apply_attributes(g.attributes, *attributes, merge);
  }
  FK_RETURN_IF_ERROR(check_attributes(g.attributes, true));
  ++g.version;
  FK_RETURN_IF_ERROR(t_.put_thing_group(g));
  return g.version;
}

Status Txn::delete_thing_group(std::string_view name,
                               std::optional<std::int64_t> expected_version) {
  FK_ASSIGN_OR_RETURN(auto g, t_.get_thing_group(name));
  if (!g) return Status::ok();
  if (expected_version && *expected_version != g->version)
    return version_conflict("thing group " + std::string(name) + " is at version " +
                            std::to_string(g->version));
  FK_ASSIGN_OR_RETURN(auto all, t_.list_thing_groups(Page{}));
  for (const auto& other : all) {
    if (other.parent_name == name)
      return invalid_request("thing group " + std::string(name) + " has child group " + other.name +
                             ": delete the children first");
  }
  std::string arn = config_.arns.thing_group(name);
  if (has_any(t_.list_target_policies(arn, Page{"", 1})))
    return delete_conflict("thing group " + std::string(name) +
                           " has policies attached: detach them first");
  FK_ASSIGN_OR_RETURN(auto members, t_.list_group_members(name, Page{}));
  for (const auto& m : members) {
    FK_RETURN_IF_ERROR(t_.remove_group_member(name, m));
    emit(RegistryEvent::Kind::kGroupMembershipChanged, std::string(name), m);
  }
  return t_.delete_thing_group(name);
}

Status Txn::add_thing_to_group(std::string_view group, std::string_view thing) {
  FK_RETURN_IF_ERROR(describe_thing_group(group).status());
  FK_RETURN_IF_ERROR(describe_thing(thing).status());
  FK_ASSIGN_OR_RETURN(auto groups, t_.list_groups_of_thing(thing, Page{}));
  if (std::find(groups.begin(), groups.end(), group) != groups.end()) return Status::ok();
  if (groups.size() >= kMaxGroupsPerThing)
    return Status(ErrorCode::kLimitExceeded, "thing " + std::string(thing) + " is already in " +
                                                 std::to_string(kMaxGroupsPerThing) + " groups");
  FK_RETURN_IF_ERROR(t_.add_group_member(group, thing));
  emit(RegistryEvent::Kind::kGroupMembershipChanged, std::string(group), std::string(thing));
  return Status::ok();
}

Status Txn::remove_thing_from_group(std::string_view group, std::string_view thing) {
  FK_RETURN_IF_ERROR(describe_thing_group(group).status());
  FK_RETURN_IF_ERROR(describe_thing(thing).status());
  FK_RETURN_IF_ERROR(t_.remove_group_member(group, thing));
  emit(RegistryEvent::Kind::kGroupMembershipChanged, std::string(group), std::string(thing));
  return Status::ok();
}

// ---------------------------------------------------------------- certificates

Result<CertificateRecord> Txn::record_certificate(const NewCertificate& c) {
  FK_ASSIGN_OR_RETURN(auto existing, t_.get_certificate(c.info.certificate_id));
  if (existing)
    return already_exists("certificate " + c.info.certificate_id + " is already registered");
  const EpochSeconds now = clock_.now();
  CertificateRecord r;
  r.certificate_id = c.info.certificate_id;
  r.pem = c.info.pem;
  r.status = c.status;
  r.ca_certificate_id = c.ca_certificate_id;
  r.subject = c.info.subject;
  r.issuer = c.info.issuer;
  r.serial_hex = c.info.serial_hex;
  r.not_before = c.info.not_before;
  r.not_after = c.info.not_after;
  r.created_at = now;
  r.updated_at = now;
  r.customer_version = 1;
  r.generation_id = crypto::random_uuid();
  FK_RETURN_IF_ERROR(t_.put_certificate(r));
  emit(RegistryEvent::Kind::kCertificateStatusChanged, r.certificate_id, "created", r.status);
  FK_RETURN_IF_ERROR(
      timeline("certificate_created", std::string(storage::to_string(r.status)),
               "recorded as " + std::string(storage::to_string(r.status)) +
                   (r.ca_certificate_id.empty() ? std::string()
                                                : ", CA certificate " + r.ca_certificate_id) +
                   ", valid until " + format_utc(r.not_after),
               "", r.certificate_id));
  return r;
}

Result<CertificateRecord> Txn::describe_certificate(std::string_view id) {
  FK_RETURN_IF_ERROR(check_certificate_id(id));
  return require(t_.get_certificate(id), "certificate " + std::string(id) + " does not exist");
}

Status Txn::update_certificate_status(std::string_view id, CertificateStatus status) {
  using S = CertificateStatus;
  if (status == S::kPendingTransfer || status == S::kPendingActivation)
    return invalid_request(std::string(storage::to_string(status)) +
                           " is set by fleetkey itself and cannot be requested");
  if (status == S::kRegisterInactive)
    return invalid_request("REGISTER_INACTIVE is deprecated: use INACTIVE");
  FK_ASSIGN_OR_RETURN(CertificateRecord c, describe_certificate(id));
  if (c.status == status) return Status::ok();  // idempotent
  if (c.status == S::kRevoked)
    return cert_state("certificate " + std::string(id) +
                      " is REVOKED: a revoked certificate can never be reactivated");
  if (c.status == S::kPendingTransfer)
    return cert_state("certificate " + std::string(id) +
                      " is PENDING_TRANSFER: accept, reject or cancel the transfer first");
  if (status == S::kActive && !c.ca_certificate_id.empty()) {
    FK_ASSIGN_OR_RETURN(auto ca, t_.get_ca_certificate(c.ca_certificate_id));
    if (ca && ca->status != S::kActive)
      return cert_state("certificate " + std::string(id) + " cannot be activated: its CA " +
                        c.ca_certificate_id + " is " + std::string(storage::to_string(ca->status)));
  }
  const CertificateStatus before = c.status;
  c.status = status;
  c.updated_at = clock_.now();
  ++c.customer_version;
  c.generation_id = crypto::random_uuid();
  FK_RETURN_IF_ERROR(t_.put_certificate(c));
  emit(RegistryEvent::Kind::kCertificateStatusChanged, c.certificate_id, {}, status);
  FK_RETURN_IF_ERROR(timeline(
      "certificate_status", std::string(storage::to_string(status)),
      std::string(storage::to_string(before)) + " -> " + std::string(storage::to_string(status)),
      "", c.certificate_id));
  return Status::ok();
}

Status Txn::delete_certificate(std::string_view id, bool force) {
  FK_ASSIGN_OR_RETURN(CertificateRecord c, describe_certificate(id));
  if (c.status == CertificateStatus::kActive)
    return cert_state("Certificate must be deactivated (not ACTIVE) before deletion. Id: " +
                      std::string(id));
  if (c.status == CertificateStatus::kPendingTransfer)
    return cert_state("certificate " + std::string(id) + " is PENDING_TRANSFER");
  std::string arn = config_.arns.certificate(id);
  if (has_any(t_.list_principal_things(arn, Page{"", 1})))
    return delete_conflict("Things must be detached before deletion (arn: " + arn + ")");
  FK_ASSIGN_OR_RETURN(auto policies, t_.list_target_policies(arn, Page{}));
  if (!policies.empty() && !force)
    return delete_conflict("Certificate policies must be detached before deletion (arn: " + arn +
                           ")");
  for (const auto& p : policies) {
    FK_RETURN_IF_ERROR(t_.detach_policy(p, arn));
    emit(RegistryEvent::Kind::kPolicyAttachmentChanged, p, arn);
  }
  if (c.status == CertificateStatus::kRevoked) {
    // A revoked certificate stays on its CA's CRL and in its OCSP answers after it is deleted,
    // until it expires (revocation.h reads these).
    FK_RETURN_IF_ERROR(t_.put_setting(revoked_tombstone_key(c.ca_certificate_id, c.serial_hex),
                                      nlohmann::json({{"certificateId", c.certificate_id},
                                                      {"issuer", c.issuer},
                                                      {"revokedAt", c.updated_at},
                                                      {"notAfter", c.not_after}})
                                          .dump()));
  }
  FK_RETURN_IF_ERROR(t_.delete_certificate(id));
  emit(RegistryEvent::Kind::kCertificateDeleted, std::string(id));
  FK_RETURN_IF_ERROR(timeline("certificate_deleted", std::string(storage::to_string(c.status)), "",
                              "", std::string(id)));
  return Status::ok();
}

// ---------------------------------------------------------------- CA certificates

Result<std::string> Txn::registration_code() {
  FK_ASSIGN_OR_RETURN(auto code, t_.get_setting("registration_code"));
  if (code && !code->empty()) return *code;  // "" = deleted
  std::string fresh = crypto::random_hex(32);
  FK_RETURN_IF_ERROR(t_.put_setting("registration_code", fresh));
  return fresh;
}

Status Txn::delete_registration_code() {
  return t_.put_setting("registration_code", "");
}

Result<CaCertificateRecord> Txn::register_ca_certificate(const crypto::CertificateInfo& ca,
                                                         CertificateStatus status,
                                                         bool auto_registration,
                                                         std::string_view certificate_mode,
                                                         std::string registration_config) {
  FK_ASSIGN_OR_RETURN(auto existing, t_.get_ca_certificate(ca.certificate_id));
  if (existing)
    return already_exists("CA certificate " + ca.certificate_id + " is already registered");
  const EpochSeconds now = clock_.now();
  CaCertificateRecord r;
  r.certificate_id = ca.certificate_id;
  r.pem = ca.pem;
  r.status = status;
  r.auto_registration = auto_registration;
  r.certificate_mode = std::string(certificate_mode);
  r.subject = ca.subject;
  r.not_before = ca.not_before;
  r.not_after = ca.not_after;
  r.created_at = now;
  r.updated_at = now;
  r.generation_id = crypto::random_uuid();
  r.registration_config = std::move(registration_config);
  FK_RETURN_IF_ERROR(t_.put_ca_certificate(r));
  emit(RegistryEvent::Kind::kCaCertificateChanged, r.certificate_id, {}, r.status);
  return r;
}

Result<CaCertificateRecord> Txn::describe_ca_certificate(std::string_view id) {
  FK_RETURN_IF_ERROR(check_certificate_id(id));
  return require(t_.get_ca_certificate(id),
                 "CA certificate " + std::string(id) + " does not exist");
}

Status Txn::update_ca_certificate(std::string_view id, std::optional<CertificateStatus> status,
                                  std::optional<bool> auto_registration,
                                  std::optional<std::string> registration_config) {
  FK_ASSIGN_OR_RETURN(CaCertificateRecord ca, describe_ca_certificate(id));
  if (status) {
    if (*status != CertificateStatus::kActive && *status != CertificateStatus::kInactive)
      return invalid_request("a CA certificate's status is ACTIVE or INACTIVE");
    ca.status = *status;
  }
  if (auto_registration) ca.auto_registration = *auto_registration;
  if (registration_config) ca.registration_config = std::move(*registration_config);
  ca.updated_at = clock_.now();
  ++ca.customer_version;
  ca.generation_id = crypto::random_uuid();
  FK_RETURN_IF_ERROR(t_.put_ca_certificate(ca));
  emit(RegistryEvent::Kind::kCaCertificateChanged, ca.certificate_id, {}, ca.status);
  return Status::ok();
}

Status Txn::delete_ca_certificate(std::string_view id) {
  FK_ASSIGN_OR_RETURN(CaCertificateRecord ca, describe_ca_certificate(id));
  if (ca.status == CertificateStatus::kActive)
    return cert_state("CA certificate " + std::string(id) +
                      " must be deactivated (not ACTIVE) before deletion");
  storage::CertificateQuery q;
  q.ca_certificate_id = std::string(id);
  q.page.limit = 1;
  FK_ASSIGN_OR_RETURN(auto certs, t_.list_certificates(q));
  if (!certs.empty())
    return delete_conflict("CA certificate " + std::string(id) +
                           " still has registered device certificates (e.g. " +
                           certs.front().certificate_id + ")");
  FK_RETURN_IF_ERROR(t_.delete_ca_certificate(id));
  emit(RegistryEvent::Kind::kCaCertificateChanged, std::string(id));
  return Status::ok();
}

// ---------------------------------------------------------------- policies

Result<PolicyVersionRecord> Txn::create_policy(std::string_view name, std::string_view document) {
  FK_RETURN_IF_ERROR(check_policy_name(name));
  FK_RETURN_IF_ERROR(check_policy_document(document));
  FK_ASSIGN_OR_RETURN(auto existing, t_.get_policy(name));
  if (existing) return already_exists("policy " + std::string(name) + " already exists");
  const EpochSeconds now = clock_.now();
  PolicyRecord p{std::string(name), 1, 2, now, now, crypto::random_uuid()};
  PolicyVersionRecord v{std::string(name), 1, std::string(document), now};
  FK_RETURN_IF_ERROR(t_.put_policy(p));
  FK_RETURN_IF_ERROR(t_.put_policy_version(v));
  return v;
}

Result<PolicyRecord> Txn::get_policy(std::string_view name) {
  return require(t_.get_policy(name), "policy " + std::string(name) + " does not exist");
}

Status Txn::delete_policy(std::string_view name) {
  FK_ASSIGN_OR_RETURN(PolicyRecord p, get_policy(name));
  if (has_any(t_.list_policy_targets(name, Page{"", 1})))
    return delete_conflict(
        "The policy cannot be deleted as the policy is attached to one or more principals (name=" +
        std::string(name) + ")");
  FK_ASSIGN_OR_RETURN(auto versions, t_.list_policy_versions(name));
  if (versions.size() > 1)
    return delete_conflict(
        "The policy cannot be deleted as versions other than the default version exist (name=" +
        std::string(name) + ")");
  FK_RETURN_IF_ERROR(t_.delete_policy(name));
  emit(RegistryEvent::Kind::kPolicyChanged, p.name);
  return Status::ok();
}

Result<PolicyVersionRecord> Txn::create_policy_version(std::string_view name,
                                                       std::string_view document,
                                                       bool set_default) {
  FK_ASSIGN_OR_RETURN(PolicyRecord p, get_policy(name));
  FK_RETURN_IF_ERROR(check_policy_document(document));
  FK_ASSIGN_OR_RETURN(auto versions, t_.list_policy_versions(name));
  if (versions.size() >= config_.max_policy_versions)
    return Status(ErrorCode::kVersionsLimitExceeded,
                  "policy " + std::string(name) + " already has " +
                      std::to_string(versions.size()) +
                      " versions (the maximum): delete one first");
  const EpochSeconds now = clock_.now();
  PolicyVersionRecord v{p.name, p.next_version_id, std::string(document), now};
  ++p.next_version_id;
  if (set_default) p.default_version_id = v.version_id;
  p.updated_at = now;
  p.generation_id = crypto::random_uuid();
  FK_RETURN_IF_ERROR(t_.put_policy_version(v));
  FK_RETURN_IF_ERROR(t_.put_policy(p));
  if (set_default) emit(RegistryEvent::Kind::kPolicyChanged, p.name);
  return v;
}

Result<PolicyVersionRecord> Txn::get_policy_version(std::string_view name, std::int64_t id) {
  FK_RETURN_IF_ERROR(get_policy(name).status());
  return require(t_.get_policy_version(name, id),
                 "policy " + std::string(name) + " has no version " + std::to_string(id));
}

Status Txn::set_default_policy_version(std::string_view name, std::int64_t id) {
  FK_ASSIGN_OR_RETURN(PolicyRecord p, get_policy(name));
  FK_RETURN_IF_ERROR(get_policy_version(name, id).status());
  if (p.default_version_id == id) return Status::ok();
  p.default_version_id = id;
  p.updated_at = clock_.now();
  p.generation_id = crypto::random_uuid();
  FK_RETURN_IF_ERROR(t_.put_policy(p));
  emit(RegistryEvent::Kind::kPolicyChanged, p.name);
  return Status::ok();
}

Status Txn::delete_policy_version(std::string_view name, std::int64_t id) {
  FK_ASSIGN_OR_RETURN(PolicyRecord p, get_policy(name));
  FK_RETURN_IF_ERROR(get_policy_version(name, id).status());
  if (p.default_version_id == id)
    return delete_conflict("Cannot delete the default version of a policy (name=" +
                           std::string(name) + ", version=" + std::to_string(id) + ")");
  return t_.delete_policy_version(name, id);
}

Status Txn::attach_policy(std::string_view policy, std::string_view target) {
  FK_RETURN_IF_ERROR(get_policy(policy).status());
  FK_ASSIGN_OR_RETURN(ParsedArn arn, parse_arn(config_.arns, target));
  if (arn.kind == "cert") {
    FK_RETURN_IF_ERROR(describe_certificate(arn.id).status());
  } else if (arn.kind == "thinggroup") {
    FK_RETURN_IF_ERROR(describe_thing_group(arn.id).status());
  } else {
    return invalid_request("policies attach to certificates and thing groups, not to " + arn.kind);
  }
  FK_ASSIGN_OR_RETURN(auto attached, t_.list_target_policies(target, Page{}));
  if (std::find(attached.begin(), attached.end(), policy) != attached.end()) return Status::ok();
  if (attached.size() >= config_.max_policies_per_target)
    return Status(ErrorCode::kLimitExceeded, std::string(target) + " already has " +
                                                 std::to_string(attached.size()) +
                                                 " policies attached (the maximum)");
  FK_RETURN_IF_ERROR(t_.attach_policy(policy, target));
  emit(RegistryEvent::Kind::kPolicyAttachmentChanged, std::string(policy), std::string(target));
  return Status::ok();
}

Status Txn::detach_policy(std::string_view policy, std::string_view target) {
  FK_RETURN_IF_ERROR(get_policy(policy).status());
  FK_RETURN_IF_ERROR(parse_arn(config_.arns, target).status());
  FK_RETURN_IF_ERROR(t_.detach_policy(policy, target));
  emit(RegistryEvent::Kind::kPolicyAttachmentChanged, std::string(policy), std::string(target));
  return Status::ok();
}

// ---------------------------------------------------------------- principals

Result<std::string> Txn::certificate_id_of_principal(std::string_view principal) {
  FK_ASSIGN_OR_RETURN(ParsedArn arn, parse_arn(config_.arns, principal));
  if (arn.kind != "cert")
    return invalid_request("principal " + std::string(principal) + " is not a certificate ARN");
  FK_RETURN_IF_ERROR(describe_certificate(arn.id).status());
  return arn.id;
}

Status Txn::attach_thing_principal(std::string_view thing, std::string_view principal) {
  FK_RETURN_IF_ERROR(describe_thing(thing).status());
  FK_ASSIGN_OR_RETURN(std::string certificate_id, certificate_id_of_principal(principal));
  FK_RETURN_IF_ERROR(t_.attach_thing_principal(thing, principal));
  emit(RegistryEvent::Kind::kThingPrincipalChanged, std::string(thing), std::string(principal));
  return timeline("principal_attached", "", "", std::string(thing), std::move(certificate_id));
}

Status Txn::detach_thing_principal(std::string_view thing, std::string_view principal) {
  FK_RETURN_IF_ERROR(describe_thing(thing).status());
  FK_ASSIGN_OR_RETURN(ParsedArn arn, parse_arn(config_.arns, principal));
  FK_RETURN_IF_ERROR(t_.detach_thing_principal(thing, principal));
  emit(RegistryEvent::Kind::kThingPrincipalChanged, std::string(thing), std::string(principal));
  return timeline("principal_detached", "", "", std::string(thing),
                  arn.kind == "cert" ? arn.id : std::string());
}

// ---------------------------------------------------------------- templates

namespace {
Status check_template_fields(std::string_view role_arn, std::string_view description,
                             std::string_view type, std::string_view hook) {
  if (role_arn.size() < 20 || role_arn.size() > 2048)
    return invalid_request("provisioningRoleArn must be 20 to 2048 characters");
  if (description.size() > 500) return invalid_request("description is longer than 500 characters");
  if (type != "FLEET_PROVISIONING" && type != "JITP")
    return invalid_request("template type must be FLEET_PROVISIONING or JITP, not '" +
                           std::string(type) + "'");
  if (!hook.empty() && type != "FLEET_PROVISIONING")
    return invalid_request("a pre-provisioning hook is only for FLEET_PROVISIONING templates");
  return Status::ok();
}
}  // namespace

Result<TemplateRecord> Txn::create_template(const CreateTemplateRequest& req) {
  FK_RETURN_IF_ERROR(check_template_name(req.name));
  FK_RETURN_IF_ERROR(check_template_body(req.body));
  FK_RETURN_IF_ERROR(check_template_fields(req.provisioning_role_arn, req.description, req.type,
                                           req.pre_provisioning_hook));
  FK_ASSIGN_OR_RETURN(auto existing, t_.get_template(req.name));
  if (existing) return already_exists("provisioning template " + req.name + " already exists");
  const EpochSeconds now = clock_.now();
  TemplateRecord t;
  t.name = req.name;
  t.template_id = crypto::random_uuid();
  t.description = req.description;
  t.type = req.type;
  t.enabled = req.enabled;
  t.provisioning_role_arn = req.provisioning_role_arn;
  t.pre_provisioning_hook = req.pre_provisioning_hook;
  t.default_version_id = 1;
  t.next_version_id = 2;
  t.created_at = now;
  t.updated_at = now;
  FK_RETURN_IF_ERROR(t_.put_template(t));
  FK_RETURN_IF_ERROR(t_.put_template_version({t.name, 1, req.body, now}));
  emit(RegistryEvent::Kind::kTemplateChanged, t.name);
  return t;
}

Result<TemplateRecord> Txn::describe_template(std::string_view name) {
  return require(t_.get_template(name),
                 "provisioning template " + std::string(name) + " does not exist");
}

Status Txn::update_template(const UpdateTemplateRequest& req) {
  FK_ASSIGN_OR_RETURN(TemplateRecord t, describe_template(req.name));
  if (req.description) t.description = *req.description;
  if (req.enabled) t.enabled = *req.enabled;
  if (req.provisioning_role_arn) t.provisioning_role_arn = *req.provisioning_role_arn;
  if (req.remove_pre_provisioning_hook && req.pre_provisioning_hook)
    return invalid_request("preProvisioningHook and removePreProvisioningHook cannot be combined");
  if (req.remove_pre_provisioning_hook) t.pre_provisioning_hook.clear();
  if (req.pre_provisioning_hook) t.pre_provisioning_hook = *req.pre_provisioning_hook;
  if (req.default_version_id) {
    FK_RETURN_IF_ERROR(describe_template_version(req.name, *req.default_version_id).status());
    t.default_version_id = *req.default_version_id;
  }
  FK_RETURN_IF_ERROR(check_template_fields(t.provisioning_role_arn, t.description, t.type,
                                           t.pre_provisioning_hook));
  t.updated_at = clock_.now();
  FK_RETURN_IF_ERROR(t_.put_template(t));
  emit(RegistryEvent::Kind::kTemplateChanged, t.name);
  return Status::ok();
}

Status Txn::delete_template(std::string_view name) {
  FK_RETURN_IF_ERROR(describe_template(name).status());
  FK_RETURN_IF_ERROR(t_.delete_template(name));
  emit(RegistryEvent::Kind::kTemplateChanged, std::string(name));
  return Status::ok();
}

Result<TemplateVersionRecord> Txn::create_template_version(std::string_view name,
                                                           std::string_view body,
                                                           bool set_default) {
  FK_ASSIGN_OR_RETURN(TemplateRecord t, describe_template(name));
  FK_RETURN_IF_ERROR(check_template_body(body));
  FK_ASSIGN_OR_RETURN(auto versions, t_.list_template_versions(name));
  if (versions.size() >= config_.max_template_versions)
    return Status(ErrorCode::kVersionsLimitExceeded,
                  "provisioning template " + std::string(name) + " already has " +
                      std::to_string(versions.size()) + " versions (the maximum)");
  const EpochSeconds now = clock_.now();
  TemplateVersionRecord v{t.name, t.next_version_id, std::string(body), now};
  ++t.next_version_id;
  if (set_default) t.default_version_id = v.version_id;
  t.updated_at = now;
  FK_RETURN_IF_ERROR(t_.put_template_version(v));
  FK_RETURN_IF_ERROR(t_.put_template(t));
  emit(RegistryEvent::Kind::kTemplateChanged, t.name);
  return v;
}

Result<TemplateVersionRecord> Txn::describe_template_version(std::string_view name,
                                                             std::int64_t id) {
  FK_RETURN_IF_ERROR(describe_template(name).status());
  return require(t_.get_template_version(name, id), "provisioning template " + std::string(name) +
                                                        " has no version " + std::to_string(id));
}

Status Txn::delete_template_version(std::string_view name, std::int64_t id) {
  FK_ASSIGN_OR_RETURN(TemplateRecord t, describe_template(name));
  FK_RETURN_IF_ERROR(describe_template_version(name, id).status());
  if (t.default_version_id == id)
    return delete_conflict("the default version " + std::to_string(id) + " of template " +
                           std::string(name) + " cannot be deleted");
  return t_.delete_template_version(name, id);
}

// ---------------------------------------------------------------- Registry

Registry::Registry(storage::Store& store, crypto::CertificateAuthority& ca, const Clock& clock,
                   RegistryConfig config)
    : store_(store), ca_(ca), clock_(clock), config_(std::move(config)), committer_(store) {}

Registry::~Registry() = default;

namespace {
thread_local std::string tl_actor = "fleetkeyd";
thread_local std::string tl_operation;
}  // namespace

ActorScope::ActorScope(std::string actor, std::string operation)
    : previous_(std::move(tl_actor)), previous_operation_(std::move(tl_operation)) {
  tl_actor = std::move(actor);
  tl_operation = std::move(operation);
}
ActorScope::~ActorScope() {
  tl_actor = std::move(previous_);
  tl_operation = std::move(previous_operation_);
}
const std::string& ActorScope::current() {
  return tl_actor;
}
const std::string& ActorScope::current_operation() {
  return tl_operation;
}

Status Txn::timeline(const char* event, std::string reason, std::string detail, std::string thing,
                     std::string certificate_id) {
  DeviceEvent e;
  e.at_ms = epoch_ms();
  e.thing = std::move(thing);
  e.certificate_id = std::move(certificate_id);
  e.event = event;
  e.reason = std::move(reason);
  e.detail = std::move(detail);
  if (!operation_.empty()) e.detail += (e.detail.empty() ? "" : " ") + ("(" + operation_ + ")");
  e.actor = actor_;
  return t_.append_timeline({std::move(e)});
}

Status Registry::write(const std::function<Status(Txn&)>& change) {
  std::vector<RegistryEvent> events;
  const std::string& actor = ActorScope::current();  // of the calling thread
  const std::string& operation = ActorScope::current_operation();
  Status st = committer_.run([&](storage::Transaction& t) {
    Txn txn(t, config_, clock_);
    txn.set_actor(actor, operation);
    Status s = change(txn);
    if (s.is_ok()) {
      events = txn.events();
      // For the other nodes sharing the store, in the same transaction (an outbox).
      if (!events.empty() && store_.has_outbox()) s = t.append_outbox(encode_events(events));
    }
    return s;
  });
  if (st.is_ok() && !events.empty()) publish(events);
  return st;
}

Status Registry::read(const std::function<Status(Txn&)>& query) {
  FK_ASSIGN_OR_RETURN(auto t, store_.begin_read());
  Txn txn(*t, config_, clock_);
  Status st = query(txn);
  (void)t->commit();
  return st;
}

int Registry::add_listener(RegistryListener listener) {
  std::lock_guard<std::mutex> lock(listeners_mu_);
  int id = next_listener_++;
  listeners_.emplace(id, std::move(listener));
  return id;
}

void Registry::remove_listener(int id) {
  std::lock_guard<std::mutex> lock(listeners_mu_);
  listeners_.erase(id);
}

std::string encode_events(const std::vector<RegistryEvent>& events) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& e : events)
    out.push_back({{"k", static_cast<int>(e.kind)},
                   {"s", e.subject},
                   {"d", e.detail},
                   {"st", storage::to_string(e.status)}});
  return out.dump();
}

std::vector<RegistryEvent> decode_events(std::string_view payload) {
  std::vector<RegistryEvent> out;
  auto j = nlohmann::json::parse(payload, nullptr, false);
  if (!j.is_array()) return out;
  for (const auto& e : j) {
    if (!e.is_object() || !e.contains("k") || !e["k"].is_number_integer()) continue;
    const int k = e["k"].get<int>();
    if (k < 0 || k > static_cast<int>(RegistryEvent::Kind::kCaCertificateChanged)) continue;
    RegistryEvent ev;
    ev.kind = static_cast<RegistryEvent::Kind>(k);
    ev.subject = e.value("s", "");
    ev.detail = e.value("d", "");
    auto st = storage::parse_certificate_status(e.value("st", ""));
    if (st.is_ok()) ev.status = *st;
    out.push_back(std::move(ev));
  }
  return out;
}

void Registry::publish_remote(const std::vector<std::string>& payloads) {
  for (const auto& p : payloads) {
    auto events = decode_events(p);
    if (!events.empty()) publish(events);
  }
}

void Registry::publish(const std::vector<RegistryEvent>& events) {
  std::vector<RegistryListener> copy;
  {
    std::lock_guard<std::mutex> lock(listeners_mu_);
    for (const auto& [id, l] : listeners_) copy.push_back(l);
  }
  for (const auto& l : copy) l(events);
}

Result<CertificateRecord> Registry::create_certificate_from_csr(std::string_view csr_pem,
                                                                CertificateStatus status) {
  FK_ASSIGN_OR_RETURN(crypto::CertificateInfo info, ca_.issue_from_csr(csr_pem, {}));
  CertificateRecord out;
  NewCertificate nc{std::move(info), ca_.issuing_certificate().certificate_id, status};
  FK_RETURN_IF_ERROR(write([&](Txn& t) {
    FK_ASSIGN_OR_RETURN(out, t.record_certificate(nc));
    return Status::ok();
  }));
  return out;
}

Result<Registry::CertificateWithKeys> Registry::create_keys_and_certificate(
    const crypto::KeySpec& key, CertificateStatus status, const crypto::IssueOptions& issue) {
  FK_ASSIGN_OR_RETURN(crypto::IssuedWithKey issued, ca_.issue_with_new_key(key, issue));
  CertificateWithKeys out;
  out.keys = std::move(issued.keys);
  NewCertificate nc{std::move(issued.certificate), ca_.issuing_certificate().certificate_id,
                    status};
  FK_RETURN_IF_ERROR(write([&](Txn& t) {
    FK_ASSIGN_OR_RETURN(out.certificate, t.record_certificate(nc));
    return Status::ok();
  }));
  return out;
}

Result<CertificateRecord> Registry::register_certificate(std::string_view pem,
                                                         std::optional<std::string> ca_pem,
                                                         CertificateStatus status) {
  FK_ASSIGN_OR_RETURN(crypto::CertificateInfo info, crypto::parse_certificate(pem));
  if (info.is_ca)
    return Status(ErrorCode::kCertificateValidation,
                  "this is a CA certificate: register it with RegisterCACertificate");
  std::optional<std::string> ca_id;
  if (ca_pem) {
    FK_ASSIGN_OR_RETURN(crypto::CertificateInfo ca_info, crypto::parse_certificate(*ca_pem));
    ca_id = ca_info.certificate_id;
  }
  CertificateRecord out;
  FK_RETURN_IF_ERROR(write([&](Txn& t) -> Status {
    std::string issuer_id;
    std::string issuer_pem;
    if (!ca_id || *ca_id == ca_.issuing_certificate().certificate_id) {
      if (crypto::verify_signed_by(info.pem, ca_.issuing_certificate().pem).is_ok()) {
        issuer_id = ca_.issuing_certificate().certificate_id;
        issuer_pem = ca_.issuing_certificate().pem;
      }
    }
    if (issuer_id.empty()) {
      std::vector<CaCertificateRecord> candidates;
      if (ca_id) {
        FK_ASSIGN_OR_RETURN(auto ca, t.store().get_ca_certificate(*ca_id));
        if (!ca) return not_found("CA certificate " + *ca_id + " is not registered");
        candidates.push_back(*ca);
      } else {
        FK_ASSIGN_OR_RETURN(candidates, t.store().list_ca_certificates(storage::Page{}));
      }
      for (const auto& ca : candidates) {
        if (crypto::verify_signed_by(info.pem, ca.pem).is_ok()) {
          if (ca.status != CertificateStatus::kActive)
            return cert_state("the CA certificate " + ca.certificate_id + " is INACTIVE");
          issuer_id = ca.certificate_id;
          issuer_pem = ca.pem;
          break;
        }
      }
    }
    if (issuer_id.empty())
      return Status(ErrorCode::kCertificateValidation,
                    "the certificate was not signed by a registered CA (register the CA first or "
                    "use RegisterCertificateWithoutCA)");
    FK_RETURN_IF_ERROR(crypto::verify_chain(info.pem, {issuer_pem}, {}, clock_.now()));
    FK_ASSIGN_OR_RETURN(out, t.record_certificate({info, issuer_id, status}));
    return Status::ok();
  }));
  return out;
}

Result<CertificateRecord> Registry::register_certificate_without_ca(std::string_view pem,
                                                                    CertificateStatus status) {
  FK_ASSIGN_OR_RETURN(crypto::CertificateInfo info, crypto::parse_certificate(pem));
  if (info.is_ca)
    return Status(ErrorCode::kCertificateValidation,
                  "this is a CA certificate: register it with RegisterCACertificate");
  CertificateRecord out;
  FK_RETURN_IF_ERROR(write([&](Txn& t) {
    FK_ASSIGN_OR_RETURN(out, t.record_certificate({info, "", status}));
    return Status::ok();
  }));
  return out;
}

Result<CaCertificateRecord> Registry::register_ca_certificate(
    std::string_view ca_pem, std::optional<std::string> verification_pem, bool set_active,
    bool auto_registration, std::string_view certificate_mode, std::string registration_config) {
  if (certificate_mode != "DEFAULT" && certificate_mode != "SNI_ONLY")
    return invalid_request("certificateMode must be DEFAULT or SNI_ONLY");
  FK_ASSIGN_OR_RETURN(crypto::CertificateInfo ca, crypto::parse_certificate(ca_pem));
  if (!ca.is_ca)
    return Status(ErrorCode::kCertificateValidation,
                  "not a CA certificate (basicConstraints CA:TRUE is required)");
  if (ca.not_after < clock_.now())
    return Status(ErrorCode::kCertificateValidation, "the CA certificate has expired");
  std::optional<crypto::CertificateInfo> verification;
  if (certificate_mode == "DEFAULT") {
    if (!verification_pem)
      return invalid_request(
          "verificationCertificate is required unless certificateMode is SNI_ONLY");
    FK_ASSIGN_OR_RETURN(verification, crypto::parse_certificate(*verification_pem));
    FK_RETURN_IF_ERROR(crypto::verify_signed_by(verification->pem, ca.pem));
  }
  CaCertificateRecord out;
  FK_RETURN_IF_ERROR(write([&](Txn& t) -> Status {
    if (verification) {
      FK_ASSIGN_OR_RETURN(std::string code, t.registration_code());
      std::string cn;
      for (const auto& [k, v] : verification->subject_fields) {
        if (k == "CN") cn = v;
      }
      if (!constant_time_equals(cn, code))
        return Status(ErrorCode::kRegistrationCode,
                      "the verification certificate's common name is not the registration code");
    }
    FK_ASSIGN_OR_RETURN(
        out, t.register_ca_certificate(
                 ca, set_active ? CertificateStatus::kActive : CertificateStatus::kInactive,
                 auto_registration, certificate_mode, std::move(registration_config)));
    return Status::ok();
  }));
  return out;
}

}  // namespace fk::registry
