#include "storage/sql_rows.h"

#include <nlohmann/json.hpp>

namespace fk::storage::sql {

std::string attributes_to_json(const Attributes& a) {
  return nlohmann::json(a).dump();
}

Attributes attributes_from_json(std::string_view text) {
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  Attributes out;
  if (!j.is_object()) return out;
  for (auto& [k, v] : j.items()) {
    if (v.is_string()) out[k] = v.get<std::string>();
  }
  return out;
}

std::string strings_to_json(const std::vector<std::string>& v) {
  return nlohmann::json(v).dump();
}

std::vector<std::string> strings_from_json(std::string_view text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  std::vector<std::string> out;
  if (!j.is_array()) return out;
  for (auto& v : j) {
    if (v.is_string()) out.push_back(v.get<std::string>());
  }
  return out;
}

}  // namespace fk::storage::sql
