// IoT policy documents: the AWS IoT policy language (IAM grammar) parsed into plain values.
//
// parse_document() validates everything it can before a document is stored: the JSON shape,
// Version, Effect, known iot: actions, resource forms, condition operators and their value
// types, policy-variable syntax, and AWS's size limit. Errors are MalformedPolicyException
// with the JSON path of the problem ("Statement[1].Action[0]: unknown action ...").
//
// Pure: no I/O, never throws. Documents are immutable values, safe to share across threads.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace fk::policy {

// AWS: at most 2,048 characters, whitespace not counted.
inline constexpr std::size_t kMaxPolicyChars = 2048;

enum class Effect { kAllow, kDeny };

// The IAM condition operators fleetkey evaluates (the ones AWS IoT policies use).
enum class Operator {
  kStringEquals,
  kStringNotEquals,
  kStringEqualsIgnoreCase,
  kStringNotEqualsIgnoreCase,
  kStringLike,
  kStringNotLike,
  kNumericEquals,
  kNumericNotEquals,
  kNumericLessThan,
  kNumericLessThanEquals,
  kNumericGreaterThan,
  kNumericGreaterThanEquals,
  kBool,
  kArnEquals,
  kArnNotEquals,
  kArnLike,
  kArnNotLike,
  kIpAddress,
  kNotIpAddress,
  kNull,
};

// ForAnyValue: / ForAllValues: prefixes for multi-valued keys.
enum class SetQualifier { kNone, kForAnyValue, kForAllValues };

struct Condition {
  std::string op_text;  // as written, e.g. "ForAnyValue:StringLike"
  Operator op = Operator::kStringEquals;
  SetQualifier set = SetQualifier::kNone;
  bool if_exists = false;           // "...IfExists": a missing key satisfies the condition
  std::string key;                  // e.g. "iot:ConnectAttributes"
  std::vector<std::string> values;  // strings, booleans and numbers as text
};

struct Statement {
  std::string sid;
  Effect effect = Effect::kAllow;
  std::vector<std::string> actions;  // e.g. "iot:Publish", "iot:*"
  bool not_action = false;           // NotAction: every action except these
  std::vector<std::string> resources;
  bool not_resource = false;  // NotResource: every resource except these
  std::vector<Condition> conditions;
};

struct Document {
  std::string version;                // "2012-10-17" or "2008-10-17"
  bool substitutes_variables = true;  // IAM: only 2012-10-17 substitutes ${...}
  std::vector<Statement> statements;
};
using DocumentPtr = std::shared_ptr<const Document>;

// Parses and validates a policy document (MalformedPolicyException on any problem).
Result<Document> parse_document(std::string_view text);

// The same, parsed once per distinct text while anyone holds the result: every connection of
// a fleet that shares a policy shares one parsed Document (memory and CPU per connect).
// Thread-safe.
Result<DocumentPtr> parse_document_shared(std::string_view text);

// The data-plane actions an IoT policy may name (iot:Connect, iot:Publish, ...).
const std::vector<std::string_view>& known_actions();

}  // namespace fk::policy
