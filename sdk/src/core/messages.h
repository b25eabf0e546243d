// The device side of the fleet provisioning MQTT API (AWS IoT Core's topics and payloads):
// requests encoded and replies decoded, in JSON or CBOR. Pure; never throws.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "fleetkey/provisioning.h"

namespace fleetkey::core {

std::string encode_create_keys_request(PayloadFormat f);
std::string encode_csr_request(PayloadFormat f, std::string_view csr_pem);
std::string encode_register_request(PayloadFormat f, std::string_view token,
                                    const std::map<std::string, std::string>& parameters);

struct CertificateReply {
  std::string certificate_id;
  std::string certificate_pem;
  std::string private_key;  // CreateKeysAndCertificate only
  std::string ownership_token;
};
struct RegisterReply {
  std::string thing_name;
  std::map<std::string, std::string> device_configuration;
};
struct RejectedReply {
  int status_code = 0;
  std::string error_code;
  std::string error_message;
};

// nullopt + `why` when the payload is not a map with the members AWS documents.
std::optional<CertificateReply> decode_certificate_reply(PayloadFormat f, std::string_view payload,
                                                         bool with_private_key, std::string& why);
std::optional<RegisterReply> decode_register_reply(PayloadFormat f, std::string_view payload,
                                                   std::string& why);
// fleetkey's rotation reply ($fleetkey/certificates/rotate/<format>/accepted).
struct RotationReply {
  std::string certificate_id;
  std::string certificate_pem;
  std::int64_t previous_deactivates_at = 0;
};
std::optional<RotationReply> decode_rotation_reply(PayloadFormat f, std::string_view payload,
                                                   std::string& why);
std::optional<RejectedReply> decode_rejected_reply(PayloadFormat f, std::string_view payload,
                                                   std::string& why);

}  // namespace fleetkey::core
