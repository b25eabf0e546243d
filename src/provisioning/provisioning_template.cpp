#include "provisioning/provisioning_template.h"

#include <nlohmann/json.hpp>
#include <set>

#include "base/strings.h"
#include "codec/bounded_json.h"

namespace fk::provisioning {
namespace {

using nlohmann::json;
using Value = std::variant<std::string, std::vector<std::string>>;

constexpr std::string_view kCertificateId = "AWS::IoT::Certificate::Id";
constexpr std::string_view kSubjectPrefix = "AWS::IoT::Certificate::";
const std::set<std::string> kSubjectFields = {
    "CommonName", "Country",     "Organization", "OrganizationalUnit", "DistinguishedNameQualifier",
    "StateName",  "SerialNumber"};

Status invalid(const std::string& path, const std::string& what) {
  return invalid_request("Invalid provisioning template: " +
                         (path.empty() ? what : path + ": " + what));
}

// Evaluates template values. In validation mode parameters are placeholders and lookups that
// depend on them (list indexes, mapping keys) do not fail.
struct Evaluator {
  const json& root;
  const std::map<std::string, std::string>* parameters;  // null: validating
  const PseudoParameters* pseudo;

  bool validating() const { return parameters == nullptr; }

  Result<std::string> ref(const std::string& name, const std::string& path) const {
    if (name == kCertificateId) return validating() ? std::string("id") : pseudo->certificate_id;
    if (name.rfind(kSubjectPrefix, 0) == 0 &&
        kSubjectFields.count(name.substr(kSubjectPrefix.size()))) {
      if (validating()) return std::string("subject");
      auto it = pseudo->certificate_subject.find(name.substr(kSubjectPrefix.size()));
      if (it == pseudo->certificate_subject.end())
        return invalid_request("the certificate has no subject field " +
                               name.substr(kSubjectPrefix.size()) + " (" + path + ")");
      return it->second;
    }
    const json* params = root.contains("Parameters") ? &root["Parameters"] : nullptr;
    if (!params || !params->contains(name))
      return invalid(path, "Ref to '" + name + "', which is not a declared parameter");
    if (validating()) return std::string("p");
    auto it = parameters->find(name);
    if (it != parameters->end()) return it->second;
    const json& decl = (*params)[name];
    if (decl.contains("Default")) return decl["Default"].get<std::string>();
    return invalid_request("Missing required parameter: " + name);
  }

  Result<std::string> str(const json& node, const std::string& path) const {
    FK_ASSIGN_OR_RETURN(Value v, eval(node, path));
    if (auto* s = std::get_if<std::string>(&v)) return *s;
    return invalid(path, "must be a string, not a list");
  }

  Result<std::vector<std::string>> list(const json& node, const std::string& path) const {
    FK_ASSIGN_OR_RETURN(Value v, eval(node, path));
    if (auto* l = std::get_if<std::vector<std::string>>(&v)) return *l;
    return invalid(path, "must be a list");
  }

