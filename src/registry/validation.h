// AWS's input rules for names, attributes and documents (spec sections 2, 3.5, 5, 6.3).
// Each check returns kInvalidRequest (or the exception AWS uses) with the rule that failed.
#pragma once

#include <string_view>

#include "base/status.h"
#include "storage/records.h"

namespace fk::registry {

inline constexpr std::size_t kMaxAttributesWithoutType = 3;
inline constexpr std::size_t kMaxAttributesWithType = 50;
inline constexpr std::size_t kMaxTemplateBodyChars = 10240;
inline constexpr std::size_t kMaxGroupsPerThing = 10;

// thing, thing type and thing group names: [a-zA-Z0-9:_-]{1,128}
Status check_thing_name(std::string_view what, std::string_view name);
// attribute name [a-zA-Z0-9_.,@/:#-]{1,128}; value [a-zA-Z0-9_.,@/:#=\[\]-]{0,800}
Status check_attributes(const storage::Attributes& attributes, bool has_type);
// policy name [\w+=,.@-]{1,128}
Status check_policy_name(std::string_view name);
// policy document: a JSON object with a Statement, <= 2,048 non-whitespace characters
Status check_policy_document(std::string_view document);
// template name [0-9A-Za-z_-]{1,36}
Status check_template_name(std::string_view name);
// template body: a JSON object, <= 10,240 characters
Status check_template_body(std::string_view body);
// certificate id: 64 lowercase hex characters
Status check_certificate_id(std::string_view id);

}  // namespace fk::registry
