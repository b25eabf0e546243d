#include "policy/evaluator.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <tuple>

#include "base/strings.h"

namespace fk::policy {
namespace {

char fold(char c) {
  return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

// Substitutes ${...} in `text` from the context. Substituted text and the ${*} ${?} ${$}
// escapes are literal; a variable that cannot be resolved stays as literal "${...}" text (so
// it matches nothing) and is reported in `missing`. `wildcards`: whether unsubstituted * and ?
// are wildcards (resources, StringLike/ArnLike values) or plain text.
Pattern substitute(std::string_view text, const RequestContext& ctx, bool substitutes,
                   bool wildcards, std::vector<std::string>* missing, bool* unresolved) {
  std::string out;
  std::vector<bool> literal;
  out.reserve(text.size());
  literal.reserve(text.size());
  auto put = [&](char c, bool lit) {
    out.push_back(c);
    literal.push_back(lit);
  };
  std::size_t i = 0;
  while (i < text.size()) {
    if (substitutes && text[i] == '$' && i + 1 < text.size() && text[i + 1] == '{') {
      std::size_t end = text.find('}', i + 2);
      if (end != std::string_view::npos) {
        std::string_view name = text.substr(i + 2, end - i - 2);
        if (name == "*" || name == "?" || name == "$") {
          put(name[0], true);
          i = end + 1;
          continue;
        }
        auto values = lookup(ctx, name);
        if (values && values->size() == 1) {
          for (char c : (*values)[0]) put(c, true);
        } else {
          for (std::size_t k = i; k <= end; ++k) put(text[k], true);
          if (missing) missing->emplace_back(name);
          if (unresolved) *unresolved = true;
        }
        i = end + 1;
        continue;
      }
    }
    put(text[i], !wildcards);
    ++i;
  }
  return Pattern(std::move(out), std::move(literal));
}

bool action_matches(const Statement& s, std::string_view action) {
  bool any = false;
  for (const auto& a : s.actions) {
    if (Pattern::compile(a).matches(action, /*ignore_case=*/true)) {
      any = true;
      break;
    }
  }
  return s.not_action ? !any : any;
}

// --- conditions ---

bool negated(Operator op) {
  switch (op) {
    case Operator::kStringNotEquals:
    case Operator::kStringNotEqualsIgnoreCase:
    case Operator::kStringNotLike:
    case Operator::kNumericNotEquals:
    case Operator::kArnNotEquals:
    case Operator::kArnNotLike:
    case Operator::kNotIpAddress:
      return true;
    default:
      return false;
  }
}

bool uses_wildcards(Operator op) {
  switch (op) {
    case Operator::kStringLike:
    case Operator::kStringNotLike:
    case Operator::kArnEquals:  // IAM: ArnEquals and ArnLike both take wildcards
    case Operator::kArnNotEquals:
    case Operator::kArnLike:
    case Operator::kArnNotLike:
      return true;
    default:
      return false;
  }
}

struct Ip {
  int family = 0;
  std::array<unsigned char, 16> bytes{};
};

bool parse_ip(std::string_view text, Ip& ip) {
  std::string s(text);
  if (inet_pton(AF_INET, s.c_str(), ip.bytes.data()) == 1) {
    ip.family = AF_INET;
    return true;
  }
  if (inet_pton(AF_INET6, s.c_str(), ip.bytes.data()) == 1) {
    static const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(ip.bytes.data(), kMapped, 12) == 0) {  // ::ffff:a.b.c.d is IPv4
      std::memmove(ip.bytes.data(), ip.bytes.data() + 12, 4);
      ip.family = AF_INET;
    } else {
      ip.family = AF_INET6;
    }
    return true;
  }
  return false;
}

bool ip_in_block(std::string_view address, std::string_view block) {
  Ip a;
  Ip net;
  if (!parse_ip(address, a)) return false;
  std::size_t slash = block.find('/');
  if (!parse_ip(block.substr(0, slash), net) || net.family != a.family) return false;
  const int max_bits = a.family == AF_INET ? 32 : 128;
  int bits = max_bits;
  if (slash != std::string_view::npos) {
    std::string b(block.substr(slash + 1));
    char* end = nullptr;
    long v = std::strtol(b.c_str(), &end, 10);
    if (b.empty() || *end != '\0' || v < 0 || v > max_bits) return false;
    bits = static_cast<int>(v);
  }
  for (int i = 0; i < bits; ++i) {
    const int byte = i / 8;
    const int mask = 0x80 >> (i % 8);
    if ((a.bytes[byte] & mask) != (net.bytes[byte] & mask)) return false;
  }
  return true;
}

bool parse_number(const std::string& s, double& out) {
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);
  return !s.empty() && end == s.c_str() + s.size();
}

// The positive form of `op` for one context value against one condition value.
bool value_matches(Operator op, const std::string& key_value, const Pattern& cond) {
  switch (op) {
    case Operator::kStringEquals:
    case Operator::kStringNotEquals:
      return key_value == cond.text();
    case Operator::kStringEqualsIgnoreCase:
    case Operator::kStringNotEqualsIgnoreCase:
    case Operator::kBool:
      return iequals(key_value, cond.text());
    case Operator::kStringLike:
    case Operator::kStringNotLike:
    case Operator::kArnEquals:
    case Operator::kArnNotEquals:
    case Operator::kArnLike:
    case Operator::kArnNotLike:
      return cond.matches(key_value);
    case Operator::kIpAddress:
    case Operator::kNotIpAddress:
      return ip_in_block(key_value, cond.text());
    case Operator::kNumericEquals:
    case Operator::kNumericNotEquals:
    case Operator::kNumericLessThan:
    case Operator::kNumericLessThanEquals:
    case Operator::kNumericGreaterThan:
    case Operator::kNumericGreaterThanEquals: {
      double k = 0;
      double c = 0;
      if (!parse_number(key_value, k) || !parse_number(cond.text(), c)) return false;
      switch (op) {
        case Operator::kNumericEquals:
        case Operator::kNumericNotEquals:
          return k == c;
        case Operator::kNumericLessThan:
          return k < c;
        case Operator::kNumericLessThanEquals:
          return k <= c;
        case Operator::kNumericGreaterThan:
          return k > c;
        default:
          return k >= c;
      }
    }
    case Operator::kNull:
      return false;
  }
  return false;
}

bool condition_holds(const Condition& c, const RequestContext& ctx, bool substitutes,
                     std::vector<std::string>* missing) {
  auto key_values = lookup(ctx, c.key);
  if (c.op == Operator::kNull) {
    const bool want_absent = iequals(c.values.front(), "true");
    return want_absent == !key_values.has_value();
  }
  if (!key_values || key_values->empty()) {
    if (missing) missing->push_back(c.key);
    if (c.if_exists || c.set == SetQualifier::kForAllValues) return true;
    return negated(c.op);  // IAM: a negated operator holds when the key is absent
  }
  std::vector<Pattern> conds;
  conds.reserve(c.values.size());
  for (const auto& v : c.values) {
    bool unresolved = false;
    Pattern p = substitute(v, ctx, substitutes, uses_wildcards(c.op), missing, &unresolved);
    if (!unresolved) conds.push_back(std::move(p));  // an unresolved value matches nothing
  }
  auto matches_any = [&](const std::string& kv) {
    for (const auto& p : conds) {
      if (value_matches(c.op, kv, p)) return true;
    }
    return false;
  };
  const bool neg = negated(c.op);
  switch (c.set) {
    case SetQualifier::kNone: {
      bool any = false;
      for (const auto& kv : *key_values) any = any || matches_any(kv);
      return neg ? !any : any;
    }
    case SetQualifier::kForAnyValue:
      for (const auto& kv : *key_values) {
        if (matches_any(kv) != neg) return true;
      }
      return false;
    case SetQualifier::kForAllValues:
      for (const auto& kv : *key_values) {
        if (matches_any(kv) == neg) return false;
      }
      return true;
  }
  return false;
}

bool conditions_hold(const Statement& s, const RequestContext& ctx, bool substitutes,
                     std::vector<std::string>* missing) {
  for (const auto& c : s.conditions) {
    if (!condition_holds(c, ctx, substitutes, missing)) return false;
  }
  return true;
}

std::vector<Pattern> resource_patterns(const Statement& s, const RequestContext& ctx,
                                       bool substitutes, std::vector<std::string>* missing) {
  std::vector<Pattern> out;
  out.reserve(s.resources.size());
  for (const auto& r : s.resources) {
    out.push_back(substitute(r, ctx, substitutes, /*wildcards=*/true, missing, nullptr));
  }
  return out;
}

// Positions of the first five ':' (the ARN's fixed parts), or fewer when there are not five.
std::vector<std::size_t> arn_colons(std::string_view s) {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < s.size() && out.size() < 5; ++i) {
    if (s[i] == ':') out.push_back(i);
  }
  return out;
}

