#include "provisioning/fleet_provisioning.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "codec/bounded_json.h"
#include "crypto/x509.h"
#include "provisioning/register_thing.h"

namespace fk::provisioning {
namespace {

constexpr const char* kTokenKeySetting = "fleet_provisioning.token_key";

std::string_view operation_name(Operation op) {
  switch (op) {
    case Operation::kCreateKeysAndCertificate:
      return "CreateKeysAndCertificate";
    case Operation::kCreateCertificateFromCsr:
      return "CreateCertificateFromCsr";
    case Operation::kRegisterThing:
      return "RegisterThing";
  }
  return "";
}

// A registry failure in AWS's rejected shape.
std::tuple<int, std::string> rejection_of(const Status& st) {
  switch (st.code()) {
    case ErrorCode::kAlreadyExists:
    case ErrorCode::kDeleteConflict:
    case ErrorCode::kVersionConflict:
      return {409, "ResourceConflict"};
    case ErrorCode::kNotFound:
      return {404, "ResourceNotFound"};
    case ErrorCode::kLimitExceeded:
      return {400, "LimitExceeded"};
    case ErrorCode::kCertificateValidation:
      return {400, "InvalidCertificateSigningRequest"};
    case ErrorCode::kUnavailable:
    case ErrorCode::kInternal:
      return {500, "InternalError"};
    default:
      return {400, "InvalidRequest"};
  }
}

}  // namespace

Result<std::unique_ptr<FleetProvisioning>> FleetProvisioning::create(registry::Registry& registry,
                                                                     const Clock& clock,
                                                                     FleetProvisioningConfig config,
                                                                     PreProvisioningHook* hook) {
  std::string key;
  FK_RETURN_IF_ERROR(registry.write([&](registry::Txn& t) -> Status {
    FK_ASSIGN_OR_RETURN(auto existing, t.store().get_setting(kTokenKeySetting));
    if (existing) {
      key = *existing;
      return Status::ok();
    }
    key = crypto::random_hex(32);
    return t.store().put_setting(kTokenKeySetting, key);
  }));
  return std::unique_ptr<FleetProvisioning>(
      new FleetProvisioning(registry, clock, std::move(config), std::move(key), hook));
}

FleetProvisioning::FleetProvisioning(registry::Registry& registry, const Clock& clock,
                                     FleetProvisioningConfig config, std::string key,
                                     PreProvisioningHook* hook)
    : registry_(registry),
      clock_(clock),
      config_(std::move(config)),
      tokens_(std::move(key)),
      hook_(hook) {}

void FleetProvisioning::count(const RequestTopic& r, const std::string& outcome) {
  std::lock_guard<std::mutex> lock(mu_);
  ++counters_[std::string(operation_name(r.operation)) + "." + outcome];
}

std::map<std::string, std::uint64_t> FleetProvisioning::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

Reply FleetProvisioning::reject(const RequestTopic& r, const Requester& who, int status,
                                std::string code, std::string message) {
  count(r, "Failure." + code);
  log::warn("provisioning.rejected", {{"operation", std::string(operation_name(r.operation))},
                                      {"client", who.client_id},
                                      {"claim_certificate", who.claim_certificate_id},
                                      {"error", code},
                                      {"reason", message}});
  count_by_source(r, who, false);
  record(who, "provisioning_rejected", code,
         std::string(operation_name(r.operation)) + " rejected (" + std::to_string(status) +
             "): " + message);
  return {reply_topic(r, false), encode(r.format, Rejection{status, code, message}), false};
}

Reply FleetProvisioning::accept(const RequestTopic& r, const Requester& who, std::string payload,
                                std::string detail) {
  count(r, "Success");
  count_by_source(r, who, true);
  record(who, "provisioning_accepted", std::string(operation_name(r.operation)), std::move(detail));
  return {reply_topic(r, true), std::move(payload), true};
}

void FleetProvisioning::count_by_source(const RequestTopic& r, const Requester& who,
                                        bool accepted) {
  const char* result = accepted ? ".accepted" : ".rejected";
  std::lock_guard<std::mutex> lock(mu_);
  // Claims and templates are the operator's (a connection needs a registered certificate and
  // each template is a registry record), but bound the table anyway.
  if (counters_.size() >= kMaxCounters) return;
  ++counters_["claim." + who.claim_certificate_id + result];
  if (r.operation == Operation::kRegisterThing) ++counters_["template." + r.template_name + result];
}

void FleetProvisioning::record(const Requester& who, const char* event, std::string reason,
                               std::string detail, std::string thing) {
  if (config_.events == nullptr) return;
  DeviceEvent e;
  e.certificate_id = who.claim_certificate_id;
  e.client_id = who.client_id;
  e.thing = std::move(thing);
  e.event = event;
  e.reason = std::move(reason);
  e.detail = std::move(detail);
  config_.events->record(std::move(e));
}

namespace {
std::string rate_text(double rate) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", rate);
  return buf;
}
}  // namespace

