#include "provisioning/messages.h"

#include <nlohmann/json.hpp>

#include "codec/bounded_json.h"

namespace fk::provisioning {
namespace {

using nlohmann::json;

constexpr std::string_view kCreate = "$aws/certificates/create/";
constexpr std::string_view kCreateFromCsr = "$aws/certificates/create-from-csr/";
constexpr std::string_view kTemplates = "$aws/provisioning-templates/";
constexpr std::string_view kProvision = "/provision/";

std::optional<Format> format_of(std::string_view s) {
  if (s == "json") return Format::kJson;
  if (s == "cbor") return Format::kCbor;
  return std::nullopt;
}

bool valid_template_name(std::string_view name) {
  if (name.empty() || name.size() > 36) return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return false;
  }
  return true;
}

// The payload as a top-level map; 0 bytes count as an empty map. Depth is bounded before any
// recursion (a claim holder's nested CBOR must not reach the decoder's stack).
Result<json> decode_map(Format f, std::string_view payload) {
  if (payload.empty()) return json::object();
  auto j = f == Format::kJson ? codec::parse_json(payload) : codec::parse_cbor(payload);
  if (!j.is_ok()) return invalid_request("payload: " + j.status().message());
  if (!j->is_object()) return invalid_request("payload must be a map");
  return std::move(*j);
}

Result<std::string> text(const json& j, const char* name, bool required) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) {
    if (required) return invalid_request(std::string(name) + " is required");
    return std::string();
  }
  if (!it->is_string()) return invalid_request(std::string(name) + " must be a text string");
  return it->get<std::string>();
}

std::string dump(Format f, const json& j) {
  if (f == Format::kJson) return j.dump();
  auto bytes = json::to_cbor(j);
  return std::string(bytes.begin(), bytes.end());
}

}  // namespace

std::optional<RequestTopic> parse_request_topic(std::string_view topic) {
  RequestTopic r;
  r.topic = std::string(topic);
  if (topic.substr(0, kCreateFromCsr.size()) == kCreateFromCsr) {
    auto f = format_of(topic.substr(kCreateFromCsr.size()));
    if (!f) return std::nullopt;
    r.operation = Operation::kCreateCertificateFromCsr;
    r.format = *f;
    return r;
  }
  if (topic.substr(0, kCreate.size()) == kCreate) {
    auto f = format_of(topic.substr(kCreate.size()));
    if (!f) return std::nullopt;
    r.operation = Operation::kCreateKeysAndCertificate;
    r.format = *f;
    return r;
  }
  if (topic.substr(0, kTemplates.size()) == kTemplates) {
    std::string_view rest = topic.substr(kTemplates.size());
    auto p = rest.find(kProvision);
    if (p == std::string_view::npos) return std::nullopt;
    std::string_view name = rest.substr(0, p);
    auto f = format_of(rest.substr(p + kProvision.size()));
    if (!f || !valid_template_name(name)) return std::nullopt;
    r.operation = Operation::kRegisterThing;
    r.format = *f;
    r.template_name = std::string(name);
    return r;
  }
  return std::nullopt;
}

std::optional<Format> parse_rotation_topic(std::string_view topic) {
  if (topic.substr(0, kRotationTopicPrefix.size()) != kRotationTopicPrefix) return std::nullopt;
  return format_of(topic.substr(kRotationTopicPrefix.size()));
}

std::string rotation_topic(Format f) {
  return std::string(kRotationTopicPrefix) + (f == Format::kJson ? "json" : "cbor");
}

bool is_provisioning_topic(std::string_view topic) {
  return topic.substr(0, kCreate.size()) == kCreate ||
         topic.substr(0, kCreateFromCsr.size()) == kCreateFromCsr ||
         topic.substr(0, kTemplates.size()) == kTemplates;
}

std::string reply_topic(const RequestTopic& request, bool accepted) {
  return request.topic + (accepted ? "/accepted" : "/rejected");
}

Status decode_create_keys(Format f, std::string_view payload) {
  return decode_map(f, payload).status();
}

Result<CsrRequest> decode_csr_request(Format f, std::string_view payload) {
  FK_ASSIGN_OR_RETURN(json j, decode_map(f, payload));
  CsrRequest r;
  FK_ASSIGN_OR_RETURN(r.certificate_signing_request, text(j, "certificateSigningRequest", true));
  return r;
}

Result<RegisterThingRequest> decode_register_thing(Format f, std::string_view payload) {
  FK_ASSIGN_OR_RETURN(json j, decode_map(f, payload));
  RegisterThingRequest r;
  FK_ASSIGN_OR_RETURN(r.certificate_ownership_token, text(j, "certificateOwnershipToken", false));
  auto it = j.find("parameters");
  if (it != j.end() && !it->is_null()) {
    if (!it->is_object()) return invalid_request("parameters must be a map of text strings");
    for (const auto& [k, v] : it->items()) {
      if (!v.is_string()) return invalid_request("parameters." + k + " must be a text string");
      r.parameters[k] = v.get<std::string>();
    }
  }
  return r;
}

std::string encode(Format f, const KeysAccepted& m) {
  return dump(f, {{"certificateId", m.certificate_id},
                  {"certificatePem", m.certificate_pem},
                  {"privateKey", m.private_key},
                  {"certificateOwnershipToken", m.certificate_ownership_token}});
}

std::string encode(Format f, const CsrAccepted& m) {
  return dump(f, {{"certificateOwnershipToken", m.certificate_ownership_token},
                  {"certificateId", m.certificate_id},
                  {"certificatePem", m.certificate_pem}});
}

std::string encode(Format f, const RotationAccepted& m) {
  return dump(f, {{"certificateId", m.certificate_id},
                  {"certificatePem", m.certificate_pem},
                  {"previousCertificateId", m.previous_certificate_id},
                  {"previousCertificateDeactivatesAt", m.previous_certificate_deactivates_at}});
}

std::string encode(Format f, const RegisterAccepted& m) {
  return dump(f, {{"deviceConfiguration", m.device_configuration}, {"thingName", m.thing_name}});
}

std::string encode(Format f, const Rejection& m) {
  return dump(f, {{"statusCode", m.status_code},
                  {"errorCode", m.error_code},
                  {"errorMessage", m.error_message}});
}

}  // namespace fk::provisioning
