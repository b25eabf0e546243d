#include "storage/sql_rows.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

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

namespace {

// The non-empty values of one identity column (an empty identity never matches).
std::vector<std::string> present(const std::vector<std::string>& v) {
  std::vector<std::string> out;
  for (const auto& x : v)
    if (!x.empty()) out.push_back(x);
  return out;
}

}  // namespace

std::string timeline_select(const TimelineQuery& q, bool postgres) {
  const std::string number = postgres ? "?::bigint" : "CAST(? AS INTEGER)";
  std::string sql = std::string("SELECT ") + kTimelineCols + " FROM timeline WHERE (";
  bool any = false;
  for (const auto& [column, values] : {std::pair{"thing", present(q.things)},
                                       std::pair{"certificate_id", present(q.certificate_ids)},
                                       std::pair{"client_id", present(q.client_ids)}}) {
    if (values.empty()) continue;
    if (any) sql += " OR ";
    any = true;
    sql += std::string(column) + " IN (";
    for (std::size_t i = 0; i < values.size(); ++i) sql += i == 0 ? "?" : ",?";
    sql += ")";
  }
  if (!any) sql += "1=0";
  sql += ") AND at_ms >= " + number + " AND at_ms < " + number;
  if (q.before_sequence != 0) sql += " AND sequence < " + number;
  sql += " ORDER BY sequence DESC LIMIT " + std::to_string(std::max<std::size_t>(q.limit, 1));
  return sql;
}

std::vector<std::string> timeline_params(const TimelineQuery& q) {
  std::vector<std::string> out;
  for (const auto* values : {&q.things, &q.certificate_ids, &q.client_ids})
    for (const auto& v : present(*values)) out.push_back(v);
  out.push_back(std::to_string(q.from_ms));
  out.push_back(std::to_string(q.to_ms));
  if (q.before_sequence != 0) out.push_back(std::to_string(q.before_sequence));
  return out;
}

}  // namespace fk::storage::sql
