#include "provisioning/just_in_time.h"

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <variant>

#include "base/clock.h"
#include "base/log.h"
#include "crypto/x509.h"
#include "provisioning/provisioning_template.h"
#include "provisioning/register_thing.h"

namespace fk::provisioning {
namespace {

using Kind = JustInTimeOutcome::Kind;
using storage::CertificateStatus;

Status bad_config(const std::string& why) {
  return invalid_request("registrationConfig: " + why);
}

// The template a CA's registrationConfig names: its body and name ("" for an inline body).
struct JitpTemplate {
  std::string name;
  std::string body;
};

// From the stored registrationConfig; nullopt when it names no template (JITR).
Result<std::optional<JitpTemplate>> template_of(registry::Txn& txn, const std::string& config) {
  if (config.empty()) return std::optional<JitpTemplate>();
  const auto rc = nlohmann::json::parse(config, nullptr, false);
  if (!rc.is_object()) return std::optional<JitpTemplate>();
  if (auto body = rc.find("templateBody"); body != rc.end() && body->is_string())
    return std::optional<JitpTemplate>(JitpTemplate{"", body->get<std::string>()});
  auto name = rc.find("templateName");
  if (name == rc.end() || !name->is_string()) return std::optional<JitpTemplate>();
  FK_ASSIGN_OR_RETURN(auto tmpl, txn.describe_template(name->get<std::string>()));
  if (tmpl.type != "JITP")
    return invalid_request("template " + tmpl.name + " is a " + tmpl.type + " template, not JITP");
  if (!tmpl.enabled) return invalid_request("template " + tmpl.name + " is disabled");
  FK_ASSIGN_OR_RETURN(auto version,
                      txn.describe_template_version(tmpl.name, tmpl.default_version_id));
  return std::optional<JitpTemplate>(JitpTemplate{tmpl.name, version.body});
}

}  // namespace

Result<std::string> check_registration_config(registry::Txn& txn, const nlohmann::json& config) {
  if (config.is_null()) return std::string();
  if (!config.is_object()) return bad_config("must be an object");
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [k, v] : config.items()) {
    if (k != "templateBody" && k != "roleArn" && k != "templateName")
      return bad_config("unknown member " + k + " (templateBody, roleArn, templateName)");
    if (!v.is_string()) return bad_config(k + " must be a string");
    out[k] = v;
  }
  const bool body = out.contains("templateBody");
  const bool name = out.contains("templateName");
  if (body && name) return bad_config("give templateBody (with roleArn) or templateName, not both");
  if (out.contains("roleArn")) {
    const auto n = out["roleArn"].get_ref<const std::string&>().size();
    if (n < 20 || n > 2048) return bad_config("roleArn must be 20 to 2048 characters");
  }
  if (body) {
    if (!out.contains("roleArn")) return bad_config("templateBody needs a roleArn");
    auto parsed = ProvisioningTemplate::parse(out["templateBody"].get<std::string>());
    if (!parsed.is_ok()) return bad_config(parsed.status().message());
  }
  if (name) {
    const std::string n = out["templateName"].get<std::string>();
    FK_ASSIGN_OR_RETURN(auto tmpl, txn.describe_template(n));
    if (tmpl.type != "JITP")
      return bad_config("template " + n + " is a " + tmpl.type +
                        " template (create it with --type JITP)");
  }
  if (out.empty()) return std::string();
  return out.dump();
}

JustInTime::JustInTime(registry::Registry& registry, JustInTimeConfig config, Publish publish)
    : registry_(registry), config_(config), publish_(std::move(publish)) {}

