#include "provisioning/register_thing.h"

#include <nlohmann/json.hpp>

#include "crypto/x509.h"

namespace fk::provisioning {

std::string claimed_key(std::string_view certificate_id) {
  return "fleet_provisioning.claimed." + std::string(certificate_id);
}

namespace {

std::string list_key(std::string_view t) {
  return "fleet_provisioning.allow_list." + std::string(t);
}
std::string value_key(std::string_view t, std::int64_t generation, std::string_view value) {
  return "fleet_provisioning.allow." + std::string(t) + "." + std::to_string(generation) + "." +
         std::string(value);
}

}  // namespace

Result<std::optional<AllowList>> get_allow_list(registry::Txn& txn,
                                                std::string_view template_name) {
  FK_ASSIGN_OR_RETURN(auto text, txn.store().get_setting(list_key(template_name)));
  if (!text || text->empty()) return std::optional<AllowList>();
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return internal_error("allow-list setting is corrupt");
  AllowList l;
  l.parameter = j.value("parameter", std::string());
  l.single_use = j.value("single_use", true);
  l.generation = j.value("generation", std::int64_t{0});
  return std::optional<AllowList>(l);
}

Status put_allow_list(registry::Txn& txn, std::string_view template_name, AllowList list,
                      const std::vector<std::string>& values) {
  FK_RETURN_IF_ERROR(txn.describe_template(template_name).status());
  if (list.parameter.empty()) return invalid_request("the allow-list needs a parameter name");
  FK_ASSIGN_OR_RETURN(auto old, get_allow_list(txn, template_name));
  list.generation = old ? old->generation + 1 : 1;
  for (const auto& v : values) {
    if (v.empty() || v.size() > 4096)
      return invalid_request("allow-list values must be 1 to 4096 characters");
    FK_RETURN_IF_ERROR(txn.store().put_setting(value_key(template_name, list.generation, v), "0"));
  }
  return txn.store().put_setting(list_key(template_name),
                                 nlohmann::json{{"parameter", list.parameter},
                                                {"single_use", list.single_use},
                                                {"generation", list.generation},
                                                {"count", values.size()}}
                                     .dump());
}

Status delete_allow_list(registry::Txn& txn, std::string_view template_name) {
  return txn.store().put_setting(list_key(template_name), "");
}

Result<AllowListEntry> allow_list_entry(registry::Txn& txn, std::string_view template_name,
                                        const AllowList& list, std::string_view value) {
  FK_ASSIGN_OR_RETURN(auto v,
                      txn.store().get_setting(value_key(template_name, list.generation, value)));
  return AllowListEntry{v.has_value(), v && *v == "1"};
}

Result<std::vector<std::pair<std::string, bool>>> list_allow_list_values(
    registry::Txn& txn, std::string_view template_name, const AllowList& list,
    const std::string& after, std::size_t limit) {
  const std::string prefix = value_key(template_name, list.generation, "");
  storage::Page page{after.empty() ? std::string() : prefix + after, limit};
  FK_ASSIGN_OR_RETURN(auto rows, txn.store().list_settings(prefix, page));
  std::vector<std::pair<std::string, bool>> out;
  out.reserve(rows.size());
  for (auto& [key, used] : rows) out.emplace_back(key.substr(prefix.size()), used == "1");
  return out;
}

Result<AllowListSummary> summarize_allow_list(registry::Txn& txn, std::string_view template_name,
                                              const AllowList& list) {
  AllowListSummary s;
  std::string after;
  for (;;) {  // in pages, so a list of a million serials is never held at once
    FK_ASSIGN_OR_RETURN(auto page, list_allow_list_values(txn, template_name, list, after, 1000));
    for (const auto& [value, used] : page) {
      ++s.values;
      s.used += used ? 1 : 0;
    }
    if (page.size() < 1000) return s;
    after = page.back().first;
  }
}

Status reenable_values(registry::Txn& txn, std::string_view template_name,
                       const std::vector<std::string>& values) {
  FK_ASSIGN_OR_RETURN(auto list, get_allow_list(txn, template_name));
  if (!list) return not_found("template " + std::string(template_name) + " has no allow-list");
  for (const auto& v : values) {
    FK_ASSIGN_OR_RETURN(auto e, allow_list_entry(txn, template_name, *list, v));
    if (!e.listed)
      return invalid_request("'" + v + "' is not on the allow-list of " +
                             std::string(template_name));
    FK_RETURN_IF_ERROR(txn.store().put_setting(value_key(template_name, list->generation, v), "0"));
  }
  return Status::ok();
}

namespace {

Status conflict(const std::string& m) {
  return {ErrorCode::kAlreadyExists, m};
}

// The groups the thing should end up in, per the override.
Status apply_groups(registry::Txn& txn, const ThingPlan& t, bool existed) {
  if (!t.groups) return Status::ok();
  if (existed && t.groups_override == Override::kDoNothing) return Status::ok();
  if (existed && t.groups_override == Override::kFail)
    return conflict("thing " + t.name + " exists and its ThingGroups override is FAIL");
  if (existed && t.groups_override == Override::kReplace) {
    FK_ASSIGN_OR_RETURN(auto current, txn.store().list_groups_of_thing(t.name, storage::Page{}));
    for (const auto& g : current) {
      if (std::find(t.groups->begin(), t.groups->end(), g) == t.groups->end())
        FK_RETURN_IF_ERROR(txn.remove_thing_from_group(g, t.name));
    }
  }
  for (const auto& g : *t.groups) FK_RETURN_IF_ERROR(txn.add_thing_to_group(g, t.name));
  return Status::ok();
}

Status apply_thing(registry::Txn& txn, const ThingPlan& t, bool thing_must_not_exist) {
  FK_ASSIGN_OR_RETURN(auto existing, txn.store().get_thing(t.name));
  if (!existing) {
    registry::CreateThingRequest req;
    req.name = t.name;
    req.type_name = t.type_name.value_or("");
    if (t.attributes) req.attributes = *t.attributes;
    FK_RETURN_IF_ERROR(txn.create_thing(req).status());
    return apply_groups(txn, t, false);
  }
  if (thing_must_not_exist)
    return conflict("thing " + t.name +
                    " already exists (this template provisions new things only)");
  registry::UpdateThingRequest up;
  up.name = t.name;
  bool change = false;
  if (t.type_name && existing->type_name != *t.type_name) {
    if (t.type_override == Override::kFail)
      return conflict("thing " + t.name + " exists with another type and ThingTypeName is FAIL");
    if (t.type_override == Override::kReplace) {
      up.type_name = *t.type_name;
      change = true;
    }
  }
  if (t.attributes && existing->attributes != *t.attributes) {
    if (t.attributes_override == Override::kFail)
      return conflict("thing " + t.name +
                      " exists with other attributes and AttributePayload is "
                      "FAIL");
    if (t.attributes_override == Override::kReplace || t.attributes_override == Override::kMerge) {
      up.attributes = *t.attributes;
      up.merge_attributes = t.attributes_override == Override::kMerge;
      change = true;
    }
  }
  if (change) FK_RETURN_IF_ERROR(txn.update_thing(up));
  return apply_groups(txn, t, true);
}

}  // namespace

// OpenSSL's short names to AWS's pseudo parameter names.
std::map<std::string, std::string> certificate_subject_parameters(const std::string& pem) {
  static const std::map<std::string, std::string> kNames = {
      {"CN", "CommonName"},
      {"C", "Country"},
      {"O", "Organization"},
      {"OU", "OrganizationalUnit"},
      {"dnQualifier", "DistinguishedNameQualifier"},
      {"ST", "StateName"},
      {"serialNumber", "SerialNumber"}};
  std::map<std::string, std::string> out;
  auto info = crypto::parse_certificate(pem);
  if (!info.is_ok()) return out;
  for (const auto& [sn, v] : info->subject_fields) {
    auto it = kNames.find(sn);
    if (it != kNames.end() && !out.count(it->second)) out[it->second] = v;
  }
  return out;
}

Result<Registered> apply_plan(registry::Txn& txn, const registry::ArnScope& arns, const Plan& plan,
                              const RegisterOptions& options, Refusal* refusal) {
  auto refuse = [refusal](int status, const char* code, Status st) {
    if (refusal) *refusal = {status, code};
    return st;
  };
  const bool device = options.source == RegisterOptions::Source::kDevice;
  // The token works once: a certificate is provisioned at most once.
  FK_ASSIGN_OR_RETURN(auto claimed, txn.store().get_setting(claimed_key(options.certificate_id)));
  if (claimed && device)
    return refuse(400, "InvalidCertificateOwnershipToken",
                  invalid_request("the certificate ownership token has already been used"));
  FK_ASSIGN_OR_RETURN(auto cert, txn.describe_certificate(options.certificate_id));
  if (!device && (cert.status == storage::CertificateStatus::kRevoked ||
                  cert.status == storage::CertificateStatus::kPendingTransfer))
    return Status{ErrorCode::kCertificateState, "certificate " + options.certificate_id + " is " +
                                                    std::string(storage::to_string(cert.status)) +
                                                    ": it cannot be registered"};
  if (device && cert.status != storage::CertificateStatus::kPendingActivation)
    return invalid_request("certificate " + options.certificate_id + " is " +
                           std::string(storage::to_string(cert.status)) +
                           ", not PENDING_ACTIVATION: it cannot be provisioned");
  // The template's allow-list, and single use of each value.
  FK_ASSIGN_OR_RETURN(auto list, device ? get_allow_list(txn, options.template_name)
                                        : Result<std::optional<AllowList>>(std::nullopt));
  if (list) {
    auto p = options.parameters.find(list->parameter);
    const std::string value = p == options.parameters.end() ? std::string() : p->second;
    FK_ASSIGN_OR_RETURN(auto entry, allow_list_entry(txn, options.template_name, *list, value));
    if (!entry.listed)
      return refuse(403, "NotAllowed",
                    Status{ErrorCode::kUnauthorized, list->parameter + " '" + value +
                                                         "' is not on the allow-list of template " +
                                                         options.template_name});
    if (entry.used && list->single_use)
      return refuse(
          409, "AlreadyProvisioned",
          Status{ErrorCode::kAlreadyExists,
                 list->parameter + " '" + value +
                     "' has already provisioned (single use; re-enable it to provision again)"});
    FK_RETURN_IF_ERROR(
        txn.store().put_setting(value_key(options.template_name, list->generation, value), "1"));
  }
  Registered out;
  const std::string cert_arn = arns.certificate(options.certificate_id);
  if (plan.thing) {
    FK_RETURN_IF_ERROR(apply_thing(txn, *plan.thing, options.thing_must_not_exist));
    out.thing_name = plan.thing->name;
    out.resource_arns[plan.thing->logical_name] = arns.thing(plan.thing->name);
  }
  for (const auto& p : plan.policies) {
    if (!p.document.empty()) {
      FK_ASSIGN_OR_RETURN(auto existing, txn.store().get_policy(p.name));
      if (!existing) FK_RETURN_IF_ERROR(txn.create_policy(p.name, p.document).status());
    }
    FK_RETURN_IF_ERROR(txn.attach_policy(p.name, cert_arn));
    out.resource_arns[p.logical_name] = arns.policy(p.name);
  }
  if (plan.certificate) {
    FK_RETURN_IF_ERROR(txn.update_certificate_status(
        options.certificate_id, plan.certificate->active ? storage::CertificateStatus::kActive
                                                         : storage::CertificateStatus::kInactive));
    out.resource_arns[plan.certificate->logical_name] = cert_arn;
  }
  if (plan.thing) FK_RETURN_IF_ERROR(txn.attach_thing_principal(plan.thing->name, cert_arn));
  if (device) FK_RETURN_IF_ERROR(txn.store().put_setting(claimed_key(options.certificate_id), "1"));
  return out;
}

}  // namespace fk::provisioning