  Result<Value> eval(const json& node, const std::string& path) const {
    if (node.is_string()) return Value(node.get<std::string>());
    if (node.is_number() || node.is_boolean()) return Value(node.dump());
    if (node.is_array()) {
      std::vector<std::string> out;
      for (std::size_t i = 0; i < node.size(); ++i) {
        FK_ASSIGN_OR_RETURN(std::string s, str(node[i], path + "[" + std::to_string(i) + "]"));
        out.push_back(std::move(s));
      }
      return Value(std::move(out));
    }
    if (!node.is_object() || node.size() != 1)
      return invalid(path, "must be a string, a list or one intrinsic function");
    const std::string fn = node.begin().key();
    const json& arg = node.begin().value();
    const std::string p = path + "." + fn;
    if (fn == "Ref") {
      if (!arg.is_string()) return invalid(p, "takes a parameter name");
      FK_ASSIGN_OR_RETURN(std::string v, ref(arg.get<std::string>(), p));
      return Value(std::move(v));
    }
    if (fn == "Fn::Join") {
      if (!arg.is_array() || arg.size() != 2 || !arg[0].is_string())
        return invalid(p, "takes [delimiter, [values]]");
      FK_ASSIGN_OR_RETURN(auto parts, list(arg[1], p + "[1]"));
      std::string out;
      for (std::size_t i = 0; i < parts.size(); ++i) {
        if (i) out += arg[0].get<std::string>();
        out += parts[i];
      }
      return Value(std::move(out));
    }
    if (fn == "Fn::Split") {
      if (!arg.is_array() || arg.size() != 2 || !arg[0].is_string() ||
          arg[0].get<std::string>().empty())
        return invalid(p, "takes [delimiter, string] with a non-empty delimiter");
      FK_ASSIGN_OR_RETURN(std::string s, str(arg[1], p + "[1]"));
      const std::string d = arg[0].get<std::string>();
      std::vector<std::string> out;
      std::size_t start = 0;
      for (std::size_t pos; (pos = s.find(d, start)) != std::string::npos; start = pos + d.size())
        out.push_back(s.substr(start, pos - start));
      out.push_back(s.substr(start));
      return Value(std::move(out));
    }
    if (fn == "Fn::Select") {
      if (!arg.is_array() || arg.size() != 2) return invalid(p, "takes [index, list]");
      FK_ASSIGN_OR_RETURN(std::string index_text, str(arg[0], p + "[0]"));
      FK_ASSIGN_OR_RETURN(auto items, list(arg[1], p + "[1]"));
      if (validating()) return Value(std::string("selected"));
      char* end = nullptr;
      long index = std::strtol(index_text.c_str(), &end, 10);
      if (index_text.empty() || *end != '\0' || index < 0 ||
          static_cast<std::size_t>(index) >= items.size())
        return invalid_request("Fn::Select index " + index_text +
                               " is out of range for a list of " + std::to_string(items.size()) +
                               " (" + p + ")");
      return Value(items[static_cast<std::size_t>(index)]);
    }
    if (fn == "Fn::FindInMap") {
      if (!arg.is_array() || arg.size() != 3) return invalid(p, "takes [map, key, key]");
      FK_ASSIGN_OR_RETURN(std::string map, str(arg[0], p + "[0]"));
      FK_ASSIGN_OR_RETURN(std::string k1, str(arg[1], p + "[1]"));
      FK_ASSIGN_OR_RETURN(std::string k2, str(arg[2], p + "[2]"));
      const json* maps = root.contains("Mappings") ? &root["Mappings"] : nullptr;
      if (validating()) {
        if (arg[0].is_string() && (!maps || !maps->contains(map)))
          return invalid(p, "no mapping named '" + map + "'");
        return Value(std::string("mapped"));
      }
      if (!maps || !maps->contains(map) || !(*maps)[map].contains(k1) ||
          !(*maps)[map][k1].contains(k2))
        return invalid_request("Fn::FindInMap: no value for " + map + "/" + k1 + "/" + k2);
      return Value((*maps)[map][k1][k2].get<std::string>());
    }
    if (fn == "Fn::Sub") {
      std::string text;
      const json* vars = nullptr;
      if (arg.is_string()) {
        text = arg.get<std::string>();
      } else if (arg.is_array() && arg.size() == 2 && arg[0].is_string() && arg[1].is_object()) {
        text = arg[0].get<std::string>();
        vars = &arg[1];
      } else {
        return invalid(p, "takes a string or [string, {variables}]");
      }
      std::string out;
      std::size_t i = 0;
      while (i < text.size()) {
        if (text.compare(i, 2, "${") == 0) {
          std::size_t end = text.find('}', i);
          if (end == std::string::npos) return invalid(p, "unterminated ${ in '" + text + "'");
          std::string name = text.substr(i + 2, end - i - 2);
          if (vars && vars->contains(name)) {
            FK_ASSIGN_OR_RETURN(std::string v, str((*vars)[name], p + "[1]." + name));
            out += v;
          } else {
            FK_ASSIGN_OR_RETURN(std::string v, ref(name, p));
            out += v;
          }
          i = end + 1;
        } else {
          out += text[i++];
        }
      }
      return Value(std::move(out));
    }
    return invalid(p, "the intrinsic function '" + fn + "' is not supported");
  }
};

Result<Override> parse_override(const json& settings, std::initializer_list<const char*> names,
                                bool merge_allowed, const std::string& path) {
  for (const char* n : names) {
    if (!settings.contains(n)) continue;
    const json& v = settings[n];
    if (!v.is_string())
      return invalid(path + "." + n, "must be DO_NOTHING, REPLACE, MERGE or FAIL");
    const std::string s = v.get<std::string>();
    if (s == "DO_NOTHING") return Override::kDoNothing;
    if (s == "REPLACE") return Override::kReplace;
    if (s == "FAIL") return Override::kFail;
    if (s == "MERGE" && merge_allowed) return Override::kMerge;
    return invalid(path + "." + n, "'" + s + "' is not allowed here (DO_NOTHING, REPLACE, FAIL" +
                                       std::string(merge_allowed ? ", MERGE" : "") + ")");
  }
  return Override::kDoNothing;
}

// Builds the plan (validating: checks shape and references with placeholder values).
Result<Plan> build(const json& root, const Evaluator& ev) {
  Plan plan;
  const json& resources = root["Resources"];
  for (const auto& [name, res] : resources.items()) {
    const std::string path = "Resources." + name;
    if (!res.is_object() || !res.contains("Type") || !res["Type"].is_string())
      return invalid(path, "a resource needs a Type");
    const std::string type = res["Type"].get<std::string>();
    const json props = res.value("Properties", json::object());
    const json settings = res.value("OverrideSettings", json::object());
    if (!props.is_object()) return invalid(path + ".Properties", "must be an object");
    if (!settings.is_object()) return invalid(path + ".OverrideSettings", "must be an object");
    const std::string pp = path + ".Properties";
    if (type == "AWS::IoT::Thing") {
      if (plan.thing) return invalid(path, "a template creates at most one thing");
      ThingPlan t;
      t.logical_name = name;
      if (!props.contains("ThingName")) return invalid(pp, "ThingName is required");
      FK_ASSIGN_OR_RETURN(t.name, ev.str(props["ThingName"], pp + ".ThingName"));
      if (props.contains("ThingTypeName")) {
        FK_ASSIGN_OR_RETURN(auto tn, ev.str(props["ThingTypeName"], pp + ".ThingTypeName"));
        t.type_name = tn;
      }
      if (props.contains("AttributePayload")) {
        const json& ap = props["AttributePayload"];
        if (!ap.is_object()) return invalid(pp + ".AttributePayload", "must be an object");
        std::map<std::string, std::string> attrs;
        for (const auto& [k, v] : ap.items()) {
          FK_ASSIGN_OR_RETURN(attrs[k], ev.str(v, pp + ".AttributePayload." + k));
        }
        t.attributes = std::move(attrs);
      }
      if (props.contains("ThingGroups")) {
        FK_ASSIGN_OR_RETURN(auto groups, ev.list(props["ThingGroups"], pp + ".ThingGroups"));
        t.groups = std::move(groups);
      }
      const std::string op = path + ".OverrideSettings";
      FK_ASSIGN_OR_RETURN(
          t.attributes_override,
          parse_override(settings, {"AttributePayload", "ATTRIBUTE_PAYLOAD"}, true, op));
      FK_ASSIGN_OR_RETURN(
          t.type_override,
          parse_override(settings, {"ThingTypeName", "THING_TYPE_NAME"}, false, op));
      FK_ASSIGN_OR_RETURN(t.groups_override,
                          parse_override(settings, {"ThingGroups", "THING_GROUPS"}, true, op));
      plan.thing = std::move(t);
    } else if (type == "AWS::IoT::Certificate") {
      if (plan.certificate) return invalid(path, "a template has at most one certificate");
      CertificatePlan c;
      c.logical_name = name;
      if (!props.contains("CertificateId"))
        return invalid(pp,
                       "fleet provisioning templates set CertificateId to "
                       "{\"Ref\":\"AWS::IoT::Certificate::Id\"}");
      FK_ASSIGN_OR_RETURN(std::string id, ev.str(props["CertificateId"], pp + ".CertificateId"));
      if (!ev.validating() && id != ev.pseudo->certificate_id)
        return invalid_request("CertificateId must be the certificate being provisioned");
      if (props.contains("Status")) {
        FK_ASSIGN_OR_RETURN(std::string st, ev.str(props["Status"], pp + ".Status"));
        std::string up;
        for (char ch : st) up += static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
        if (up != "ACTIVE" && up != "INACTIVE")
          return invalid(pp + ".Status", "must be ACTIVE or INACTIVE, not '" + st + "'");
        c.active = up == "ACTIVE";
      }
      plan.certificate = c;
    } else if (type == "AWS::IoT::Policy") {
      PolicyPlan p;
      p.logical_name = name;
      const bool has_name = props.contains("PolicyName");
      const bool has_doc = props.contains("PolicyDocument");
      if (has_name == has_doc)
        return invalid(pp, has_name ? "PolicyName and PolicyDocument exclude each other"
                                    : "Neither PolicyName nor PolicyDocument is present");
      if (has_name) {
        FK_ASSIGN_OR_RETURN(p.name, ev.str(props["PolicyName"], pp + ".PolicyName"));
      } else {
        const json& d = props["PolicyDocument"];
        if (d.is_object()) {
          p.document = d.dump();
        } else {
          FK_ASSIGN_OR_RETURN(p.document, ev.str(d, pp + ".PolicyDocument"));
        }
        // AWS: the default name is a hash of the document.
        std::size_t h = std::hash<std::string>{}(p.document);
        p.name = "fp-" + to_hex(std::string_view(reinterpret_cast<const char*>(&h), sizeof h));
      }
      plan.policies.push_back(std::move(p));
    } else {
      return invalid(path + ".Type", "'" + type +
                                         "' is not AWS::IoT::Thing, AWS::IoT::Certificate or "
                                         "AWS::IoT::Policy");
    }
  }
  if (root.contains("DeviceConfiguration")) {
    const json& dc = root["DeviceConfiguration"];
    if (!dc.is_object()) return invalid("DeviceConfiguration", "must be a flat object");
    for (const auto& [k, v] : dc.items()) {
      if (v.is_object() && v.size() != 1)
        return invalid("DeviceConfiguration." + k, "must be a string (no nested objects)");
      FK_ASSIGN_OR_RETURN(plan.device_configuration[k], ev.str(v, "DeviceConfiguration." + k));
    }
  }
  return plan;
}

}  // namespace

Result<ProvisioningTemplate> ProvisioningTemplate::parse(std::string_view body) {
  if (body.size() > kMaxTemplateChars)
    return invalid("", "the body has " + std::to_string(body.size()) +
                           " characters; at most 10240 are allowed");
  auto parsed = codec::parse_json(body);
  if (!parsed.is_ok())
    return invalid(
        "", "Template format error: JSON not well-formed (" + parsed.status().message() + ")");
  json root = std::move(*parsed);
  if (!root.is_object()) return invalid("", "the template must be a JSON object");
  for (const auto& [k, v] : root.items()) {
    if (k != "Parameters" && k != "Mappings" && k != "Resources" && k != "DeviceConfiguration" &&
        k != "AWSTemplateFormatVersion" && k != "Description")
      return invalid(
          k, k == "Conditions" ? "Conditions are not supported" : "unknown section '" + k + "'");
  }
  ProvisioningTemplate t;
  if (root.contains("Parameters")) {
    const json& ps = root["Parameters"];
    if (!ps.is_object()) return invalid("Parameters", "must be an object");
    for (const auto& [name, decl] : ps.items()) {
      const std::string path = "Parameters." + name;
      if (!decl.is_object()) return invalid(path, "must be an object with Type");
      if (decl.contains("Type") && decl["Type"] != "String")
        return invalid(path + ".Type", "only String parameters are supported");
      if (decl.contains("Default") && !decl["Default"].is_string())
        return invalid(path + ".Default", "must be a string");
      t.parameter_names_.push_back(name);
    }
  }
  if (root.contains("Mappings")) {
    const json& ms = root["Mappings"];
    if (!ms.is_object()) return invalid("Mappings", "must be an object");
    for (const auto& [m, level1] : ms.items()) {
      if (!level1.is_object()) return invalid("Mappings." + m, "must be an object of objects");
      for (const auto& [k1, level2] : level1.items()) {
        if (!level2.is_object()) return invalid("Mappings." + m + "." + k1, "must be an object");
        for (const auto& [k2, v] : level2.items()) {
          if (!v.is_string())
            return invalid("Mappings." + m + "." + k1 + "." + k2,
                           "must be a string (no parameters or functions in Mappings)");
        }
      }
    }
  }
  if (!root.contains("Resources") || !root["Resources"].is_object() || root["Resources"].empty())
    return invalid("Resources", "at least one resource is required");
  Evaluator ev{root, nullptr, nullptr};
  FK_ASSIGN_OR_RETURN(Plan plan, build(root, ev));
  (void)plan;
  t.body_ = std::string(body);
  return t;
}

std::variant<Plan, PlanError> ProvisioningTemplate::evaluate(
    const std::map<std::string, std::string>& parameters, const PseudoParameters& pseudo) const {
  // body_ passed parse(): well-formed and within the depth bound.
  json root = json::parse(body_, nullptr, false);
  Evaluator ev{root, &parameters, &pseudo};
  auto plan = build(root, ev);
  if (!plan.is_ok()) return PlanError{400, "InvalidParameters", plan.status().message()};
  return std::move(*plan);
}

}  // namespace fk::provisioning