std::optional<Reply> FleetProvisioning::admit(const RequestTopic& r, const Requester& who) {
  if (!client_rate_.take(who.claim_certificate_id + "/" + who.client_id,
                         config_.max_requests_per_client_per_second,
                         2 * config_.max_requests_per_client_per_second))
    return reject(r, who, 429, "Throttled",
                  "client " + who.client_id + " exceeded " +
                      rate_text(config_.max_requests_per_client_per_second) +
                      " provisioning requests per second on one connection");
  if (!claim_rate_.take(who.claim_certificate_id, config_.max_requests_per_second,
                        2 * config_.max_requests_per_second))
    return reject(r, who, 429, "Throttled",
                  "claim certificate " + who.claim_certificate_id + " exceeded " +
                      rate_text(config_.max_requests_per_second) +
                      " provisioning requests per second");
  return std::nullopt;
}

Reply FleetProvisioning::handle(const RequestTopic& r, std::string_view payload,
                                const Requester& who) {
  if (auto throttled = admit(r, who)) return std::move(*throttled);
  return handle_admitted(r, payload, who);
}

Reply FleetProvisioning::handle_admitted(const RequestTopic& r, std::string_view payload,
                                         const Requester& who) {
  const auto started = std::chrono::steady_clock::now();
  Reply reply = [&] {
    switch (r.operation) {
      case Operation::kCreateKeysAndCertificate:
        return create_keys(r, payload, who);
      case Operation::kCreateCertificateFromCsr:
        return create_from_csr(r, payload, who);
      case Operation::kRegisterThing:
        return register_thing(r, payload, who);
    }
    return reject(r, who, 400, "InvalidRequest", "unknown operation");
  }();
  durations_.with({std::string(operation_name(r.operation))})
      .observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  return reply;
}

void FleetProvisioning::write_metrics(metrics::Exposition& out) const {
  metrics::LabeledCounter requests({"operation", "result"});
  for (const auto& [key, n] : counters()) {
    if (key.rfind("claim.", 0) == 0 || key.rfind("template.", 0) == 0) continue;  // console only
    // "RegisterThing.Success", "CreateCertificateFromCsr.Failure.InvalidPayload"
    const auto dot = key.find('.');
    const std::string op = key.substr(0, dot);
    std::string rest = dot == std::string::npos ? "" : key.substr(dot + 1);
    if (rest == "Success") rest = "accepted";
    if (rest.rfind("Failure.", 0) == 0) rest = rest.substr(8);
    requests.with({op, rest}).add(n);
  }
  out.counters("fleetkey_provisioning_requests_total",
               "Fleet provisioning requests answered, by operation and result (accepted or the "
               "errorCode).",
               requests);
  out.histograms("fleetkey_provisioning_request_duration_seconds",
                 "Fleet provisioning requests, dequeued to answered, by operation.", durations_);
}

Reply FleetProvisioning::throttled(const RequestTopic& r, const Requester& who, std::string why) {
  return reject(r, who, 429, "Throttled", std::move(why));
}

Reply FleetProvisioning::create_keys(const RequestTopic& r, std::string_view payload,
                                     const Requester& who) {
  if (Status st = decode_create_keys(r.format, payload); !st.is_ok())
    return reject(r, who, 400, "InvalidPayload", st.message());
  if (!keygen_rate_.take(who.claim_certificate_id, config_.max_server_keys_per_second,
                         2 * config_.max_server_keys_per_second))
    return reject(r, who, 429, "Throttled",
                  "claim certificate " + who.claim_certificate_id + " exceeded " +
                      rate_text(config_.max_server_keys_per_second) +
                      " CreateKeysAndCertificate requests per second (server-made keys; a "
                      "device can send a CSR instead)");
  auto made = registry_.create_keys_and_certificate(config_.server_key,
                                                    storage::CertificateStatus::kPendingActivation);
  if (!made.is_ok()) {
    auto [status, code] = rejection_of(made.status());
    return reject(r, who, status, code, made.status().message());
  }
  const std::string& id = made->certificate.certificate_id;
  std::string token =
      tokens_.issue({id, who.claim_certificate_id, clock_.now() + kOwnershipTokenLifetime,
                     crypto::random_hex(8)});
  return accept(
      r, who,
      encode(r.format, KeysAccepted{id, made->certificate.pem, made->keys.private_key_pem, token}),
      "certificate " + id + " issued (PENDING_ACTIVATION until RegisterThing)");
}

