#include "registry/validation.h"

#include <nlohmann/json.hpp>

#include "base/strings.h"
#include "codec/bounded_json.h"
#include "policy/document.h"

namespace fk::registry {
namespace {

bool alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool all_of(std::string_view s, std::string_view extra) {
  for (char c : s) {
    if (!alnum(c) && extra.find(c) == std::string_view::npos) return false;
  }
  return true;
}

std::string shown(std::string_view s) {
  // Keep error messages readable and bounded.
  std::string out(s.substr(0, 140));
  if (s.size() > 140) out += "...";
  return "'" + out + "'";
}

}  // namespace

Status check_thing_name(std::string_view what, std::string_view name) {
  if (name.empty() || name.size() > 128)
    return invalid_request(std::string(what) + " must be 1 to 128 characters, not " +
                           std::to_string(name.size()));
  if (!all_of(name, ":_-"))
    return invalid_request(std::string(what) + " " + shown(name) +
                           " may contain only a-z, A-Z, 0-9, ':', '_' and '-'");
  return Status::ok();
}

Status check_attributes(const storage::Attributes& attributes, bool has_type) {
  std::size_t max = has_type ? kMaxAttributesWithType : kMaxAttributesWithoutType;
  if (attributes.size() > max)
    return invalid_request("a thing " + std::string(has_type ? "with" : "without") +
                           " a thing type may have at most " + std::to_string(max) +
                           " attributes, not " + std::to_string(attributes.size()));
  for (const auto& [k, v] : attributes) {
    if (k.empty() || k.size() > 128)
      return invalid_request("attribute name " + shown(k) + " must be 1 to 128 characters");
    if (!all_of(k, "_.,@/:#-"))
      return invalid_request("attribute name " + shown(k) +
                             " may contain only a-z, A-Z, 0-9 and _.,@/:#-");
    if (v.size() > 800)
      return invalid_request("attribute " + shown(k) + ": value is " + std::to_string(v.size()) +
                             " characters; at most 800 are allowed");
    if (!all_of(v, "_.,@/:#=[]-"))
      return invalid_request("attribute " + shown(k) + ": value " + shown(v) +
                             " may contain only a-z, A-Z, 0-9 and _.,@/:#=[]-");
  }
  return Status::ok();
}

Status check_policy_name(std::string_view name) {
  if (name.empty() || name.size() > 128)
    return invalid_request("policy name must be 1 to 128 characters");
  if (!all_of(name, "_+=,.@-"))
    return invalid_request("policy name " + shown(name) +
                           " may contain only letters, digits and _+=,.@-");
  return Status::ok();
}

Status check_policy_document(std::string_view document) {
  return policy::parse_document(document).status();
}

Status check_template_name(std::string_view name) {
  if (name.empty() || name.size() > 36)
    return invalid_request("template name must be 1 to 36 characters");
  if (!all_of(name, "_-"))
    return invalid_request("template name " + shown(name) +
                           " may contain only a-z, A-Z, 0-9, '_' and '-'");
  return Status::ok();
}

Status check_template_body(std::string_view body) {
  if (body.size() > kMaxTemplateBodyChars)
    return invalid_request("template body is " + std::to_string(body.size()) +
                           " characters; at most 10240 are allowed");
  auto parsed = codec::parse_json(body);
  if (!parsed.is_ok()) return invalid_request("template body: " + parsed.status().message());
  const nlohmann::json& j = *parsed;
  if (!j.is_object()) return invalid_request("template body must be a JSON object");
  if (j.contains("Resources") && !j["Resources"].is_object())
    return invalid_request("template body: 'Resources' must be an object");
  if (j.contains("Parameters") && !j["Parameters"].is_object())
    return invalid_request("template body: 'Parameters' must be an object");
  return Status::ok();
}

Status check_certificate_id(std::string_view id) {
  if (id.size() != 64 || !all_of(id, ""))
    return invalid_request("certificate id " + shown(id) + " must be 64 hex characters");
  for (char c : id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return invalid_request("certificate id " + shown(id) +
                             " must be 64 lowercase hex characters");
  }
  return Status::ok();
}

}  // namespace fk::registry
