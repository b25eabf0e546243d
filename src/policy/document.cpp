#include "policy/document.h"

#include <algorithm>
#include <mutex>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "base/strings.h"
#include "codec/bounded_json.h"

namespace fk::policy {
namespace {

using nlohmann::json;

Status malformed(const std::string& where, const std::string& what) {
  return {ErrorCode::kMalformedPolicy,
          "Policy document is Malformed: " + (where.empty() ? what : where + ": " + what)};
}

std::string shown(std::string_view s) {
  return "'" + std::string(s.substr(0, 80)) + (s.size() > 80 ? "...'" : "'");
}

// Checks the ${...} references in a resource or condition value. A variable name uses the
// characters of AWS's keys and attribute names; `${*}`, `${?}` and `${$}` are escapes.
Status check_variables(std::string_view text, const std::string& where) {
  std::size_t pos = 0;
  while ((pos = text.find("${", pos)) != std::string_view::npos) {
    std::size_t end = text.find('}', pos + 2);
    if (end == std::string_view::npos)
      return malformed(where, "unterminated policy variable in " + shown(text));
    std::string_view name = text.substr(pos + 2, end - pos - 2);
    if (name.empty()) return malformed(where, "empty policy variable ${} in " + shown(text));
    if (!(name == "*" || name == "?" || name == "$")) {
      for (char c : name) {
        const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == ':' || c == '.' ||
                        c == '_' || c == '-' || c == '[' || c == ']' || c == ',' || c == '@' ||
                        c == '/' || c == '#';
        if (!ok)
          return malformed(where, "policy variable ${" + std::string(name.substr(0, 80)) +
                                      "} contains the character '" + std::string(1, c) +
                                      "', which is not allowed");
      }
      if (name.find(':') == std::string_view::npos)
        return malformed(where, "policy variable ${" + std::string(name.substr(0, 80)) +
                                    "} has no namespace (e.g. iot: or aws:)");
    }
    pos = end + 1;
  }
  return Status::ok();
}

// A JSON string or array of strings -> list; anything else is an error.
Result<std::vector<std::string>> string_list(const json& j, const std::string& where) {
  std::vector<std::string> out;
  if (j.is_string()) {
    out.push_back(j.get<std::string>());
  } else if (j.is_array()) {
    if (j.empty()) return malformed(where, "must not be an empty list");
    for (std::size_t i = 0; i < j.size(); ++i) {
      if (!j[i].is_string())
        return malformed(where + "[" + std::to_string(i) + "]", "must be a string");
      out.push_back(j[i].get<std::string>());
    }
  } else {
    return malformed(where, "must be a string or a list of strings");
  }
  return out;
}

bool has_wildcard(std::string_view s) {
  return s.find_first_of("*?") != std::string_view::npos;
}

Status check_action(std::string_view action, const std::string& where) {
  if (action == "*") return Status::ok();
  std::size_t colon = action.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == action.size())
    return malformed(where, "action " + shown(action) + " is not of the form service:action");
  for (char c : action) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == ':' || c == '*' || c == '?' ||
          c == '-' || c == '_'))
      return malformed(where, "action " + shown(action) + " contains '" + std::string(1, c) + "'");
  }
  // iot: and fleetkey: (ours: fleetkey:RotateCertificate) actions are checked by name, so that a
  // misspelt one is refused instead of never matching.
  const std::string_view service = action.substr(0, colon);
  if ((!iequals(service, "iot") && !iequals(service, "fleetkey")) || has_wildcard(action))
    return Status::ok();
  for (std::string_view known : known_actions()) {
    if (iequals(known, action)) return Status::ok();
  }
  return malformed(where, "unknown action " + shown(action));
}

Status check_resource(std::string_view resource, const std::string& where) {
  if (resource == "*") return Status::ok();
  if (!starts_with(resource, "arn:"))
    return malformed(where, "resource " + shown(resource) + " must be \"*\" or an ARN (arn:...)");
  // arn:partition:service:region:account:resource
  std::size_t colons = static_cast<std::size_t>(std::count(resource.begin(), resource.end(), ':'));
  if (colons < 5 && !has_wildcard(resource))
    return malformed(where, "resource " + shown(resource) +
                                " is not an ARN (arn:aws:iot:<region>:<account>:<type>/<name>)");
  return check_variables(resource, where);
}

