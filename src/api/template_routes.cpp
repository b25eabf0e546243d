// Provisioning templates: create, describe, update, delete, list, versions. Bodies are checked
// by the template engine before they are stored, so RegisterThing never meets a bad one.
#include "api/routing.h"
#include "provisioning/provisioning_template.h"
#include "provisioning/register_thing.h"

namespace fk::api {

using registry::Txn;

namespace {

Status check_body(const std::string& body) {
  return provisioning::ProvisioningTemplate::parse(body).status();
}

Result<std::optional<std::string>> hook_member(const Call& c) {
  if (!c.body.contains("preProvisioningHook") || c.body["preProvisioningHook"].is_null())
    return std::optional<std::string>();
  const json& h = c.body["preProvisioningHook"];
  if (!h.is_object() || !h.contains("targetArn") || !h["targetArn"].is_string())
    return bad_member("preProvisioningHook", "{targetArn, payloadVersion}");
  // fleetkey calls a webhook where AWS calls a Lambda: the target is its URL.
  const std::string target = h["targetArn"].get<std::string>();
  if (target.rfind("http://", 0) != 0 && target.rfind("https://", 0) != 0)
    return bad_member("preProvisioningHook.targetArn",
                      "an http:// or https:// URL (fleetkey calls a webhook, not a Lambda)");
  return std::optional<std::string>(h.dump());
}

json describe(const ApiContext& ctx, const storage::TemplateRecord& t, const std::string& body) {
  json j = {{"templateArn", ctx.arns().provisioning_template(t.name)},
            {"templateName", t.name},
            {"description", t.description},
            {"creationDate", t.created_at},
            {"lastModifiedDate", t.updated_at},
            {"defaultVersionId", t.default_version_id},
            {"templateBody", body},
            {"enabled", t.enabled},
            {"provisioningRoleArn", t.provisioning_role_arn},
            {"type", t.type}};
  if (!t.pre_provisioning_hook.empty())
    j["preProvisioningHook"] = json::parse(t.pre_provisioning_hook, nullptr, false);
  return j;
}

}  // namespace

void add_template_routes(RouteTable& t, ApiContext& ctx) {
  t.add("POST", "/provisioning-templates", [&ctx](Call& c) -> Result<json> {
    registry::CreateTemplateRequest req;
    FK_ASSIGN_OR_RETURN(req.name, c.member("templateName"));
    FK_ASSIGN_OR_RETURN(req.body, c.member("templateBody"));
    FK_ASSIGN_OR_RETURN(req.provisioning_role_arn, c.member("provisioningRoleArn"));
    FK_ASSIGN_OR_RETURN(auto description, c.optional_member("description"));
    req.description = description.value_or("");
    FK_ASSIGN_OR_RETURN(req.enabled, c.bool_member("enabled", false));
    FK_ASSIGN_OR_RETURN(auto type, c.optional_member("type"));
    req.type = type.value_or("FLEET_PROVISIONING");
    FK_ASSIGN_OR_RETURN(auto hook, hook_member(c));
    req.pre_provisioning_hook = hook.value_or("");
    FK_RETURN_IF_ERROR(check_body(req.body));
    storage::TemplateRecord rec;
    FK_RETURN_IF_ERROR(ctx.registry.write([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(rec, txn.create_template(req));
      return Status::ok();
    }));
    return json{{"templateArn", ctx.arns().provisioning_template(rec.name)},
                {"templateName", rec.name},
                {"defaultVersionId", rec.default_version_id}};
  });
  t.add("GET", "/provisioning-templates/{templateName}", [&ctx](Call& c) -> Result<json> {
    json out;
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(auto rec, txn.describe_template(c.labels["templateName"]));
      FK_ASSIGN_OR_RETURN(auto v, txn.describe_template_version(rec.name, rec.default_version_id));
      out = describe(ctx, rec, v.body);
      return Status::ok();
    }));
    return out;
  });
  t.add("PATCH", "/provisioning-templates/{templateName}", [&ctx](Call& c) -> Result<json> {
    registry::UpdateTemplateRequest req;
    req.name = c.labels["templateName"];
    FK_ASSIGN_OR_RETURN(req.description, c.optional_member("description"));
    if (c.body.contains("enabled")) {
      FK_ASSIGN_OR_RETURN(bool e, c.bool_member("enabled", false));
      req.enabled = e;
    }
    if (c.body.contains("defaultVersionId")) {
      if (!c.body["defaultVersionId"].is_number_integer())
        return bad_member("defaultVersionId", "an integer");
      req.default_version_id = c.body["defaultVersionId"].get<std::int64_t>();
    }
    FK_ASSIGN_OR_RETURN(req.provisioning_role_arn, c.optional_member("provisioningRoleArn"));
    FK_ASSIGN_OR_RETURN(req.pre_provisioning_hook, hook_member(c));
    FK_ASSIGN_OR_RETURN(req.remove_pre_provisioning_hook,
                        c.bool_member("removePreProvisioningHook", false));
    FK_RETURN_IF_ERROR(ctx.registry.write([&](Txn& txn) { return txn.update_template(req); }));
    return json::object();
  });
  t.add("DELETE", "/provisioning-templates/{templateName}", [&ctx](Call& c) -> Result<json> {
    FK_RETURN_IF_ERROR(ctx.registry.write(
        [&](Txn& txn) { return txn.delete_template(c.labels["templateName"]); }));
    return json::object();
  });
  t.add("GET", "/provisioning-templates", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(PageRequest page, page_request(c, "nextToken", "maxResults"));
    json templates = json::array();
    std::string next;
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(auto list,
                          txn.store().list_templates(storage::Page{page.after, page.size + 1}));
      if (list.size() > page.size) {
        list.resize(page.size);
        next = list.back().name;
      }
      for (const auto& rec : list) {
        templates.push_back({{"templateArn", ctx.arns().provisioning_template(rec.name)},
                             {"templateName", rec.name},
                             {"description", rec.description},
                             {"creationDate", rec.created_at},
                             {"lastModifiedDate", rec.updated_at},
                             {"enabled", rec.enabled},
                             {"type", rec.type}});
      }
      return Status::ok();
    }));
    json out = {{"templates", templates}};
    if (!next.empty()) out["nextToken"] = next;
    return out;
  });
  t.add("POST", "/provisioning-templates/{templateName}/versions", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(std::string body, c.member("templateBody"));
    FK_ASSIGN_OR_RETURN(bool set_default, c.q_bool("setAsDefault", false));
    FK_RETURN_IF_ERROR(check_body(body));
    storage::TemplateVersionRecord v;
    FK_RETURN_IF_ERROR(ctx.registry.write([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(v,
                          txn.create_template_version(c.labels["templateName"], body, set_default));
      return Status::ok();
    }));
    return json{{"templateArn", ctx.arns().provisioning_template(c.labels["templateName"])},
                {"templateName", c.labels["templateName"]},
                {"versionId", v.version_id},
                {"isDefaultVersion", set_default}};
  });
  t.add("GET", "/provisioning-templates/{templateName}/versions/{versionId}",
        [&ctx](Call& c) -> Result<json> {
          FK_ASSIGN_OR_RETURN(std::int64_t id, integer_label(c, "versionId"));
          json out;
          FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
            FK_ASSIGN_OR_RETURN(auto rec, txn.describe_template(c.labels["templateName"]));
            FK_ASSIGN_OR_RETURN(auto v, txn.describe_template_version(rec.name, id));
            out = {{"versionId", v.version_id},
                   {"creationDate", v.created_at},
                   {"templateBody", v.body},
                   {"isDefaultVersion", v.version_id == rec.default_version_id}};
            return Status::ok();
          }));
          return out;
        });
  t.add("DELETE", "/provisioning-templates/{templateName}/versions/{versionId}",
        [&ctx](Call& c) -> Result<json> {
          FK_ASSIGN_OR_RETURN(std::int64_t id, integer_label(c, "versionId"));
          FK_RETURN_IF_ERROR(ctx.registry.write(
              [&](Txn& txn) { return txn.delete_template_version(c.labels["templateName"], id); }));
          return json::object();
        });
}

}  // namespace fk::api
