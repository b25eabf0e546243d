#include "crypto/types.h"

namespace fk::crypto {

Result<KeySpec> parse_key_spec(std::string_view text) {
  if (text == "ec-p256") return KeySpec{KeyType::kEcP256, 0};
  if (text == "ec-p384") return KeySpec{KeyType::kEcP384, 0};
  if (text == "ec-p521") return KeySpec{KeyType::kEcP521, 0};
  if (text == "rsa-2048") return KeySpec::rsa(2048);
  if (text == "rsa-3072") return KeySpec::rsa(3072);
  if (text == "rsa-4096") return KeySpec::rsa(4096);
  return invalid_request("unknown key type '" + std::string(text) +
                         "' (expected ec-p256, ec-p384, ec-p521, rsa-2048, rsa-3072 or rsa-4096)");
}

std::string to_string(const KeySpec& spec) {
  switch (spec.type) {
    case KeyType::kEcP256:
      return "ec-p256";
    case KeyType::kEcP384:
      return "ec-p384";
    case KeyType::kEcP521:
      return "ec-p521";
    case KeyType::kRsa:
      return "rsa-" + std::to_string(spec.rsa_bits);
  }
  return "?";
}

}  // namespace fk::crypto
