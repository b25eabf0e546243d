// Fuzzes the bounded JSON/CBOR parsers every untrusted document goes through (src/codec): no
// input may crash them or yield a document deeper than the limit, and what they accept must
// serialise and parse back to the same document (JSON text).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string_view>

#include "codec/bounded_json.h"

namespace {

std::size_t depth_of(const nlohmann::json& j) {  // recursion bounded by the parser's limit
  std::size_t deepest = 0;
  if (j.is_array() || j.is_object()) {
    for (const auto& child : j) deepest = std::max(deepest, depth_of(child));
    return deepest + 1;
  }
  return 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  for (std::size_t limit : {std::size_t{1}, std::size_t{8}, fk::codec::kDefaultMaxDepth}) {
    const fk::codec::JsonLimits limits{limit, 1 << 20};
    for (bool cbor : {false, true}) {
      auto r = cbor ? fk::codec::parse_cbor(in, limits) : fk::codec::parse_json(in, limits);
      if (!r.is_ok()) continue;
      if (depth_of(*r) > limit) std::abort();
      if (cbor) continue;  // CBOR byte strings and NaNs have no JSON text of their own
      auto again = fk::codec::parse_json(r->dump(), limits);
      if (!again.is_ok() || *again != *r) std::abort();
    }
  }
  return 0;
}
