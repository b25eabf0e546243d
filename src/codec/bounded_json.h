// Parsers of JSON text and CBOR for untrusted input (device payloads, API bodies, policy
// documents, templates, webhook answers), with their nesting depth and size bounded.
//
// Why: nlohmann-json's CBOR decoder recurses once per nesting level, and copying, comparing or
// dumping a parsed document recurses too; a payload of a few hundred KB nested 100,000 deep
// overflows the stack. These parsers count the depth while they read (a SAX pass that stops at
// the first container past the limit), so nothing deeper than `max_depth` is ever built and
// every later recursion over the document is bounded by it.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <nlohmann/json_fwd.hpp>
#include <string_view>

#include "base/status.h"

namespace fk::codec {

// AWS publishes no nesting limit; 32 is deeper than any document of AWS's shapes (a policy
// with a condition block is 5 deep, a template with nested intrinsic functions under 12).
inline constexpr std::size_t kDefaultMaxDepth = 32;

struct JsonLimits {
  std::size_t max_depth = kDefaultMaxDepth;  // containers inside containers; 1 = a flat object
  std::size_t max_bytes = 1 << 20;           // the input's size
};

// Each returns the document, or InvalidRequest saying which bound or rule it broke:
// "nested deeper than 32 levels", "larger than N bytes", "not valid JSON: <where>".
Result<nlohmann::json> parse_json(std::string_view text, const JsonLimits& limits = {});
// Strict CBOR (no trailing bytes), no tags, text strings checked as UTF-8.
Result<nlohmann::json> parse_cbor(std::string_view bytes, const JsonLimits& limits = {});

}  // namespace fk::codec
