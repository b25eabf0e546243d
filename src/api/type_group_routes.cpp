// Thing types (create, describe, deprecate, delete, list) and the rest of thing groups
// (describe, update, delete, list, things in a group, groups of a thing).
#include <map>
#include <set>

#include "api/routing.h"

namespace fk::api {

using registry::Txn;

namespace {

// Every thing group's parent ("" for a root), by group name.
Result<std::map<std::string, std::string>> group_parents(Txn& txn) {
  std::map<std::string, std::string> parent_of;
  storage::Page scan{"", 1000};
  for (;;) {
    FK_ASSIGN_OR_RETURN(auto list, txn.store().list_thing_groups(scan));
    for (const auto& g : list) parent_of[g.name] = g.parent_name;
    if (list.size() < scan.limit) return parent_of;
    scan.after = list.back().name;
  }
}

json type_entry(const ApiContext& ctx, const storage::ThingTypeRecord& t) {
  json props = {{"searchableAttributes", t.searchable_attributes}};
  if (!t.description.empty()) props["thingTypeDescription"] = t.description;
  json meta = {{"deprecated", t.deprecated}, {"creationDate", t.created_at}};
  if (t.deprecated) meta["deprecationDate"] = t.deprecated_at;
  return {{"thingTypeName", t.name},
          {"thingTypeId", t.thing_type_id},
          {"thingTypeArn", ctx.arns().thing_type(t.name)},
          {"thingTypeProperties", props},
          {"thingTypeMetadata", meta}};
}

Result<std::optional<std::int64_t>> expected_version(const Call& c) {
  if (auto v = c.q("expectedVersion")) {
    char* end = nullptr;
    long long n = std::strtoll(v->c_str(), &end, 10);
    if (v->empty() || *end != '\0') return bad_member("expectedVersion", "an integer");
    return std::optional<std::int64_t>(n);
  }
  if (c.body.contains("expectedVersion")) {
    if (!c.body["expectedVersion"].is_number_integer())
      return bad_member("expectedVersion", "an integer");
    return std::optional<std::int64_t>(c.body["expectedVersion"].get<std::int64_t>());
  }
  return std::optional<std::int64_t>();
}

Result<storage::Attributes> group_attributes(const json& props, bool* merge) {
  storage::Attributes out;
  *merge = false;
  if (!props.contains("attributePayload")) return out;
  const json& ap = props["attributePayload"];
  if (!ap.is_object()) return bad_member("thingGroupProperties.attributePayload", "an object");
  if (ap.contains("attributes")) {
    if (!ap["attributes"].is_object())
      return bad_member("thingGroupProperties.attributePayload.attributes", "a map of strings");
    for (const auto& [k, v] : ap["attributes"].items()) {
      if (!v.is_string()) return bad_member("attributePayload.attributes." + k, "a string");
      out[k] = v.get<std::string>();
    }
  }
  if (ap.contains("merge") && ap["merge"].is_boolean()) *merge = ap["merge"].get<bool>();
  return out;
}

}  // namespace

void add_type_and_group_routes(RouteTable& t, ApiContext& ctx) {
  t.add("POST", "/thing-types/{thingTypeName}", [&ctx](Call& c) -> Result<json> {
    std::string description;
    std::vector<std::string> searchable;
    if (c.body.contains("thingTypeProperties")) {
      const json& p = c.body["thingTypeProperties"];
      if (!p.is_object()) return bad_member("thingTypeProperties", "an object");
      if (p.contains("thingTypeDescription")) {
        if (!p["thingTypeDescription"].is_string())
          return bad_member("thingTypeProperties.thingTypeDescription", "a string");
        description = p["thingTypeDescription"].get<std::string>();
      }
      if (p.contains("searchableAttributes")) {
        if (!p["searchableAttributes"].is_array())
          return bad_member("thingTypeProperties.searchableAttributes", "a list of strings");
        for (const auto& a : p["searchableAttributes"]) {
          if (!a.is_string())
            return bad_member("thingTypeProperties.searchableAttributes", "a list of strings");
          searchable.push_back(a.get<std::string>());
        }
      }
    }
    storage::ThingTypeRecord rec;
    FK_RETURN_IF_ERROR(ctx.registry.write([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(
          rec, txn.create_thing_type(c.labels["thingTypeName"], description, searchable));
      return Status::ok();
    }));
    return json{{"thingTypeName", rec.name},
                {"thingTypeArn", ctx.arns().thing_type(rec.name)},
                {"thingTypeId", rec.thing_type_id}};
  });
  t.add("GET", "/thing-types/{thingTypeName}", [&ctx](Call& c) -> Result<json> {
    json out;
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(auto rec, txn.describe_thing_type(c.labels["thingTypeName"]));
      out = type_entry(ctx, rec);
      return Status::ok();
    }));
    return out;
  });
  t.add("POST", "/thing-types/{thingTypeName}/deprecate", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(bool undo, c.bool_member("undoDeprecate", false));
    FK_RETURN_IF_ERROR(ctx.registry.write(
        [&](Txn& txn) { return txn.deprecate_thing_type(c.labels["thingTypeName"], undo); }));
    return json::object();
  });
  t.add("DELETE", "/thing-types/{thingTypeName}", [&ctx](Call& c) -> Result<json> {
    FK_RETURN_IF_ERROR(ctx.registry.write(
        [&](Txn& txn) { return txn.delete_thing_type(c.labels["thingTypeName"]); }));
    return json::object();
  });
  t.add("GET", "/thing-types", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(PageRequest page, page_request(c, "nextToken", "maxResults"));
    const std::string only = c.q("thingTypeName").value_or("");
    json types = json::array();
    std::string next;
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(auto list,
                          txn.store().list_thing_types(storage::Page{page.after, page.size + 1}));
      if (list.size() > page.size) {
        list.resize(page.size);
        next = list.back().name;
      }
      for (const auto& rec : list) {
        if (only.empty() || rec.name == only) types.push_back(type_entry(ctx, rec));
      }
      return Status::ok();
    }));
    json out = {{"thingTypes", types}};
    if (!next.empty()) out["nextToken"] = next;
    return out;
  });

  t.add("GET", "/thing-groups/{thingGroupName}", [&ctx](Call& c) -> Result<json> {
    json out;
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(auto g, txn.describe_thing_group(c.labels["thingGroupName"]));
      json props = {{"attributePayload", {{"attributes", g.attributes}}}};
      if (!g.description.empty()) props["thingGroupDescription"] = g.description;
      json meta = {{"creationDate", g.created_at}};
      if (!g.parent_name.empty()) meta["parentGroupName"] = g.parent_name;
      out = {{"thingGroupName", g.name},
             {"thingGroupId", g.group_id},
             {"thingGroupArn", ctx.arns().thing_group(g.name)},
             {"version", g.version},
             {"thingGroupProperties", props},
             {"thingGroupMetadata", meta}};
      return Status::ok();
    }));
    return out;
  });
  t.add("PATCH", "/thing-groups/{thingGroupName}", [&ctx](Call& c) -> Result<json> {
    if (!c.body.contains("thingGroupProperties") || !c.body["thingGroupProperties"].is_object())
      return bad_member("thingGroupProperties", "an object");
    const json& props = c.body["thingGroupProperties"];
    std::optional<std::string> description;
    if (props.contains("thingGroupDescription")) {
      if (!props["thingGroupDescription"].is_string())
        return bad_member("thingGroupProperties.thingGroupDescription", "a string");
      description = props["thingGroupDescription"].get<std::string>();
    }
    bool merge = false;
    std::optional<storage::Attributes> attributes;
    if (props.contains("attributePayload")) {
      FK_ASSIGN_OR_RETURN(auto a, group_attributes(props, &merge));
      attributes = std::move(a);
    }
    FK_ASSIGN_OR_RETURN(auto expected, expected_version(c));
    std::int64_t version = 0;
    FK_RETURN_IF_ERROR(ctx.registry.write([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(version, txn.update_thing_group(c.labels["thingGroupName"], description,
                                                          attributes, merge, expected));
      return Status::ok();
    }));
    return json{{"version", version}};
  });
  t.add("DELETE", "/thing-groups/{thingGroupName}", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(auto expected, expected_version(c));
    FK_RETURN_IF_ERROR(ctx.registry.write(
        [&](Txn& txn) { return txn.delete_thing_group(c.labels["thingGroupName"], expected); }));
    return json::object();
  });
  t.add("GET", "/thing-groups", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(PageRequest page, page_request(c, "nextToken", "maxResults"));
    const std::string parent = c.q("parentGroup").value_or("");
    const std::string prefix = c.q("namePrefixFilter").value_or("");
    FK_ASSIGN_OR_RETURN(bool recursive, c.q_bool("recursive", true));
    json groups = json::array();
    std::string next;
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      // Every group (by name), filtered, then paged: a filter never shortens a page.
      FK_ASSIGN_OR_RETURN(auto parent_of, group_parents(txn));
      if (!parent.empty() && !parent_of.count(parent))
        return not_found("thing group " + parent + " does not exist");
      auto under = [&](const std::string& name) {
        std::string p = parent_of[name];
        for (int depth = 0; !p.empty() && depth < 16; ++depth) {  // AWS: at most 7 levels
          if (p == parent) return true;
          if (!recursive) return false;
          p = parent_of[p];
        }
        return false;
      };
      for (auto it = parent_of.upper_bound(page.after); it != parent_of.end(); ++it) {
        const std::string& name = it->first;
        if (!prefix.empty() && name.rfind(prefix, 0) != 0) continue;
        if (!parent.empty() && !under(name)) continue;
        if (groups.size() == page.size) {
          next = groups.back()["groupName"];
          break;
        }
        groups.push_back({{"groupName", name}, {"groupArn", ctx.arns().thing_group(name)}});
      }
      return Status::ok();
    }));
    json out = {{"thingGroups", groups}};
    if (!next.empty()) out["nextToken"] = next;
    return out;
  });
  t.add("GET", "/thing-groups/{thingGroupName}/things", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(PageRequest page, page_request(c, "nextToken", "maxResults"));
    FK_ASSIGN_OR_RETURN(bool recursive, c.q_bool("recursive", false));
    json things = json::array();
    std::string next;
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(auto g, txn.describe_thing_group(c.labels["thingGroupName"]));
      if (!recursive) {
        FK_ASSIGN_OR_RETURN(auto names, txn.store().list_group_members(
                                            g.name, storage::Page{page.after, page.size + 1}));
        things = names_page(names, page.size, &next);
        return Status::ok();
      }
      // The group and every group under it; each thing once, by name.
      FK_ASSIGN_OR_RETURN(auto parent_of, group_parents(txn));
      std::set<std::string> members;
      for (const auto& [name, parent] : parent_of) {
        std::string p = name;
        for (int depth = 0; !p.empty() && p != g.name && depth < 16; ++depth) p = parent_of[p];
        if (p != g.name) continue;
        storage::Page scan{"", 1000};
        for (;;) {
          FK_ASSIGN_OR_RETURN(auto list, txn.store().list_group_members(name, scan));
          members.insert(list.begin(), list.end());
          if (list.size() < scan.limit) break;
          scan.after = list.back();
        }
      }
      things = names_page(std::vector<std::string>(members.upper_bound(page.after), members.end()),
                          page.size, &next);
      return Status::ok();
    }));
    json out = {{"things", things}};
    if (!next.empty()) out["nextToken"] = next;
    return out;
  });
  t.add("GET", "/things/{thingName}/thing-groups", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(PageRequest page, page_request(c, "nextToken", "maxResults"));
    json groups = json::array();
    std::string next;
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(auto thing, txn.describe_thing(c.labels["thingName"]));
      FK_ASSIGN_OR_RETURN(auto names, txn.store().list_groups_of_thing(
                                          thing.name, storage::Page{page.after, page.size + 1}));
      for (const auto& n : names_page(names, page.size, &next)) {
        const std::string g = n.get<std::string>();
        groups.push_back({{"groupName", g}, {"groupArn", ctx.arns().thing_group(g)}});
      }
      return Status::ok();
    }));
    json out = {{"thingGroups", groups}};
    if (!next.empty()) out["nextToken"] = next;
    return out;
  });
}

}  // namespace fk::api