bool resource_matches(const std::vector<Pattern>& patterns, bool not_resource,
                      std::string_view resource) {
  bool any = false;
  for (const auto& p : patterns) {
    if (arn_matches(p, resource)) {
      any = true;
      break;
    }
  }
  return not_resource ? !any : any;
}

void dedupe(std::vector<std::string>& v) {
  std::vector<std::string> out;
  for (auto& s : v) {
    bool seen = false;
    for (const auto& o : out) seen = seen || o == s;
    if (!seen) out.push_back(std::move(s));
  }
  v = std::move(out);
}

Verdict decided(Decision d, const NamedPolicy& p, int index) {
  Verdict v;
  v.decision = d;
  v.policy_name = p.name;
  v.statement_index = index;
  v.sid = p.document->statements[static_cast<std::size_t>(index)].sid;
  return v;
}

}  // namespace

std::string_view to_string(Decision d) {
  switch (d) {
    case Decision::kAllowed:
      return "ALLOWED";
    case Decision::kExplicitDeny:
      return "EXPLICIT_DENY";
    case Decision::kImplicitDeny:
      return "IMPLICIT_DENY";
  }
  return "IMPLICIT_DENY";
}

std::string Verdict::explain() const {
  if (decision == Decision::kImplicitDeny) {
    std::string s = "no statement allowed it";
    if (!missing_context.empty()) {
      s += " (unresolved:";
      for (const auto& m : missing_context) s += " " + m;
      s += ")";
    }
    return s;
  }
  std::string s = decision == Decision::kAllowed ? "allowed by policy " : "denied by policy ";
  s += policy_name + " statement " + std::to_string(statement_index);
  if (!sid.empty()) s += " (" + sid + ")";
  return s;
}