struct OperatorName {
  std::string_view name;
  Operator op;
};
constexpr OperatorName kOperators[] = {
    {"StringEquals", Operator::kStringEquals},
    {"StringNotEquals", Operator::kStringNotEquals},
    {"StringEqualsIgnoreCase", Operator::kStringEqualsIgnoreCase},
    {"StringNotEqualsIgnoreCase", Operator::kStringNotEqualsIgnoreCase},
    {"StringLike", Operator::kStringLike},
    {"StringNotLike", Operator::kStringNotLike},
    {"NumericEquals", Operator::kNumericEquals},
    {"NumericNotEquals", Operator::kNumericNotEquals},
    {"NumericLessThan", Operator::kNumericLessThan},
    {"NumericLessThanEquals", Operator::kNumericLessThanEquals},
    {"NumericGreaterThan", Operator::kNumericGreaterThan},
    {"NumericGreaterThanEquals", Operator::kNumericGreaterThanEquals},
    {"Bool", Operator::kBool},
    {"ArnEquals", Operator::kArnEquals},
    {"ArnNotEquals", Operator::kArnNotEquals},
    {"ArnLike", Operator::kArnLike},
    {"ArnNotLike", Operator::kArnNotLike},
    {"IpAddress", Operator::kIpAddress},
    {"NotIpAddress", Operator::kNotIpAddress},
    {"Null", Operator::kNull},
};

Result<Condition> parse_operator(std::string_view text, const std::string& where) {
  Condition c;
  c.op_text = std::string(text);
  std::string_view rest = text;
  if (starts_with(rest, "ForAnyValue:")) {
    c.set = SetQualifier::kForAnyValue;
    rest.remove_prefix(12);
  } else if (starts_with(rest, "ForAllValues:")) {
    c.set = SetQualifier::kForAllValues;
    rest.remove_prefix(13);
  }
  constexpr std::string_view kIfExists = "IfExists";
  if (rest.size() > kIfExists.size() && rest.substr(rest.size() - kIfExists.size()) == kIfExists) {
    c.if_exists = true;
    rest.remove_suffix(kIfExists.size());
  }
  for (const auto& o : kOperators) {
    if (o.name == rest) {
      c.op = o.op;
      if (c.op == Operator::kNull && (c.if_exists || c.set != SetQualifier::kNone))
        return malformed(where, "operator " + shown(text) + " cannot take a qualifier");
      return c;
    }
  }
  if (starts_with(rest, "Date") || starts_with(rest, "Binary"))
    return malformed(where, "condition operator " + shown(text) + " is not supported by fleetkey");
  return malformed(where, "unknown condition operator " + shown(text));
}

Status check_condition_value(const Condition& c, const std::string& value,
                             const std::string& where) {
  switch (c.op) {
    case Operator::kBool:
    case Operator::kNull:
      if (!iequals(value, "true") && !iequals(value, "false"))
        return malformed(where, c.op_text + " takes true or false, not " + shown(value));
      break;
    case Operator::kNumericEquals:
    case Operator::kNumericNotEquals:
    case Operator::kNumericLessThan:
    case Operator::kNumericLessThanEquals:
    case Operator::kNumericGreaterThan:
    case Operator::kNumericGreaterThanEquals: {
      if (value.find("${") != std::string::npos) break;
      char* end = nullptr;
      (void)std::strtod(value.c_str(), &end);
      if (value.empty() || end != value.c_str() + value.size())
        return malformed(where, c.op_text + " takes a number, not " + shown(value));
      break;
    }
    case Operator::kIpAddress:
    case Operator::kNotIpAddress: {
      // a.b.c.d[/n] or an IPv6 address[/n]; checked for shape here, exactly when evaluated.
      if (value.empty() ||
          value.find_first_not_of("0123456789abcdefABCDEF.:/") != std::string::npos)
        return malformed(where,
                         c.op_text + " takes an IP address or CIDR block, not " + shown(value));
      break;
    }
    default:
      break;
  }
  return check_variables(value, where);
}

