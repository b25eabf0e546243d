// Policies: create, get, delete, list, versions, default version, attach/detach, attached
// policies and targets, GetEffectivePolicies and TestAuthorization (the broker's own engine).
#include <set>

#include "api/routing.h"
#include "registry/effective_policies.h"

namespace fk::api {

using registry::Txn;

namespace {

json policy_entry(const ApiContext& ctx, const std::string& name) {
  return {{"policyName", name}, {"policyArn", ctx.arns().policy(name)}};
}

// "arn:aws:iot:...:cert/<id>" or a bare certificate id -> the id.
Result<std::string> certificate_of_principal(const ApiContext& ctx, const std::string& principal) {
  if (principal.rfind("arn:", 0) != 0) return principal;
  FK_ASSIGN_OR_RETURN(auto arn, registry::parse_arn(ctx.arns(), principal));
  if (arn.kind != "cert")
    return invalid_request("principal " + principal + " is not a certificate ARN");
  return arn.id;
}

// The policies that apply to `principal` used with `client_id`, with the adds and skips of
// TestAuthorization.
Result<registry::EffectivePolicies> effective(const ApiContext& ctx, Txn& t,
                                              const std::string& principal,
                                              const std::string& client_id,
                                              const std::vector<std::string>& add,
                                              const std::vector<std::string>& skip) {
  FK_ASSIGN_OR_RETURN(std::string cert, certificate_of_principal(ctx, principal));
  FK_ASSIGN_OR_RETURN(auto e, registry::load_effective_policies(t, ctx.arns(), cert, client_id));
  std::erase_if(e.policies, [&](const policy::NamedPolicy& p) {
    return std::find(skip.begin(), skip.end(), p.name) != skip.end();
  });
  for (const auto& name : add) {
    FK_ASSIGN_OR_RETURN(auto p, t.get_policy(name));
    FK_ASSIGN_OR_RETURN(auto v, t.get_policy_version(name, p.default_version_id));
    FK_ASSIGN_OR_RETURN(auto doc, policy::parse_document(v.document));
    e.policies.push_back({name, std::to_string(v.version_id),
                          std::make_shared<const policy::Document>(std::move(doc))});
  }
  return e;
}

}  // namespace

void add_policy_routes(RouteTable& t, ApiContext& ctx) {
  t.add("POST", "/policies/{policyName}", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(std::string document, c.member("policyDocument"));
    const std::string& name = c.labels["policyName"];
    registry::PolicyVersionRecord v;
    FK_RETURN_IF_ERROR(ctx.registry.write([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(v, txn.create_policy(name, document));
      return Status::ok();
    }));
    return json{{"policyName", name},
                {"policyArn", ctx.arns().policy(name)},
                {"policyDocument", v.document},
                {"policyVersionId", std::to_string(v.version_id)}};
  });
  t.add("GET", "/policies/{policyName}", [&ctx](Call& c) -> Result<json> {
    json out;
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(auto p, txn.get_policy(c.labels["policyName"]));
      FK_ASSIGN_OR_RETURN(auto v, txn.get_policy_version(p.name, p.default_version_id));
      out = {{"policyName", p.name},
             {"policyArn", ctx.arns().policy(p.name)},
             {"policyDocument", v.document},
             {"defaultVersionId", std::to_string(p.default_version_id)},
             {"creationDate", p.created_at},
             {"lastModifiedDate", p.updated_at},
             {"generationId", p.generation_id}};
      return Status::ok();
    }));
    return out;
  });
  t.add("DELETE", "/policies/{policyName}", [&ctx](Call& c) -> Result<json> {
    FK_RETURN_IF_ERROR(
        ctx.registry.write([&](Txn& txn) { return txn.delete_policy(c.labels["policyName"]); }));
    return json::object();
  });
  t.add("GET", "/policies", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(PageRequest page, page_request(c, "marker", "pageSize"));
    FK_ASSIGN_OR_RETURN(bool ascending, c.q_bool("isAscendingOrder", true));
    (void)ascending;  // names are listed in ascending order
    json policies = json::array();
    std::string next;
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(auto list,
                          txn.store().list_policies(storage::Page{page.after, page.size + 1}));
      if (list.size() > page.size) {
        list.resize(page.size);
        next = list.back().name;
      }
      for (const auto& p : list) policies.push_back(policy_entry(ctx, p.name));
      return Status::ok();
    }));
    json out = {{"policies", policies}};
    if (!next.empty()) out["nextMarker"] = next;
    return out;
  });
  t.add("POST", "/policies/{policyName}/version", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(std::string document, c.member("policyDocument"));
    FK_ASSIGN_OR_RETURN(bool set_default, c.q_bool("setAsDefault", false));
    registry::PolicyVersionRecord v;
    FK_RETURN_IF_ERROR(ctx.registry.write([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(v,
                          txn.create_policy_version(c.labels["policyName"], document, set_default));
      return Status::ok();
    }));
    return json{{"policyArn", ctx.arns().policy(c.labels["policyName"])},
                {"policyDocument", v.document},
                {"policyVersionId", std::to_string(v.version_id)},
                {"isDefaultVersion", set_default}};
  });
  t.add("GET", "/policies/{policyName}/version", [&ctx](Call& c) -> Result<json> {
    json versions = json::array();
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(auto p, txn.get_policy(c.labels["policyName"]));
      FK_ASSIGN_OR_RETURN(auto list, txn.store().list_policy_versions(p.name));
      for (const auto& v : list) {
        versions.push_back({{"versionId", std::to_string(v.version_id)},
                            {"isDefaultVersion", v.version_id == p.default_version_id},
                            {"createDate", v.created_at}});
      }
      return Status::ok();
    }));
    return json{{"policyVersions", versions}};
  });
  t.add("GET", "/policies/{policyName}/version/{policyVersionId}", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(std::int64_t id, integer_label(c, "policyVersionId"));
    json out;
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(auto p, txn.get_policy(c.labels["policyName"]));
      FK_ASSIGN_OR_RETURN(auto v, txn.get_policy_version(p.name, id));
      out = {{"policyArn", ctx.arns().policy(p.name)},
             {"policyName", p.name},
             {"policyDocument", v.document},
             {"policyVersionId", std::to_string(v.version_id)},
             {"isDefaultVersion", v.version_id == p.default_version_id},
             {"creationDate", v.created_at},
             {"lastModifiedDate", v.created_at},
             {"generationId", p.generation_id}};
      return Status::ok();
    }));
    return out;
  });
  t.add(
      "PATCH", "/policies/{policyName}/version/{policyVersionId}", [&ctx](Call& c) -> Result<json> {
        FK_ASSIGN_OR_RETURN(std::int64_t id, integer_label(c, "policyVersionId"));
        FK_RETURN_IF_ERROR(ctx.registry.write(
            [&](Txn& txn) { return txn.set_default_policy_version(c.labels["policyName"], id); }));
        return json::object();
      });
  t.add("DELETE", "/policies/{policyName}/version/{policyVersionId}",
        [&ctx](Call& c) -> Result<json> {
          FK_ASSIGN_OR_RETURN(std::int64_t id, integer_label(c, "policyVersionId"));
          FK_RETURN_IF_ERROR(ctx.registry.write(
              [&](Txn& txn) { return txn.delete_policy_version(c.labels["policyName"], id); }));
          return json::object();
        });
  t.add("PUT", "/target-policies/{policyName}", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(std::string target, c.member("target"));
    FK_RETURN_IF_ERROR(ctx.registry.write(
        [&](Txn& txn) { return txn.attach_policy(c.labels["policyName"], target); }));
    return json::object();
  });
  t.add("POST", "/target-policies/{policyName}", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(std::string target, c.member("target"));
    FK_RETURN_IF_ERROR(ctx.registry.write(
        [&](Txn& txn) { return txn.detach_policy(c.labels["policyName"], target); }));
    return json::object();
  });
  t.add("POST", "/attached-policies/{target}", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(PageRequest page, page_request(c, "marker", "pageSize"));
    json policies = json::array();
    std::string next;
    FK_ASSIGN_OR_RETURN(bool recursive, c.q_bool("recursive", false));
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      const std::string& target = c.labels["target"];
      const std::string group_arn = ctx.arns().thing_group("");
      if (!recursive || target.rfind(group_arn, 0) != 0) {
        FK_ASSIGN_OR_RETURN(auto names, txn.store().list_target_policies(
                                            target, storage::Page{page.after, page.size + 1}));
        for (const auto& n : names_page(names, page.size, &next))
          policies.push_back(policy_entry(ctx, n.get<std::string>()));
        return Status::ok();
      }
      // recursive on a thing group: its policies and those of its parents, up the hierarchy.
      std::set<std::string> all;
      std::string group = target.substr(group_arn.size());
      for (int depth = 0; !group.empty() && depth < 16; ++depth) {
        FK_ASSIGN_OR_RETURN(auto g, txn.describe_thing_group(group));
        FK_ASSIGN_OR_RETURN(auto names,
                            txn.store().list_target_policies(ctx.arns().thing_group(g.name),
                                                             storage::Page{"", 1000}));
        all.insert(names.begin(), names.end());
        group = g.parent_name;
      }
      std::vector<std::string> names(all.upper_bound(page.after), all.end());
      for (const auto& n : names_page(names, page.size, &next))
        policies.push_back(policy_entry(ctx, n.get<std::string>()));
      return Status::ok();
    }));
    json out = {{"policies", policies}};
    if (!next.empty()) out["nextMarker"] = next;
    return out;
  });
  t.add("POST", "/policy-targets/{policyName}", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(PageRequest page, page_request(c, "marker", "pageSize"));
    json targets;
    std::string next;
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(auto p, txn.get_policy(c.labels["policyName"]));
      FK_ASSIGN_OR_RETURN(auto names, txn.store().list_policy_targets(
                                          p.name, storage::Page{page.after, page.size + 1}));
      targets = names_page(names, page.size, &next);
      return Status::ok();
    }));
    json out = {{"targets", targets}};
    if (!next.empty()) out["nextMarker"] = next;
    return out;
  });
  t.add("POST", "/effective-policies", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(std::string principal, c.member("principal"));
    std::string thing = c.q("thingName").value_or("");
    json list = json::array();
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(auto e, effective(ctx, txn, principal, thing, {}, {}));
      for (const auto& p : e.policies) {
        FK_ASSIGN_OR_RETURN(auto rec, txn.get_policy(p.name));
        FK_ASSIGN_OR_RETURN(auto v, txn.get_policy_version(p.name, rec.default_version_id));
        list.push_back({{"policyName", p.name},
                        {"policyArn", ctx.arns().policy(p.name)},
                        {"policyDocument", v.document}});
      }
      return Status::ok();
    }));
    return json{{"effectivePolicies", list}};
  });
  t.add("POST", "/test-authorization", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(std::string principal, c.member("principal"));
    FK_ASSIGN_OR_RETURN(auto add, string_list_member(c, "policyNamesToAdd", false));
    FK_ASSIGN_OR_RETURN(auto skip, string_list_member(c, "policyNamesToSkip", false));
    const json& infos = c.body.contains("authInfos") ? c.body["authInfos"] : json();
    if (!infos.is_array() || infos.empty() || infos.size() > 10)
      return bad_member("authInfos", "a list of 1 to 10 {actionType, resources}");
    std::string client_id = c.q("clientId").value_or("");
    json results = json::array();
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(auto e, effective(ctx, txn, principal, client_id, add, skip));
      policy::RequestContext rc = e.context;
      rc.connect_attributes = std::vector<std::string>{};
      for (const auto& info : infos) {
        if (!info.is_object() || !info.contains("actionType") || !info["actionType"].is_string())
          return bad_member("authInfos.actionType", "one of PUBLISH, SUBSCRIBE, RECEIVE, CONNECT");
        const std::string type = info["actionType"].get<std::string>();
        std::string action;
        if (type == "PUBLISH") action = "iot:Publish";
        if (type == "SUBSCRIBE") action = "iot:Subscribe";
        if (type == "RECEIVE") action = "iot:Receive";
        if (type == "CONNECT") action = "iot:Connect";
        if (action.empty())
          return bad_member("authInfos.actionType", "one of PUBLISH, SUBSCRIBE, RECEIVE, CONNECT");
        if (!info.contains("resources") || !info["resources"].is_array() ||
            info["resources"].empty())
          return bad_member("authInfos.resources", "a non-empty list of ARNs");
        // The whole authInfo is allowed only if every resource is.
        policy::Verdict worst;
        worst.decision = policy::Decision::kAllowed;
        json allowed = json::array();
        json explicit_deny = json::array();
        std::vector<std::string> missing;
        for (const auto& r : info["resources"]) {
          if (!r.is_string()) return bad_member("authInfos.resources", "a list of strings");
          policy::Verdict v = policy::evaluate(e.policies, action, r.get<std::string>(), rc);
          for (auto& m : v.missing_context) missing.push_back(std::move(m));
          if (v.decision == policy::Decision::kExplicitDeny) {
            explicit_deny.push_back(policy_entry(ctx, v.policy_name));
            worst.decision = policy::Decision::kExplicitDeny;
          } else if (v.decision == policy::Decision::kImplicitDeny) {
            if (worst.decision == policy::Decision::kAllowed)
              worst.decision = policy::Decision::kImplicitDeny;
          } else {
            allowed.push_back(policy_entry(ctx, v.policy_name));
          }
        }
        json implicit = json::array();
        if (worst.decision == policy::Decision::kImplicitDeny) {
          for (const auto& p : e.policies) implicit.push_back(policy_entry(ctx, p.name));
        }
        std::sort(missing.begin(), missing.end());
        missing.erase(std::unique(missing.begin(), missing.end()), missing.end());
        results.push_back({{"authInfo", info},
                           {"allowed", {{"policies", allowed}}},
                           {"denied",
                            {{"implicitDeny", {{"policies", implicit}}},
                             {"explicitDeny", {{"policies", explicit_deny}}}}},
                           {"authDecision", policy::to_string(worst.decision)},
                           {"missingContextValues", missing}});
      }
      return Status::ok();
    }));
    return json{{"authResults", results}};
  });
}

}  // namespace fk::api