std::string_view action_name(MqttAction a) {
  switch (a) {
    case MqttAction::kConnect:
      return "iot:Connect";
    case MqttAction::kPublish:
      return "iot:Publish";
    case MqttAction::kSubscribe:
      return "iot:Subscribe";
    case MqttAction::kReceive:
      return "iot:Receive";
    case MqttAction::kRetainPublish:
      return "iot:RetainPublish";
    case MqttAction::kCount:
      break;
  }
  return "";
}

Pattern::Pattern(std::string text, std::vector<bool> literal)
    : text_(std::move(text)), literal_(std::move(literal)) {
  literal_.resize(text_.size(), true);
  std::size_t wild = 0;
  for (std::size_t i = 0; i < text_.size(); ++i) {
    if (!literal_[i] && (text_[i] == '*' || text_[i] == '?')) ++wild;
  }
  if (wild == 0) {
    shape_ = Shape::kExact;
  } else if (wild == 1 && text_.back() == '*' && !literal_.back()) {
    shape_ = Shape::kPrefix;
  }
  // The two common shapes say which characters are wildcards by themselves: no per-character
  // flags kept (a connection's Grant holds dozens of patterns).
  if (shape_ != Shape::kGeneral) std::vector<bool>().swap(literal_);
}

bool Pattern::literal(std::size_t k) const {
  switch (shape_) {
    case Shape::kExact:
      return true;
    case Shape::kPrefix:
      return k + 1 != text_.size();
    case Shape::kGeneral:
      break;
  }
  return literal_[k];
}