Result<std::vector<Condition>> parse_conditions(const json& j, const std::string& where) {
  if (!j.is_object()) return malformed(where, "must be an object of operators");
  std::vector<Condition> out;
  for (const auto& [op_text, block] : j.items()) {
    std::string w = where + "." + op_text;
    FK_ASSIGN_OR_RETURN(Condition proto, parse_operator(op_text, w));
    if (!block.is_object() || block.empty())
      return malformed(w, "must be a non-empty object of condition keys");
    for (const auto& [key, values] : block.items()) {
      std::string wk = w + "." + key;
      if (key.empty() || key.find(':') == std::string::npos)
        return malformed(wk, "condition key " + shown(key) + " has no namespace (e.g. iot:)");
      Condition c = proto;
      c.key = key;
      auto add = [&](const json& v, const std::string& wv) -> Status {
        if (v.is_string()) {
          c.values.push_back(v.get<std::string>());
        } else if (v.is_boolean()) {
          c.values.push_back(v.get<bool>() ? "true" : "false");
        } else if (v.is_number()) {
          c.values.push_back(v.dump());
        } else {
          return malformed(wv, "a condition value must be a string, number or boolean");
        }
        return check_condition_value(c, c.values.back(), wv);
      };
      if (values.is_array()) {
        if (values.empty()) return malformed(wk, "must not be an empty list");
        for (std::size_t i = 0; i < values.size(); ++i)
          FK_RETURN_IF_ERROR(add(values[i], wk + "[" + std::to_string(i) + "]"));
      } else {
        FK_RETURN_IF_ERROR(add(values, wk));
      }
      out.push_back(std::move(c));
    }
  }
  return out;
}

Result<Statement> parse_statement(const json& j, const std::string& where) {
  if (!j.is_object()) return malformed(where, "a statement must be an object");
  Statement s;
  bool have_effect = false;
  bool have_action = false;
  bool have_resource = false;
  for (const auto& [key, value] : j.items()) {
    std::string w = where + "." + key;
    if (key == "Sid") {
      if (!value.is_string()) return malformed(w, "must be a string");
      s.sid = value.get<std::string>();
      for (char c : s.sid) {
        if (!std::isalnum(static_cast<unsigned char>(c)))
          return malformed(w, "a Sid may contain only letters and digits");
      }
    } else if (key == "Effect") {
      if (!value.is_string()) return malformed(w, "must be \"Allow\" or \"Deny\"");
      const std::string e = value.get<std::string>();
      if (e == "Allow") {
        s.effect = Effect::kAllow;
      } else if (e == "Deny") {
        s.effect = Effect::kDeny;
      } else {
        return malformed(w, "must be \"Allow\" or \"Deny\", not " + shown(e));
      }
      have_effect = true;
    } else if (key == "Action" || key == "NotAction") {
      if (have_action) return malformed(w, "a statement has either Action or NotAction, not both");
      FK_ASSIGN_OR_RETURN(s.actions, string_list(value, w));
      for (std::size_t i = 0; i < s.actions.size(); ++i) {
        FK_RETURN_IF_ERROR(
            check_action(s.actions[i], value.is_array() ? w + "[" + std::to_string(i) + "]" : w));
      }
      s.not_action = key == "NotAction";
      have_action = true;
    } else if (key == "Resource" || key == "NotResource") {
      if (have_resource)
        return malformed(w, "a statement has either Resource or NotResource, not both");
      FK_ASSIGN_OR_RETURN(s.resources, string_list(value, w));
      for (std::size_t i = 0; i < s.resources.size(); ++i) {
        FK_RETURN_IF_ERROR(check_resource(
            s.resources[i], value.is_array() ? w + "[" + std::to_string(i) + "]" : w));
      }
      s.not_resource = key == "NotResource";
      have_resource = true;
    } else if (key == "Condition") {
      FK_ASSIGN_OR_RETURN(s.conditions, parse_conditions(value, w));
    } else if (key == "Principal" || key == "NotPrincipal") {
      return malformed(w, "an IoT policy has no Principal: it applies to what it is attached to");
    } else {
      return malformed(w, "unknown statement element " + shown(key));
    }
  }
  if (!have_effect) return malformed(where, "Effect is required");
  if (!have_action) return malformed(where, "Action is required");
  if (!have_resource) return malformed(where, "Resource is required");
  return s;
}

}  // namespace

