// Tests only: a JSON document as the payload bytes of a format, and back (what the server side
// of a scripted transport sends and reads).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "fleetkey/provisioning.h"

namespace fleetkey::test {

inline std::string encode(PayloadFormat f, const nlohmann::json& j) {
  if (f == PayloadFormat::kJson) return j.dump();
  std::string out;
  nlohmann::json::to_cbor(j, out);
  return out;
}

inline nlohmann::json decode(PayloadFormat f, const std::string& s) {
  return f == PayloadFormat::kJson ? nlohmann::json::parse(s) : nlohmann::json::from_cbor(s);
}

}  // namespace fleetkey::test