JustInTimeOutcome JustInTime::on_unregistered_certificate(std::string_view der) {
  JustInTimeOutcome out;
  if (der.empty()) return out;
  auto info = crypto::parse_certificate(crypto::der_to_pem(der, "CERTIFICATE"));
  if (!info.is_ok() || info->is_ca) return out;
  out.certificate_id = info->certificate_id;

  // Which registered CA signed it (several may share a subject: the signature decides).
  std::optional<storage::CaCertificateRecord> ca;
  std::optional<JitpTemplate> jitp;
  Status template_error = Status::ok();
  Status st = registry_.read([&](registry::Txn& t) -> Status {
    FK_ASSIGN_OR_RETURN(auto cas, t.store().list_ca_certificates(storage::Page{}));
    for (auto& c : cas) {
      if (c.subject != info->issuer) continue;
      if (crypto::verify_signed_by(info->pem, c.pem).is_ok()) {
        ca = std::move(c);
        break;
      }
    }
    if (!ca || !ca->auto_registration) return Status::ok();
    auto found = template_of(t, ca->registration_config);
    if (found.is_ok())
      jitp = std::move(*found);
    else
      template_error = found.status();
    return Status::ok();
  });
  if (!st.is_ok()) {
    out.kind = Kind::kRefused;
    out.reason = "registry error: " + st.message();
    return out;
  }
  if (!ca) return out;
  out.ca_certificate_id = ca->certificate_id;
  const std::string who = "certificate " + out.certificate_id + " (CA " + ca->certificate_id + ")";
  out.kind = Kind::kRefused;
  if (ca->status != CertificateStatus::kActive) {
    out.reason =
        who + " is not registered and its CA is " + std::string(storage::to_string(ca->status));
    return out;
  }
  if (!ca->auto_registration) {
    out.reason = who +
                 " is not registered and its CA does not allow auto-registration "
                 "(update-ca-certificate --new-auto-registration-status ENABLE)";
    return out;
  }
  if (!template_error.is_ok()) {
    out.reason = who + " cannot be provisioned just in time: " + template_error.message();
    return out;
  }
  if (Status valid = crypto::verify_chain(info->pem, {ca->pem}, {}, registry_.clock().now());
      !valid.is_ok()) {
    out.reason = who + " cannot be registered: " + valid.message();
    return out;
  }

  // JITP: the template is evaluated before anything is written.
  std::optional<Plan> plan;
  if (jitp) {
    auto parsed = ProvisioningTemplate::parse(jitp->body);
    if (!parsed.is_ok()) {
      out.reason = who + " cannot be provisioned just in time: " + parsed.status().message();
      return out;
    }
    PseudoParameters pseudo{out.certificate_id, certificate_subject_parameters(info->pem)};
    auto evaluated = parsed->evaluate({}, pseudo);
    if (auto* e = std::get_if<PlanError>(&evaluated)) {
      out.reason = who + " cannot be provisioned just in time: " + e->message;
      return out;
    }
    plan = std::move(std::get<Plan>(evaluated));
  }

  bool existed = false;
  bool active = false;
  std::string thing;
  st = registry_.write([&](registry::Txn& t) -> Status {
    FK_ASSIGN_OR_RETURN(auto known, t.store().get_certificate(out.certificate_id));
    if (known) {
      existed = true;
      return Status::ok();
    }
    FK_ASSIGN_OR_RETURN(auto record, t.record_certificate({*info, ca->certificate_id,
                                                           CertificateStatus::kPendingActivation}));
    if (!plan) return Status::ok();
    RegisterOptions options;
    options.certificate_id = out.certificate_id;
    options.thing_must_not_exist = false;  // AWS: OverrideSettings decide
    options.template_name = jitp->name;
    options.source = RegisterOptions::Source::kApi;
    FK_ASSIGN_OR_RETURN(auto done, apply_plan(t, registry_.config().arns, *plan, options));
    thing = done.thing_name;
    FK_ASSIGN_OR_RETURN(auto after, t.describe_certificate(out.certificate_id));
    active = after.status == CertificateStatus::kActive;
    return Status::ok();
  });
  if (!st.is_ok()) {
    out.reason =
        who +
        (plan ? " cannot be provisioned just in time: " : " cannot be registered just in time: ") +
        st.message();
    return out;
  }
  if (existed) {
    out.kind = Kind::kAlreadyKnown;
    return out;
  }
  if (plan) {
    out.kind = Kind::kProvisioned;
    out.accept_now = config_.accept_first_connect && active;
    out.reason = who + " was provisioned just in time (thing " +
                 (thing.empty() ? std::string("none") : thing) + ", " +
                 (active ? "ACTIVE" : "not activated by the template") + "); reconnect";
    FK_LOG_INFO("provisioning.jitp", {{"certificate", out.certificate_id},
                                      {"ca_certificate", ca->certificate_id},
                                      {"template", jitp->name.empty() ? "(inline)" : jitp->name},
                                      {"thing", thing}});
    return out;
  }
  out.kind = Kind::kRegistered;
  out.reason = who +
               " was registered just in time as PENDING_ACTIVATION; it can connect once "
               "activated";
  FK_LOG_INFO("provisioning.jitr",
              {{"certificate", out.certificate_id}, {"ca_certificate", ca->certificate_id}});
  if (publish_) {
    const std::int64_t ms = epoch_ms();
    nlohmann::json event = {{"certificateId", out.certificate_id},
                            {"caCertificateId", ca->certificate_id},
                            {"timestamp", ms},
                            {"certificateStatus", "PENDING_ACTIVATION"},
                            {"awsAccountId", registry_.config().arns.account_id},
                            {"certificateRegistrationTimestamp", ms}};
    publish_("$aws/events/certificates/registered/" + ca->certificate_id, event.dump());
  }
  return out;
}

}  // namespace fk::provisioning
