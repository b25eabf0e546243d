#include "core/messages.h"

#include <nlohmann/json.hpp>

namespace fleetkey::core {
namespace {

using nlohmann::json;

std::string serialize(PayloadFormat f, const json& j) {
  if (f == PayloadFormat::kJson) return j.dump();
  std::string out;
  json::to_cbor(j, out);
  return out;
}

// The payload as a map, or nullopt with the reason.
std::optional<json> parse_map(PayloadFormat f, std::string_view payload, std::string& why) {
  json j;
  try {
    j = f == PayloadFormat::kJson
            ? json::parse(payload, nullptr, /*allow_exceptions=*/false)
            : json::from_cbor(payload, /*strict=*/true, /*allow_exceptions=*/false,
                              json::cbor_tag_handler_t::ignore);
  } catch (const json::exception&) {  // CBOR lengths beyond what a container can hold
    j = json(json::value_t::discarded);
  }
  if (j.is_discarded()) {
    why = f == PayloadFormat::kJson ? "reply is not valid JSON" : "reply is not valid CBOR";
    return std::nullopt;
  }
  if (!j.is_object()) {
    why = "reply is not a map";
    return std::nullopt;
  }
  return j;
}

bool text(const json& j, const char* name, std::string& out, std::string& why) {
  auto it = j.find(name);
  if (it == j.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) {
    why = std::string("reply lacks the text member ") + name;
    return false;
  }
  out = it->get<std::string>();
  return true;
}

}  // namespace

std::string encode_create_keys_request(PayloadFormat f) {
  return serialize(f, json::object());
}

std::string encode_csr_request(PayloadFormat f, std::string_view csr_pem) {
  return serialize(f, json{{"certificateSigningRequest", std::string(csr_pem)}});
}

std::string encode_register_request(PayloadFormat f, std::string_view token,
                                    const std::map<std::string, std::string>& parameters) {
  return serialize(
      f, json{{"certificateOwnershipToken", std::string(token)}, {"parameters", json(parameters)}});
}

std::optional<CertificateReply> decode_certificate_reply(PayloadFormat f, std::string_view payload,
                                                         bool with_private_key, std::string& why) {
  auto j = parse_map(f, payload, why);
  if (!j) return std::nullopt;
  CertificateReply r;
  if (!text(*j, "certificateId", r.certificate_id, why) ||
      !text(*j, "certificatePem", r.certificate_pem, why) ||
      !text(*j, "certificateOwnershipToken", r.ownership_token, why))
    return std::nullopt;
  if (with_private_key && !text(*j, "privateKey", r.private_key, why)) return std::nullopt;
  return r;
}

std::optional<RegisterReply> decode_register_reply(PayloadFormat f, std::string_view payload,
                                                   std::string& why) {
  auto j = parse_map(f, payload, why);
  if (!j) return std::nullopt;
  RegisterReply r;
  if (!text(*j, "thingName", r.thing_name, why)) return std::nullopt;
  if (auto it = j->find("deviceConfiguration"); it != j->end() && it->is_object()) {
    for (const auto& [k, v] : it->items())
      r.device_configuration[k] = v.is_string() ? v.get<std::string>() : v.dump();
  }
  return r;
}

std::optional<RotationReply> decode_rotation_reply(PayloadFormat f, std::string_view payload,
                                                   std::string& why) {
  auto j = parse_map(f, payload, why);
  if (!j) return std::nullopt;
  RotationReply r;
  if (!text(*j, "certificateId", r.certificate_id, why) ||
      !text(*j, "certificatePem", r.certificate_pem, why))
    return std::nullopt;
  if (auto it = j->find("previousCertificateDeactivatesAt");
      it != j->end() && it->is_number_integer())
    r.previous_deactivates_at = it->get<std::int64_t>();
  return r;
}

std::optional<RejectedReply> decode_rejected_reply(PayloadFormat f, std::string_view payload,
                                                   std::string& why) {
  auto j = parse_map(f, payload, why);
  if (!j) return std::nullopt;
  RejectedReply r;
  if (auto it = j->find("statusCode"); it != j->end() && it->is_number_integer())
    r.status_code = it->get<int>();
  if (auto it = j->find("errorCode"); it != j->end() && it->is_string())
    r.error_code = it->get<std::string>();
  if (auto it = j->find("errorMessage"); it != j->end() && it->is_string())
    r.error_message = it->get<std::string>();
  if (r.status_code == 0 && r.error_code.empty()) {
    why = "rejected reply has neither statusCode nor errorCode";
    return std::nullopt;
  }
  return r;
}

}  // namespace fleetkey::core