Reply FleetProvisioning::create_from_csr(const RequestTopic& r, std::string_view payload,
                                         const Requester& who) {
  auto req = decode_csr_request(r.format, payload);
  if (!req.is_ok()) return reject(r, who, 400, "InvalidPayload", req.status().message());
  auto made = registry_.create_certificate_from_csr(req->certificate_signing_request,
                                                    storage::CertificateStatus::kPendingActivation);
  if (!made.is_ok()) {
    if (made.status().code() == ErrorCode::kCertificateValidation ||
        made.status().code() == ErrorCode::kInvalidRequest)
      return reject(r, who, 400, "InvalidCertificateSigningRequest", made.status().message());
    auto [status, code] = rejection_of(made.status());
    return reject(r, who, status, code, made.status().message());
  }
  std::string token =
      tokens_.issue({made->certificate_id, who.claim_certificate_id,
                     clock_.now() + kOwnershipTokenLifetime, crypto::random_hex(8)});
  return accept(
      r, who, encode(r.format, CsrAccepted{made->certificate_id, made->pem, token}),
      "certificate " + made->certificate_id + " issued (PENDING_ACTIVATION until RegisterThing)");
}

Reply FleetProvisioning::register_thing(const RequestTopic& r, std::string_view payload,
                                        const Requester& who) {
  auto req = decode_register_thing(r.format, payload);
  if (!req.is_ok()) return reject(r, who, 400, "InvalidPayload", req.status().message());
  auto claims =
      tokens_.verify(req->certificate_ownership_token, who.claim_certificate_id, clock_.now());
  if (!claims.is_ok())
    return reject(r, who, 400, "InvalidCertificateOwnershipToken", claims.status().message());

  // The template (default version) and the new certificate, from one snapshot.
  storage::TemplateRecord tmpl;
  std::string body;
  std::string cert_pem;
  Status st = registry_.read([&](registry::Txn& t) -> Status {
    FK_ASSIGN_OR_RETURN(tmpl, t.describe_template(r.template_name));
    FK_ASSIGN_OR_RETURN(auto v, t.describe_template_version(tmpl.name, tmpl.default_version_id));
    body = v.body;
    FK_ASSIGN_OR_RETURN(auto cert, t.describe_certificate(claims->certificate_id));
    cert_pem = cert.pem;
    return Status::ok();
  });
  if (!st.is_ok()) {
    if (st.code() == ErrorCode::kNotFound && cert_pem.empty() && body.empty())
      return reject(r, who, 404, "ResourceNotFound", "Template " + r.template_name + " not found");
    auto [status, code] = rejection_of(st);
    return reject(r, who, status, code, st.message());
  }
  if (!tmpl.enabled)
    return reject(r, who, 400, "TemplateDisabled",
                  "Template " + r.template_name +
                      " is disabled (enable it with "
                      "update-provisioning-template --enabled)");
  if (tmpl.type != "FLEET_PROVISIONING")
    return reject(r, who, 400, "InvalidRequest",
                  "Template " + r.template_name + " is a " + tmpl.type + " template");
  std::shared_ptr<const ProvisioningTemplate> parsed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = templates_.find({tmpl.name, tmpl.default_version_id});
    if (it != templates_.end()) parsed = it->second;
  }
  if (!parsed) {
    auto p = ProvisioningTemplate::parse(body);
    if (!p.is_ok()) return reject(r, who, 400, "InvalidTemplate", p.status().message());
    parsed = std::make_shared<const ProvisioningTemplate>(std::move(*p));
    std::lock_guard<std::mutex> lock(mu_);
    if (templates_.size() > 1000) templates_.clear();
    templates_[{tmpl.name, tmpl.default_version_id}] = parsed;
  }
  // The pre-provisioning hook decides, and may override parameters (AWS's contract).
  if (!tmpl.pre_provisioning_hook.empty()) {
    auto hook = nlohmann::json::parse(tmpl.pre_provisioning_hook, nullptr, false);
    const std::string target = hook.is_object() ? hook.value("targetArn", "") : "";
    if (!hook_ || target.empty())
      return reject(r, who, 403, "AccessDenied",
                    "the template's pre-provisioning hook cannot be called");
    nlohmann::json input = {
        {"claimCertificateId", who.claim_certificate_id},
        {"certificateId", claims->certificate_id},
        {"certificatePem", cert_pem},
        {"templateArn", registry_.config().arns.provisioning_template(tmpl.name)},
        {"clientId", who.client_id},
        {"parameters", req->parameters}};
    auto answer = hook_->call(target, input.dump());
    if (!answer.is_ok())
      return reject(r, who, 403, "AccessDenied",
                    "the pre-provisioning hook failed: " + answer.status().message());
    auto parsed_answer = codec::parse_json(*answer);
    const nlohmann::json out = parsed_answer.is_ok() ? std::move(*parsed_answer) : nlohmann::json();
    if (!out.is_object())
      return reject(r, who, 403, "AccessDenied",
                    "the pre-provisioning hook answered no JSON object");
    auto allow = out.find("allowProvisioning");
    if (allow == out.end() || !allow->is_boolean() || !allow->get<bool>())
      return reject(r, who, 403, "AccessDenied", "the pre-provisioning hook refused provisioning");
    auto overrides = out.find("parameterOverrides");
    if (overrides != out.end() && overrides->is_object()) {
      for (const auto& [k, v] : overrides->items()) {
        if (!v.is_string())
          return reject(r, who, 403, "AccessDenied",
                        "the pre-provisioning hook's parameterOverrides." + k + " is not a string");
        req->parameters[k] = v.get<std::string>();
      }
    }
  }
  PseudoParameters pseudo{claims->certificate_id, certificate_subject_parameters(cert_pem)};
  auto evaluated = parsed->evaluate(req->parameters, pseudo);
  if (auto* e = std::get_if<PlanError>(&evaluated))
    return reject(r, who, e->status_code, e->error_code, e->message);
  const Plan& plan = std::get<Plan>(evaluated);

  Registered done;
  Refusal refusal;
  st = registry_.write([&](registry::Txn& t) -> Status {
    FK_ASSIGN_OR_RETURN(done, apply_plan(t, registry_.config().arns, plan,
                                         {claims->certificate_id, config_.thing_must_not_exist,
                                          r.template_name, req->parameters},
                                         &refusal));
    return Status::ok();
  });
  if (!st.is_ok()) {
    if (!refusal.error_code.empty())
      return reject(r, who, refusal.status_code, refusal.error_code, st.message());
    auto [status, code] = rejection_of(st);
    return reject(r, who, status, code, st.message());
  }
  FK_LOG_INFO("provisioning.registered", {{"thing", done.thing_name},
                                          {"certificate", claims->certificate_id},
                                          {"claim_certificate", who.claim_certificate_id},
                                          {"template", r.template_name}});
  return accept(r, who,
                encode(r.format, RegisterAccepted{plan.device_configuration, done.thing_name}),
                "thing " + done.thing_name + " registered with certificate " +
                    claims->certificate_id + " (template " + r.template_name + ")");
}

