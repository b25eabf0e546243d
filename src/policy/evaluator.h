// Policy evaluation with AWS's (IAM's) logic: an explicit Deny beats every Allow, any Allow
// grants, nothing else is an implicit deny.
//
// Two ways in, one logic:
//  - evaluate(): one question (action, resource) against a set of policies and a context; used
//    by TestAuthorization and tests.
//  - Grant: the policies bound to one connection's context once (variables substituted,
//    conditions decided per action), then asked on the publish path with no allocation beyond
//    the resource text. The broker asks a Grant on every PUBLISH, SUBSCRIBE and delivery.
//
// Resources are full ARNs ("arn:aws:iot:eu-west-1:123456789012:topic/things/locker-1/state").
// In resources only `*` (crossing `/`) and `?` are wildcards; MQTT `+` and `#` are literal;
// text substituted from a variable is literal too. Pure; a Grant is immutable and thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "policy/context.h"
#include "policy/document.h"

namespace fk::policy {

struct NamedPolicy {
  std::string name;
  std::string version_id;  // the default version's id
  DocumentPtr document;
};
using PolicySet = std::vector<NamedPolicy>;

enum class Decision { kAllowed, kExplicitDeny, kImplicitDeny };
std::string_view to_string(Decision d);  // AWS's ALLOWED / EXPLICIT_DENY / IMPLICIT_DENY

struct Verdict {
  Decision decision = Decision::kImplicitDeny;
  // The statement that decided (Allowed / ExplicitDeny); empty for an implicit deny.
  std::string policy_name;
  int statement_index = -1;
  std::string sid;
  // Keys the policies needed but the context could not resolve (TestAuthorization's
  // missingContextValues).
  std::vector<std::string> missing_context;

  bool allowed() const { return decision == Decision::kAllowed; }
  // "allowed by policy P statement 0" / "denied by ..." / "no statement allowed it".
  std::string explain() const;
};

Verdict evaluate(const PolicySet& policies, std::string_view action, std::string_view resource,
                 const RequestContext& ctx);

// The MQTT actions a Grant answers quickly.
enum class MqttAction { kConnect, kPublish, kSubscribe, kReceive, kRetainPublish, kCount };
std::string_view action_name(MqttAction a);  // "iot:Connect", ...

// A wildcard pattern after variable substitution.
class Pattern {
 public:
  // `*` and `?` in `text` are wildcards unless `literal` marks them (per character).
  Pattern(std::string text, std::vector<bool> literal);
  static Pattern compile(std::string_view text);  // plain text: every * and ? is a wildcard
  bool matches(std::string_view s, bool ignore_case = false) const;
  const std::string& text() const { return text_; }
  Pattern substr(std::size_t pos, std::size_t len = std::string::npos) const;

 private:
  enum class Shape { kExact, kPrefix, kGeneral };  // no wildcard, one trailing `*`, other
  bool literal(std::size_t k) const;               // character k is not a wildcard
  std::string text_;
  std::vector<bool> literal_;  // per character; kept only for kGeneral
  Shape shape_ = Shape::kGeneral;
};

// Whether a resource pattern matches an ARN. Like IAM, the first five colon-separated parts
// (arn, partition, service, region, account) are matched part by part, so a `*` in the region
// never reaches into the resource; the rest ("topic/a:b/*") is matched as a whole.
bool arn_matches(const Pattern& pattern, std::string_view arn);

class Grant {
 public:
  // `arn_prefix` ("arn:aws:iot:<region>:<account>:"): the prefix of the resources this Grant
  // will be asked about; patterns are matched against it once, here, instead of per check.
  Grant(const PolicySet& policies, const RequestContext& ctx, std::string arn_prefix = {});
  // The same, sharing the caller's policies and prefix instead of copying them (a connection's
  // Grant shares them with the cached facts it was made from).
  Grant(std::shared_ptr<const PolicySet> policies, const RequestContext& ctx,
        std::shared_ptr<const std::string> arn_prefix);

  // `resource`: the full ARN. Fast: no variable or condition work, no allocation.
  bool allows(MqttAction action, std::string_view resource) const;
  // The same decision with the statement that made it (for logs and TestAuthorization).
  Verdict check(MqttAction action, std::string_view resource) const;

 private:
  // A statement's resource patterns for this request.
  struct Compiled {
    std::vector<Pattern> patterns;
    // The patterns that can match an ARN starting with arn_prefix_, as the part after it.
    std::vector<Pattern> residuals;
    bool full_only = false;  // a pattern only a full match can decide ("arn:*")
  };
  // 16 bytes: a connection holds one per (action, statement that applies).
  struct Rule {
    const Compiled* compiled;  // held by compiled_
    std::uint16_t policy;      // index in *policies_
    std::uint16_t statement;   // 2,048 characters per document: far fewer statements
    Effect effect;
    bool not_resource;
  };
  static std::shared_ptr<const Compiled> shared_compiled(
      const Document* doc, std::size_t statement, const std::string& arn_prefix,
      const std::function<std::shared_ptr<const Compiled>()>& make);
  bool rule_matches(const Rule& r, std::string_view resource) const;

  static constexpr std::size_t kActions = static_cast<std::size_t>(MqttAction::kCount);
  void build(const RequestContext& ctx);
  const std::string& prefix() const { return *arn_prefix_; }  // empty: not usable

  std::shared_ptr<const PolicySet> policies_;  // keeps what the rules point into alive
  std::shared_ptr<const std::string> arn_prefix_;
  // The rules of action a are rules_[first_[a]] .. rules_[first_[a + 1]] (one allocation).
  std::vector<Rule> rules_;
  // Each compiled statement once (shared by actions, and by Grants when it can).
  std::vector<std::shared_ptr<const Compiled>> compiled_;
  std::array<std::uint32_t, kActions + 1> first_{};
};

}  // namespace fk::policy