Pattern Pattern::substr(std::size_t pos, std::size_t len) const {
  std::string t = text_.substr(pos, len);
  std::vector<bool> l(t.size());
  for (std::size_t i = 0; i < t.size(); ++i) l[i] = literal(pos + i);
  return Pattern(std::move(t), std::move(l));
}

bool arn_matches(const Pattern& pattern, std::string_view arn) {
  const auto pc = arn_colons(pattern.text());
  if (pc.size() < 5) return pattern.matches(arn);  // "*" or a bare wildcard
  const auto ac = arn_colons(arn);
  if (ac.size() < 5) return false;
  std::size_t pstart = 0;
  std::size_t astart = 0;
  for (std::size_t i = 0; i < 5; ++i) {
    if (!pattern.substr(pstart, pc[i] - pstart).matches(arn.substr(astart, ac[i] - astart)))
      return false;
    pstart = pc[i] + 1;
    astart = ac[i] + 1;
  }
  return pattern.substr(pstart).matches(arn.substr(astart));
}

Pattern Pattern::compile(std::string_view text) {
  return Pattern(std::string(text), std::vector<bool>(text.size(), false));
}

bool Pattern::matches(std::string_view s, bool ignore_case) const {
  const std::size_t n = text_.size();
  if (!ignore_case) {
    if (shape_ == Shape::kExact) return s == text_;
    if (shape_ == Shape::kPrefix)
      return s.size() >= n - 1 && s.compare(0, n - 1, text_, 0, n - 1) == 0;
  }
  std::size_t p = 0;
  std::size_t i = 0;
  std::size_t star = std::string::npos;
  std::size_t mark = 0;
  auto is_star = [&](std::size_t k) { return text_[k] == '*' && !literal(k); };
  auto is_any = [&](std::size_t k) { return text_[k] == '?' && !literal(k); };
  auto same = [&](char a, char b) { return ignore_case ? fold(a) == fold(b) : a == b; };
  while (i < s.size()) {
    if (p < n && !is_star(p) && (is_any(p) || same(text_[p], s[i]))) {
      ++p;
      ++i;
    } else if (p < n && is_star(p)) {
      star = p++;
      mark = i;
    } else if (star != std::string::npos) {
      p = star + 1;
      i = ++mark;
    } else {
      return false;
    }
  }
  while (p < n && is_star(p)) ++p;
  return p == n;
}

Verdict evaluate(const PolicySet& policies, std::string_view action, std::string_view resource,
                 const RequestContext& connect_ctx) {
  // iot:ConnectAttributes exists only in the iot:Connect request.
  RequestContext ctx = connect_ctx;
  if (!iequals(action, action_name(MqttAction::kConnect))) ctx.connect_attributes.reset();
  std::vector<std::string> missing;
  const NamedPolicy* allow_policy = nullptr;
  int allow_index = -1;
  for (const auto& p : policies) {
    const Document& doc = *p.document;
    for (std::size_t i = 0; i < doc.statements.size(); ++i) {
      const Statement& s = doc.statements[i];
      if (!action_matches(s, action)) continue;
      auto patterns = resource_patterns(s, ctx, doc.substitutes_variables, &missing);
      if (!resource_matches(patterns, s.not_resource, resource)) continue;
      if (!conditions_hold(s, ctx, doc.substitutes_variables, &missing)) continue;
      if (s.effect == Effect::kDeny) {
        Verdict v = decided(Decision::kExplicitDeny, p, static_cast<int>(i));
        v.missing_context = std::move(missing);
        dedupe(v.missing_context);
        return v;
      }
      if (!allow_policy) {
        allow_policy = &p;
        allow_index = static_cast<int>(i);
      }
    }
  }
  Verdict v;
  if (allow_policy) v = decided(Decision::kAllowed, *allow_policy, allow_index);
  v.missing_context = std::move(missing);
  dedupe(v.missing_context);
  return v;
}

