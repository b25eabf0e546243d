// Provisioning templates: create, describe, update, delete, list, versions. Bodies are checked
// by the template engine before they are stored, so RegisterThing never meets a bad one.
#include "api/routing.h"
#include "crypto/certificate_authority.h"
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

// RegisterThing over HTTP (the admin's, not a device's): a template body applied to an existing
// certificate named by the parameter AWS::IoT::Certificate::Id, in one transaction.
void add_register_routes(RouteTable& t, ApiContext& ctx) {
  t.add("POST", "/things", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(std::string body, c.member("templateBody"));
    std::map<std::string, std::string> parameters;
    if (c.body.contains("parameters") && !c.body["parameters"].is_null()) {
      if (!c.body["parameters"].is_object()) return bad_member("parameters", "a map of strings");
      for (const auto& [k, v] : c.body["parameters"].items()) {
        if (!v.is_string()) return bad_member("parameters." + k, "a string");
        parameters[k] = v.get<std::string>();
      }
    }
    FK_ASSIGN_OR_RETURN(auto parsed, provisioning::ProvisioningTemplate::parse(body));
    auto id = parameters.find("AWS::IoT::Certificate::Id");
    if (id == parameters.end())
      return invalid_request(
          "parameters must name the certificate: AWS::IoT::Certificate::Id (fleetkey registers "
          "things for certificates it knows; make one first)");
    std::string pem;
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(auto cert, txn.describe_certificate(id->second));
      pem = cert.pem;
      return Status::ok();
    }));
    provisioning::PseudoParameters pseudo{id->second,
                                          provisioning::certificate_subject_parameters(pem)};
    auto evaluated = parsed.evaluate(parameters, pseudo);
    if (auto* e = std::get_if<provisioning::PlanError>(&evaluated))
      return invalid_request(e->message);
    const auto& plan = std::get<provisioning::Plan>(evaluated);
    provisioning::RegisterOptions options;
    options.certificate_id = id->second;
    options.thing_must_not_exist = false;
    options.parameters = parameters;
    options.source = provisioning::RegisterOptions::Source::kApi;
    provisioning::Registered done;
    FK_RETURN_IF_ERROR(ctx.registry.write([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(done, provisioning::apply_plan(txn, ctx.arns(), plan, options));
      return Status::ok();
    }));
    return json{{"certificatePem", pem}, {"resourceArns", done.resource_arns}};
  });
  // CreateProvisioningClaim: a temporary claim certificate (5 minutes) that may use only this
  // template's provisioning topics (policy fleetkey-claim-<template>, made on first use).
  t.add(
      "POST", "/provisioning-templates/{templateName}/provisioning-claim",
      [&ctx](Call& c) -> Result<json> {
        const std::string name = c.labels["templateName"];
        FK_RETURN_IF_ERROR(
            ctx.registry.read([&](Txn& txn) { return txn.describe_template(name).status(); }));
        const std::string policy = "fleetkey-claim-" + name;
        const std::string topics = "$aws/provisioning-templates/" + name + "/provision/*";
        json doc = {
            {"Version", "2012-10-17"},
            {"Statement",
             json::array({{{"Effect", "Allow"}, {"Action", "iot:Connect"}, {"Resource", "*"}},
                          {{"Effect", "Allow"},
                           {"Action", {"iot:Publish", "iot:Receive"}},
                           {"Resource",
                            {"arn:aws:iot:*:*:topic/$aws/certificates/create/*",
                             "arn:aws:iot:*:*:topic/$aws/certificates/create-from-csr/*",
                             "arn:aws:iot:*:*:topic/" + topics}}},
                          {{"Effect", "Allow"},
                           {"Action", "iot:Subscribe"},
                           {"Resource",
                            {"arn:aws:iot:*:*:topicfilter/$aws/certificates/create/*",
                             "arn:aws:iot:*:*:topicfilter/$aws/certificates/create-from-csr/*",
                             "arn:aws:iot:*:*:topicfilter/" + topics}}}})}};
        crypto::IssueOptions issue;
        const EpochSeconds expiration = ctx.clock.now() + 300;
        issue.not_after = expiration;
        issue.common_name = "fleetkey provisioning claim " + name;
        FK_ASSIGN_OR_RETURN(
            auto made, ctx.registry.create_keys_and_certificate(
                           crypto::KeySpec::rsa(2048), storage::CertificateStatus::kActive, issue));
        FK_RETURN_IF_ERROR(ctx.registry.write([&](Txn& txn) -> Status {
          FK_ASSIGN_OR_RETURN(auto existing, txn.store().get_policy(policy));
          if (!existing) FK_RETURN_IF_ERROR(txn.create_policy(policy, doc.dump()).status());
          return txn.attach_policy(policy, ctx.arns().certificate(made.certificate.certificate_id));
        }));
        return json{
            {"certificateId", made.certificate.certificate_id},
            {"certificatePem", made.certificate.pem},
            {"keyPair",
             {{"PublicKey", made.keys.public_key_pem}, {"PrivateKey", made.keys.private_key_pem}}},
            {"expiration", expiration}};
      });
}

}  // namespace fk::api
