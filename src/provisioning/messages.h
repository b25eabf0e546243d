// The fleet provisioning MQTT API's topics and payloads (spec section 1), in JSON and CBOR.
//
// Requests are decoded strictly (a top-level map; the documented members with the documented
// types; CBOR text strings, no byte strings, no tags), extra members the SDKs send (e.g.
// `templateName` in RegisterThing) are accepted. Replies are encoded in the request's format
// with exactly AWS's members. Pure; no I/O; never throws.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"

namespace fk::provisioning {

enum class Format { kJson, kCbor };
enum class Operation { kCreateKeysAndCertificate, kCreateCertificateFromCsr, kRegisterThing };

struct RequestTopic {
  Operation operation = Operation::kCreateKeysAndCertificate;
  Format format = Format::kJson;
  std::string template_name;  // RegisterThing only
  std::string topic;          // as published
};

// "$aws/certificates/create/json", ".../create-from-csr/cbor",
// "$aws/provisioning-templates/<name>/provision/json": the request; anything else (including
// the /accepted and /rejected reply topics) is nullopt.
std::optional<RequestTopic> parse_request_topic(std::string_view topic);
// True for every topic under the fleet provisioning API (requests and replies).
bool is_provisioning_topic(std::string_view topic);
std::string reply_topic(const RequestTopic& request, bool accepted);

struct CsrRequest {
  std::string certificate_signing_request;
};

struct RegisterThingRequest {
  std::string certificate_ownership_token;
  std::map<std::string, std::string> parameters;
};

// AWS's /rejected payload.
struct Rejection {
  int status_code = 400;
  std::string error_code;
  std::string error_message;
};

// Decoding failures are InvalidRequest with what is wrong ("payload: not valid CBOR: ...",
// "certificateSigningRequest must be a string").
Status decode_create_keys(Format f, std::string_view payload);  // 0 bytes, {} or an empty map
Result<CsrRequest> decode_csr_request(Format f, std::string_view payload);
Result<RegisterThingRequest> decode_register_thing(Format f, std::string_view payload);

struct KeysAccepted {
  std::string certificate_id;
  std::string certificate_pem;
  std::string private_key;
  std::string certificate_ownership_token;
};
struct CsrAccepted {
  std::string certificate_id;
  std::string certificate_pem;
  std::string certificate_ownership_token;
};
struct RegisterAccepted {
  std::map<std::string, std::string> device_configuration;
  std::string thing_name;
};

// fleetkey's certificate rotation (provisioning/rotation.h), not AWS's: the request topic
// "$fleetkey/certificates/rotate/<json|cbor>" (its payload is a CsrRequest), the replies on
// <topic>/accepted and <topic>/rejected (a Rejection).
inline constexpr std::string_view kRotationTopicPrefix = "$fleetkey/certificates/rotate/";
std::optional<Format> parse_rotation_topic(std::string_view topic);
std::string rotation_topic(Format f);
struct RotationAccepted {
  std::string certificate_id;
  std::string certificate_pem;
  std::string previous_certificate_id;
  std::int64_t previous_certificate_deactivates_at = 0;  // epoch seconds, at the latest
};

std::string encode(Format f, const KeysAccepted& m);
std::string encode(Format f, const RotationAccepted& m);
std::string encode(Format f, const CsrAccepted& m);
std::string encode(Format f, const RegisterAccepted& m);
std::string encode(Format f, const Rejection& m);

}  // namespace fk::provisioning