const std::vector<std::string_view>& known_actions() {
  static const std::vector<std::string_view> kActions = {
      "iot:Connect",
      "iot:Publish",
      "iot:Subscribe",
      "iot:Receive",
      "iot:RetainPublish",
      "iot:GetRetainedMessage",
      "iot:ListRetainedMessages",
      "iot:DeleteThingShadow",
      "iot:GetThingShadow",
      "iot:UpdateThingShadow",
      "iot:ListNamedShadowsForThing",
      "iot:DescribeJobExecution",
      "iot:GetPendingJobExecutions",
      "iot:StartNextPendingJobExecution",
      "iot:UpdateJobExecution",
      "iot:AssumeRoleWithCertificate",
      "iot:CreateKeysAndCertificate",
      "iot:CreateCertificateFromCsr",
      "iot:RegisterThing",
      "fleetkey:RotateCertificate",
  };
  return kActions;
}

Result<Document> parse_document(std::string_view text) {
  const std::size_t n = count_non_whitespace(text);
  if (n > kMaxPolicyChars)
    return malformed("", "the document has " + std::to_string(n) +
                             " characters without whitespace; at most 2048 are allowed");
  auto parsed = codec::parse_json(text);
  if (!parsed.is_ok()) return malformed("", parsed.status().message());
  json j = std::move(*parsed);
  if (!j.is_object()) return malformed("", "the document must be a JSON object");
  Document doc;
  doc.version = "2008-10-17";  // IAM's default when Version is absent
  bool have_statement = false;
  for (const auto& [key, value] : j.items()) {
    if (key == "Version") {
      if (!value.is_string()) return malformed("Version", "must be a string");
      doc.version = value.get<std::string>();
      if (doc.version != "2012-10-17" && doc.version != "2008-10-17")
        return malformed("Version",
                         "must be \"2012-10-17\" or \"2008-10-17\", not " + shown(doc.version));
    } else if (key == "Id") {
      if (!value.is_string()) return malformed("Id", "must be a string");
    } else if (key == "Statement") {
      have_statement = true;
      if (value.is_object()) {
        FK_ASSIGN_OR_RETURN(Statement s, parse_statement(value, "Statement"));
        doc.statements.push_back(std::move(s));
      } else if (value.is_array()) {
        if (value.empty()) return malformed("Statement", "must not be empty");
        for (std::size_t i = 0; i < value.size(); ++i) {
          FK_ASSIGN_OR_RETURN(Statement s,
                              parse_statement(value[i], "Statement[" + std::to_string(i) + "]"));
          doc.statements.push_back(std::move(s));
        }
      } else {
        return malformed("Statement", "must be an object or a list of objects");
      }
    } else {
      return malformed(key, "unknown top-level element " + shown(key));
    }
  }
  if (!have_statement) return malformed("", "Statement is required");
  doc.substitutes_variables = doc.version == "2012-10-17";
  return doc;
}

Result<DocumentPtr> parse_document_shared(std::string_view text) {
  // Text -> the parsed document while it is in use. Entries whose document nobody holds any
  // more are swept whenever the table has doubled since the last sweep.
  static std::mutex mu;
  static std::unordered_map<std::string, std::weak_ptr<const Document>> parsed;
  static std::size_t sweep_at = 1024;
  const std::string key(text);
  {
    std::lock_guard lock(mu);
    if (auto it = parsed.find(key); it != parsed.end()) {
      if (auto doc = it->second.lock()) return doc;
    }
  }
  FK_ASSIGN_OR_RETURN(Document doc, parse_document(text));
  auto shared = std::make_shared<const Document>(std::move(doc));
  std::lock_guard lock(mu);
  auto [it, inserted] = parsed.try_emplace(key, shared);
  if (!inserted) {
    if (auto other = it->second.lock()) return other;  // parsed meanwhile on another thread
    it->second = shared;
  }
  if (parsed.size() >= sweep_at) {
    std::erase_if(parsed, [](const auto& kv) { return kv.second.expired(); });
    sweep_at = std::max<std::size_t>(1024, 2 * parsed.size());
  }
  return DocumentPtr(shared);
}

}  // namespace fk::policy