Result<std::size_t> FleetProvisioning::sweep() {
  const EpochSeconds cutoff = clock_.now() - kOwnershipTokenLifetime;
  std::vector<std::string> stale;
  // Only what provisioning made (signed by the issuing CA): a certificate registered just in
  // time from a customer's CA also waits in PENDING_ACTIVATION, for its owner to activate it.
  const std::string issuing_ca = registry_.ca().issuing_certificate().certificate_id;
  FK_RETURN_IF_ERROR(registry_.read([&](registry::Txn& t) -> Status {
    storage::CertificateQuery q;
    q.ca_certificate_id = issuing_ca;
    FK_ASSIGN_OR_RETURN(auto certs, t.store().list_certificates(q));
    for (const auto& c : certs) {
      if (c.status != storage::CertificateStatus::kPendingActivation || c.created_at > cutoff ||
          c.ca_certificate_id != issuing_ca)
        continue;
      FK_ASSIGN_OR_RETURN(auto claimed, t.store().get_setting(claimed_key(c.certificate_id)));
      if (!claimed) stale.push_back(c.certificate_id);
    }
    return Status::ok();
  }));
  std::size_t deleted = 0;
  for (const auto& id : stale) {
    // One write each: a certificate claimed meanwhile makes only its own delete fail.
    Status st = registry_.write([&](registry::Txn& t) -> Status {
      FK_ASSIGN_OR_RETURN(auto claimed, t.store().get_setting(claimed_key(id)));
      if (claimed) return Status::ok();
      return t.delete_certificate(id, /*force=*/true);
    });
    if (st.is_ok()) ++deleted;
  }
  if (deleted) log::info("provisioning.swept", {{"certificates", std::to_string(deleted)}});
  return deleted;
}

}  // namespace fk::provisioning
