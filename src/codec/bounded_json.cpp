#include "codec/bounded_json.h"

#include <nlohmann/json.hpp>

namespace fk::codec {
namespace {

using nlohmann::json;
using DomParser = nlohmann::detail::json_sax_dom_parser<json>;

// nlohmann's DOM builder, stopped at the first container deeper than the limit. The decoders
// call start_object/start_array before they read (or recurse into) the container's contents,
// so returning false there ends the parse before any deeper level exists.
class DepthBoundedSax {
 public:
  DepthBoundedSax(json& root, std::size_t max_depth) : dom_(root, false), max_depth_(max_depth) {}

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(json::number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(json::number_float_t v, const json::string_t& s) {
    return dom_.number_float(v, s);
  }
  bool string(json::string_t& v) { return dom_.string(v); }
  bool binary(json::binary_t& v) { return dom_.binary(v); }
  bool start_object(std::size_t n) { return enter() && dom_.start_object(n); }
  bool key(json::string_t& k) { return dom_.key(k); }
  bool end_object() {
    --depth_;
    return dom_.end_object();
  }
  bool start_array(std::size_t n) { return enter() && dom_.start_array(n); }
  bool end_array() {
    --depth_;
    return dom_.end_array();
  }
  template <class Exception>
  bool parse_error(std::size_t, const std::string&, const Exception& e) {
    error_ = e.what();
    return false;
  }

  bool too_deep() const { return too_deep_; }
  const std::string& error() const { return error_; }

 private:
  bool enter() {
    if (++depth_ > max_depth_) {
      too_deep_ = true;
      return false;
    }
    return true;
  }

  DomParser dom_;
  std::size_t max_depth_;
  std::size_t depth_ = 0;
  bool too_deep_ = false;
  std::string error_;
};

// nlohmann's messages start with "[json.exception.parse_error.101] parse error at line 1, ...".
std::string without_prefix(const std::string& what) {
  auto p = what.find("] ");
  return p == std::string::npos ? what : what.substr(p + 2);
}

Result<json> finish(bool ok, const DepthBoundedSax& sax, json& out, const JsonLimits& limits,
                    const char* format) {
  if (sax.too_deep())
    return invalid_request(std::string(format) + " nested deeper than " +
                           std::to_string(limits.max_depth) + " levels");
  if (!ok || out.is_discarded()) {
    std::string why = sax.error().empty() ? std::string("malformed") : without_prefix(sax.error());
    return invalid_request(std::string("not valid ") + format + ": " + why);
  }
  return std::move(out);
}

Status check_size(std::string_view input, const JsonLimits& limits, const char* format) {
  if (input.size() > limits.max_bytes)
    return invalid_request(std::string(format) + " larger than " +
                           std::to_string(limits.max_bytes) + " bytes");
  return Status::ok();
}

}  // namespace

Result<json> parse_json(std::string_view text, const JsonLimits& limits) {
  FK_RETURN_IF_ERROR(check_size(text, limits, "JSON"));
  json out;
  DepthBoundedSax sax(out, limits.max_depth);
  const bool ok = json::sax_parse(text, &sax);
  return finish(ok, sax, out, limits, "JSON");
}

Result<json> parse_cbor(std::string_view bytes, const JsonLimits& limits) {
  FK_RETURN_IF_ERROR(check_size(bytes, limits, "CBOR"));
  json out;
  DepthBoundedSax sax(out, limits.max_depth);
  bool ok = false;
  // nlohmann-json throws (even through a SAX that never throws) on a declared length larger
  // than a container can hold, and does not check that CBOR text strings are UTF-8 (dump()
  // does, and throws): both are caught here, at the boundary.
  try {
    ok = json::sax_parse(bytes, &sax, json::input_format_t::cbor, /*strict=*/true);
    if (ok && !sax.too_deep() && !out.is_discarded()) (void)out.dump();
  } catch (const json::type_error&) {  // dump(): 316, invalid UTF-8
    return invalid_request("not valid CBOR: a text string that is not UTF-8");
  } catch (const json::exception& e) {
    return invalid_request("not valid CBOR: " + without_prefix(e.what()));
  }
  return finish(ok, sax, out, limits, "CBOR");
}

}  // namespace fk::codec
