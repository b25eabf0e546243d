// What a connection is allowed, as stored: the policies that apply to a certificate used with a
// client id, and the facts their variables read (the thing, its type and attributes, the
// certificate's subject and issuer).
//
// AWS's rules: the certificate's own policies, plus the policies of the thing's groups (up the
// hierarchy) when the client id names a thing attached to the certificate; default versions
// only. Read inside a registry read or write (Txn), so it is one consistent snapshot. The
// broker's authorizer and TestAuthorization/GetEffectivePolicies both use it.
#pragma once

#include <set>
#include <string>

#include "policy/context.h"
#include "policy/evaluator.h"
#include "registry/registry.h"

namespace fk::registry {

struct EffectivePolicies {
  std::string certificate_id;
  std::string client_id;
  policy::PolicySet policies;          // parsed default versions
  policy::RequestContext context;      // thing and certificate facts (no source IP)
  std::set<std::string> policy_names;  // for invalidation
  std::set<std::string> group_names;   // the thing's groups and their ancestors
  std::string thing_name;              // the associated thing ("" when none)
};

// `client_id` empty: only the certificate's policies (no thing association). `known`: the
// certificate's facts when the caller has them (the TLS layer did), else the stored PEM is
// parsed.
Result<EffectivePolicies> load_effective_policies(Txn& txn, const ArnScope& arns,
                                                  std::string_view certificate_id,
                                                  std::string_view client_id,
                                                  const policy::CertificateFacts* known = nullptr);

}  // namespace fk::registry
