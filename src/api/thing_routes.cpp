// Things, thing groups (the parts policies need) and thing principals.
#include "api/routing.h"

namespace fk::api {

using registry::Txn;

namespace {

Result<storage::Attributes> attributes_of(const json& payload, bool* merge) {
  storage::Attributes out;
  if (merge) *merge = false;
  if (payload.is_null()) return out;
  if (!payload.is_object()) return bad_member("attributePayload", "an object");
  if (payload.contains("attributes")) {
    if (!payload["attributes"].is_object())
      return bad_member("attributePayload.attributes", "a map of strings");
    for (const auto& [k, v] : payload["attributes"].items()) {
      if (!v.is_string()) return bad_member("attributePayload.attributes." + k, "a string");
      out[k] = v.get<std::string>();
    }
  }
  if (payload.contains("merge")) {
    if (!payload["merge"].is_boolean()) return bad_member("attributePayload.merge", "a boolean");
    if (merge) *merge = payload["merge"].get<bool>();
  }
  return out;
}

Result<std::string> principal_header(const Call& c) {
  std::string p = c.http.header("x-amzn-principal");
  if (p.empty()) return bad_member("principal", "a certificate ARN (header x-amzn-principal)");
  return p;
}

json thing_entry(const ApiContext& ctx, const storage::ThingRecord& t) {
  json j = {{"thingName", t.name},
            {"thingArn", ctx.arns().thing(t.name)},
            {"attributes", t.attributes},
            {"version", t.version}};
  if (!t.type_name.empty()) j["thingTypeName"] = t.type_name;
  return j;
}

}  // namespace

void add_thing_routes(RouteTable& t, ApiContext& ctx) {
  t.add("POST", "/things/{thingName}", [&ctx](Call& c) -> Result<json> {
    registry::CreateThingRequest req;
    req.name = c.labels["thingName"];
    FK_ASSIGN_OR_RETURN(auto type, c.optional_member("thingTypeName"));
    req.type_name = type.value_or("");
    FK_ASSIGN_OR_RETURN(req.attributes,
                        attributes_of(c.body.value("attributePayload", json()), nullptr));
    storage::ThingRecord thing;
    FK_RETURN_IF_ERROR(ctx.registry.write([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(thing, txn.create_thing(req));
      return Status::ok();
    }));
    return json{{"thingName", thing.name},
                {"thingArn", ctx.arns().thing(thing.name)},
                {"thingId", thing.thing_id}};
  });
  t.add("GET", "/things/{thingName}", [&ctx](Call& c) -> Result<json> {
    json out;
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(auto thing, txn.describe_thing(c.labels["thingName"]));
      out = thing_entry(ctx, thing);
      out["thingId"] = thing.thing_id;
      out["defaultClientId"] = thing.name;
      return Status::ok();
    }));
    return out;
  });
  t.add("PATCH", "/things/{thingName}", [&ctx](Call& c) -> Result<json> {
    registry::UpdateThingRequest req;
    req.name = c.labels["thingName"];
    FK_ASSIGN_OR_RETURN(req.type_name, c.optional_member("thingTypeName"));
    FK_ASSIGN_OR_RETURN(req.remove_type, c.bool_member("removeThingType", false));
    if (c.body.contains("attributePayload")) {
      FK_ASSIGN_OR_RETURN(req.attributes,
                          attributes_of(c.body["attributePayload"], &req.merge_attributes));
    }
    if (c.body.contains("expectedVersion")) {
      if (!c.body["expectedVersion"].is_number_integer())
        return bad_member("expectedVersion", "an integer");
      req.expected_version = c.body["expectedVersion"].get<std::int64_t>();
    }
    FK_RETURN_IF_ERROR(ctx.registry.write([&](Txn& txn) { return txn.update_thing(req); }));
    return json::object();
  });
  t.add("DELETE", "/things/{thingName}", [&ctx](Call& c) -> Result<json> {
    std::optional<std::int64_t> expected;
    if (auto v = c.q("expectedVersion")) {
      char* end = nullptr;
      long long n = std::strtoll(v->c_str(), &end, 10);
      if (v->empty() || *end != '\0') return bad_member("expectedVersion", "an integer");
      expected = n;
    }
    FK_RETURN_IF_ERROR(ctx.registry.write(
        [&](Txn& txn) { return txn.delete_thing(c.labels["thingName"], expected); }));
    return json::object();
  });
  t.add("GET", "/things", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(PageRequest page, page_request(c, "nextToken", "maxResults"));
    storage::ThingQuery query;
    query.type_name = c.q("thingTypeName").value_or("");
    query.attribute_name = c.q("attributeName").value_or("");
    query.attribute_value = c.q("attributeValue").value_or("");
    FK_ASSIGN_OR_RETURN(query.attribute_value_prefix, c.q_bool("usePrefixAttributeValue", false));
    query.page = {page.after, page.size + 1};
    json things = json::array();
    std::string next;
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(auto list, txn.store().list_things(query));
      if (list.size() > page.size) {
        list.resize(page.size);
        next = list.back().name;
      }
      for (const auto& th : list) things.push_back(thing_entry(ctx, th));
      return Status::ok();
    }));
    json out = {{"things", things}};
    if (!next.empty()) out["nextToken"] = next;
    return out;
  });
  t.add("PUT", "/things/{thingName}/principals", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(std::string principal, principal_header(c));
    FK_RETURN_IF_ERROR(ctx.registry.write(
        [&](Txn& txn) { return txn.attach_thing_principal(c.labels["thingName"], principal); }));
    return json::object();
  });
  t.add("DELETE", "/things/{thingName}/principals", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(std::string principal, principal_header(c));
    FK_RETURN_IF_ERROR(ctx.registry.write(
        [&](Txn& txn) { return txn.detach_thing_principal(c.labels["thingName"], principal); }));
    return json::object();
  });
  t.add("GET", "/things/{thingName}/principals", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(PageRequest page, page_request(c, "nextToken", "maxResults"));
    json principals;
    std::string next;
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(auto thing, txn.describe_thing(c.labels["thingName"]));
      FK_ASSIGN_OR_RETURN(auto names, txn.store().list_thing_principals(
                                          thing.name, storage::Page{page.after, page.size + 1}));
      principals = names_page(names, page.size, &next);
      return Status::ok();
    }));
    json out = {{"principals", principals}};
    if (!next.empty()) out["nextToken"] = next;
    return out;
  });
  t.add("GET", "/principals/things", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(std::string principal, principal_header(c));
    FK_ASSIGN_OR_RETURN(PageRequest page, page_request(c, "nextToken", "maxResults"));
    json things;
    std::string next;
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(auto names, txn.store().list_principal_things(
                                          principal, storage::Page{page.after, page.size + 1}));
      things = names_page(names, page.size, &next);
      return Status::ok();
    }));
    json out = {{"things", things}};
    if (!next.empty()) out["nextToken"] = next;
    return out;
  });
  t.add("POST", "/thing-groups/{thingGroupName}", [&ctx](Call& c) -> Result<json> {
    registry::CreateThingGroupRequest req;
    req.name = c.labels["thingGroupName"];
    FK_ASSIGN_OR_RETURN(auto parent, c.optional_member("parentGroupName"));
    req.parent_name = parent.value_or("");
    if (c.body.contains("thingGroupProperties")) {
      const json& props = c.body["thingGroupProperties"];
      if (!props.is_object()) return bad_member("thingGroupProperties", "an object");
      if (props.contains("thingGroupDescription")) {
        if (!props["thingGroupDescription"].is_string())
          return bad_member("thingGroupProperties.thingGroupDescription", "a string");
        req.description = props["thingGroupDescription"].get<std::string>();
      }
      FK_ASSIGN_OR_RETURN(req.attributes,
                          attributes_of(props.value("attributePayload", json()), nullptr));
    }
    storage::ThingGroupRecord g;
    FK_RETURN_IF_ERROR(ctx.registry.write([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(g, txn.create_thing_group(req));
      return Status::ok();
    }));
    return json{{"thingGroupName", g.name},
                {"thingGroupArn", ctx.arns().thing_group(g.name)},
                {"thingGroupId", g.group_id}};
  });
  auto group_change = [&ctx](bool add) {
    return [&ctx, add](Call& c) -> Result<json> {
      FK_ASSIGN_OR_RETURN(auto group, c.optional_member("thingGroupName"));
      FK_ASSIGN_OR_RETURN(auto group_arn, c.optional_member("thingGroupArn"));
      FK_ASSIGN_OR_RETURN(auto thing, c.optional_member("thingName"));
      FK_ASSIGN_OR_RETURN(auto thing_arn, c.optional_member("thingArn"));
      auto name_of = [&](const std::optional<std::string>& name,
                         const std::optional<std::string>& arn) -> Result<std::string> {
        if (name) return *name;
        if (!arn) return std::string();
        FK_ASSIGN_OR_RETURN(auto parsed, registry::parse_arn(ctx.arns(), *arn));
        return parsed.id;
      };
      FK_ASSIGN_OR_RETURN(std::string g, name_of(group, group_arn));
      FK_ASSIGN_OR_RETURN(std::string th, name_of(thing, thing_arn));
      if (g.empty()) return bad_member("thingGroupName", "set (or thingGroupArn)");
      if (th.empty()) return bad_member("thingName", "set (or thingArn)");
      FK_RETURN_IF_ERROR(ctx.registry.write([&](Txn& txn) {
        return add ? txn.add_thing_to_group(g, th) : txn.remove_thing_from_group(g, th);
      }));
      return json::object();
    };
  };
  t.add("PUT", "/thing-groups/addThingToThingGroup", group_change(true));
  t.add("PUT", "/thing-groups/removeThingFromThingGroup", group_change(false));
}

}  // namespace fk::api
