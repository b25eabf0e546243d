#include "registry/effective_policies.h"

#include "crypto/x509.h"

namespace fk::registry {
namespace {

// Adds the default version of each policy attached to `target_arn`.
Status add_policies_of(Txn& txn, const std::string& target_arn, EffectivePolicies& out) {
  FK_ASSIGN_OR_RETURN(auto names, txn.store().list_target_policies(target_arn, storage::Page{}));
  for (const auto& name : names) {
    if (!out.policy_names.insert(name).second) continue;
    FK_ASSIGN_OR_RETURN(auto p, txn.store().get_policy(name));
    if (!p) continue;
    FK_ASSIGN_OR_RETURN(auto v, txn.store().get_policy_version(name, p->default_version_id));
    if (!v) continue;
    auto doc = policy::parse_document_shared(v->document);
    // Documents are validated when stored; one that no longer parses grants nothing.
    if (!doc.is_ok()) continue;
    out.policies.push_back({name, std::to_string(v->version_id), std::move(*doc)});
  }
  return Status::ok();
}

}  // namespace

Result<EffectivePolicies> load_effective_policies(Txn& txn, const ArnScope& arns,
                                                  std::string_view certificate_id,
                                                  std::string_view client_id,
                                                  const policy::CertificateFacts* known) {
  EffectivePolicies out;
  out.certificate_id = std::string(certificate_id);
  out.client_id = std::string(client_id);
  FK_ASSIGN_OR_RETURN(auto cert, txn.store().get_certificate(certificate_id));
  if (!cert) return not_found("certificate " + std::string(certificate_id) + " does not exist");
  policy::RequestContext& ctx = out.context;
  if (!client_id.empty()) ctx.client_id = std::string(client_id);
  if (known != nullptr) {
    ctx.certificate = *known;
  } else if (auto info = crypto::parse_certificate(cert->pem); info.is_ok()) {
    policy::CertificateFacts facts;
    facts.subject = info->subject_fields;
    facts.issuer = info->issuer_fields;
    facts.subject_alt_names = info->subject_alt_names;
    facts.issuer_alt_names = info->issuer_alt_names;
    facts.serial_number = info->serial_hex;
    ctx.certificate = std::move(facts);
  }
  const std::string cert_arn = arns.certificate(certificate_id);
  FK_RETURN_IF_ERROR(add_policies_of(txn, cert_arn, out));

  // The thing: the client id names a thing attached to this certificate.
  if (!client_id.empty()) {
    FK_ASSIGN_OR_RETURN(auto things, txn.store().list_principal_things(cert_arn, storage::Page{}));
    bool attached = false;
    for (const auto& t : things) attached = attached || t == client_id;
    ctx.thing_is_attached = attached;
    if (attached) {
      FK_ASSIGN_OR_RETURN(auto thing, txn.store().get_thing(client_id));
      if (thing) {
        out.thing_name = thing->name;
        ctx.thing = policy::ThingFacts{thing->name, thing->type_name, thing->attributes};
        // Group policies apply only when the client id is the thing's name (it is here).
        FK_ASSIGN_OR_RETURN(auto groups,
                            txn.store().list_groups_of_thing(thing->name, storage::Page{}));
        for (std::string g : groups) {
          while (!g.empty() && out.group_names.insert(g).second) {
            FK_RETURN_IF_ERROR(add_policies_of(txn, arns.thing_group(g), out));
            FK_ASSIGN_OR_RETURN(auto group, txn.store().get_thing_group(g));
            g = group ? group->parent_name : std::string();
          }
        }
      }
    }
  }
  return out;
}

}  // namespace fk::registry