namespace {

// Whether a statement's resources depend on the request (policy variables).
bool has_variables(const Statement& s, bool substitutes) {
  if (!substitutes) return false;
  for (const auto& r : s.resources) {
    if (r.find("${") != std::string::npos) return true;
  }
  return false;
}

}  // namespace

// The compiled patterns of statements without variables, shared by every Grant made from the
// same document (a Grant holds its documents, so a live entry's address is never reused).
std::shared_ptr<const Grant::Compiled> Grant::shared_compiled(
    const Document* doc, std::size_t statement, const std::string& arn_prefix,
    const std::function<std::shared_ptr<const Compiled>()>& make) {
  struct Cache {
    std::mutex mu;
    std::map<std::tuple<const Document*, std::size_t, std::string>, std::weak_ptr<const Compiled>>
        entries;
    std::size_t sweep_at = 1024;
  };
  static Cache* cache = new Cache;  // never destroyed: Grants may outlive static destruction
  std::lock_guard<std::mutex> lock(cache->mu);
  auto& slot = cache->entries[{doc, statement, arn_prefix}];
  if (auto live = slot.lock()) return live;
  auto made = make();
  slot = made;
  if (cache->entries.size() >= cache->sweep_at) {
    std::erase_if(cache->entries, [](const auto& e) { return e.second.expired(); });
    cache->sweep_at = std::max<std::size_t>(1024, cache->entries.size() * 2);
  }
  return made;
}

Grant::Grant(const PolicySet& policies, const RequestContext& ctx, std::string arn_prefix)
    : policies_(std::make_shared<const PolicySet>(policies)),
      arn_prefix_(std::make_shared<const std::string>(std::move(arn_prefix))) {
  build(ctx);
}

Grant::Grant(std::shared_ptr<const PolicySet> policies, const RequestContext& ctx,
             std::shared_ptr<const std::string> arn_prefix)
    : policies_(std::move(policies)), arn_prefix_(std::move(arn_prefix)) {
  if (!policies_) policies_ = std::make_shared<const PolicySet>();
  if (!arn_prefix_) arn_prefix_ = std::make_shared<const std::string>();
  build(ctx);
}

void Grant::build(const RequestContext& ctx) {
  const auto prefix_colons = arn_colons(*arn_prefix_);
  const bool usable_prefix =
      prefix_colons.size() == 5 && prefix_colons.back() + 1 == arn_prefix_->size();
  if (!usable_prefix && !arn_prefix_->empty()) arn_prefix_ = std::make_shared<const std::string>();
  const std::string& arn_prefix = *arn_prefix_;
  // The part of `p` after the ARN prefix, when `p` can match resources under that prefix;
  // nullopt when it cannot; `*unknown` when only a full match can tell ("arn:*").
  auto residual = [&](const Pattern& p, bool* unknown) -> std::optional<Pattern> {
    const auto pc = arn_colons(p.text());
    if (pc.size() < 5) {
      if (p.text() == "*") return p;  // everything, whatever the prefix
      *unknown = true;
      return std::nullopt;
    }
    std::size_t pstart = 0;
    std::size_t astart = 0;
    for (std::size_t i = 0; i < 5; ++i) {
      if (!p.substr(pstart, pc[i] - pstart)
               .matches(std::string_view(arn_prefix).substr(astart, prefix_colons[i] - astart)))
        return std::nullopt;
      pstart = pc[i] + 1;
      astart = prefix_colons[i] + 1;
    }
    return p.substr(pstart);
  };
  auto compile = [&](const Statement& s, const RequestContext& c, bool substitutes) {
    auto out = std::make_shared<Compiled>();
    out->patterns = resource_patterns(s, c, substitutes, nullptr);
    if (usable_prefix) {
      for (const auto& pattern : out->patterns) {
        if (auto r = residual(pattern, &out->full_only)) out->residuals.push_back(std::move(*r));
      }
    }
    return std::shared_ptr<const Compiled>(std::move(out));
  };
  // iot:ConnectAttributes exists only in the iot:Connect request.
  RequestContext later = ctx;
  later.connect_attributes.reset();
  // A statement's patterns are compiled once per Grant (several actions share them), and a
  // statement without variables once per process (every connection shares them).
  std::map<std::tuple<std::size_t, std::size_t, bool>, std::shared_ptr<const Compiled>> mine;
  const PolicySet& policies = *policies_;
  for (std::size_t a = 0; a < kActions; ++a) {
    first_[a] = static_cast<std::uint32_t>(rules_.size());
    const auto action = static_cast<MqttAction>(a);
    const bool connect = action == MqttAction::kConnect;
    const RequestContext& c = connect ? ctx : later;
    for (std::size_t pi = 0; pi < policies.size(); ++pi) {
      const NamedPolicy& p = policies[pi];
      const Document& doc = *p.document;
      for (std::size_t i = 0; i < doc.statements.size(); ++i) {
        const Statement& s = doc.statements[i];
        if (!action_matches(s, action_name(action))) continue;
        if (!conditions_hold(s, c, doc.substitutes_variables, nullptr)) continue;
        std::shared_ptr<const Compiled> compiled;
        if (!has_variables(s, doc.substitutes_variables)) {
          compiled = shared_compiled(p.document.get(), i, arn_prefix,
                                     [&] { return compile(s, c, doc.substitutes_variables); });
        } else {
          auto& slot = mine[{pi, i, connect}];
          if (!slot) slot = compile(s, c, doc.substitutes_variables);
          compiled = slot;
        }
        if (pi > 0xFFFF || i > 0xFFFF) {  // beyond any valid policy set: allow nothing
          rules_.clear();
          compiled_.clear();
          first_.fill(0);
          return;
        }
        const Compiled* raw = compiled.get();
        if (std::find(compiled_.begin(), compiled_.end(), compiled) == compiled_.end())
          compiled_.push_back(std::move(compiled));
        rules_.push_back(Rule{raw, static_cast<std::uint16_t>(pi), static_cast<std::uint16_t>(i),
                              s.effect, s.not_resource});
      }
    }
  }
  first_[kActions] = static_cast<std::uint32_t>(rules_.size());
  rules_.shrink_to_fit();
  compiled_.shrink_to_fit();
}

bool Grant::rule_matches(const Rule& r, std::string_view resource) const {
  const Compiled& c = *r.compiled;
  const std::string& arn_prefix = prefix();
  if (arn_prefix.empty() || c.full_only || resource.substr(0, arn_prefix.size()) != arn_prefix)
    return resource_matches(c.patterns, r.not_resource, resource);
  const std::string_view rest = resource.substr(arn_prefix.size());
  bool any = false;
  for (const auto& p : c.residuals) {
    if (p.matches(rest)) {
      any = true;
      break;
    }
  }
  return r.not_resource ? !any : any;
}

bool Grant::allows(MqttAction action, std::string_view resource) const {
  bool allowed = false;
  const auto a = static_cast<std::size_t>(action);
  for (std::size_t i = first_[a]; i < first_[a + 1]; ++i) {
    const Rule& r = rules_[i];
    if (allowed && r.effect == Effect::kAllow) continue;
    if (!rule_matches(r, resource)) continue;
    if (r.effect == Effect::kDeny) return false;
    allowed = true;
  }
  return allowed;
}

Verdict Grant::check(MqttAction action, std::string_view resource) const {
  const auto a = static_cast<std::size_t>(action);
  const Rule* allow = nullptr;
  for (std::size_t i = first_[a]; i < first_[a + 1]; ++i) {
    const Rule& r = rules_[i];
    if (!rule_matches(r, resource)) continue;
    if (r.effect == Effect::kDeny)
      return decided(Decision::kExplicitDeny, (*policies_)[r.policy], r.statement);
    if (!allow) allow = &r;
  }
  if (allow) return decided(Decision::kAllowed, (*policies_)[allow->policy], allow->statement);
  return Verdict{};
}

}  // namespace fk::policy
