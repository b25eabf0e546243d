// Value types of the crypto part: PEM text and parsed facts about keys, CSRs and certificates.
//
// These types are what the rest of fleetkey sees; no OpenSSL type crosses this boundary
// (only crypto/openssl/ includes OpenSSL headers). Plain values, safe to copy across threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/status.h"

namespace fk::crypto {

enum class KeyType { kRsa, kEcP256, kEcP384, kEcP521 };

// What kind of key to generate.
struct KeySpec {
  KeyType type = KeyType::kEcP256;
  int rsa_bits = 2048;  // only for kRsa

  static KeySpec ec_p256() { return {KeyType::kEcP256, 0}; }
  static KeySpec rsa(int bits) { return {KeyType::kRsa, bits}; }
};

// "ec-p256", "ec-p384", "ec-p521", "rsa-2048", "rsa-3072", "rsa-4096".
Result<KeySpec> parse_key_spec(std::string_view text);
std::string to_string(const KeySpec& spec);

// A public key found in a CSR or certificate.
struct PublicKeyInfo {
  KeyType type = KeyType::kEcP256;
  int bits = 0;             // RSA modulus bits or curve size
  std::string description;  // "RSA 2048", "EC P-256"
};

using NameFields = std::vector<std::pair<std::string, std::string>>;  // ("CN", "locker-1"), ...

struct CsrInfo {
  std::string subject;  // RFC 2253 one-line form
  NameFields subject_fields;
  PublicKeyInfo key;
};

struct CertificateInfo {
  std::string certificate_id;  // lowercase hex SHA-256 of the DER (as AWS)
  std::string pem;
  std::string subject;
  std::string issuer;
  NameFields subject_fields;
  NameFields issuer_fields;
  // (RFC822Name|DNSName|DirectoryName|UniformResourceIdentifier|IPAddress, value)
  NameFields subject_alt_names;
  NameFields issuer_alt_names;
  std::string serial_hex;  // lowercase hex, no separators
  EpochSeconds not_before = 0;
  EpochSeconds not_after = 0;
  PublicKeyInfo key;
  bool is_ca = false;
};

struct KeyPair {
  std::string private_key_pem;  // PKCS#1 ("RSA PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY"), as AWS
  std::string public_key_pem;   // SubjectPublicKeyInfo ("PUBLIC KEY")
};

// AWS's limit on a CSR's PEM text.
inline constexpr std::size_t kMaxCsrPemChars = 4096;

// notAfter of the certificates AWS issues: 2049-12-31T23:59:59Z.
inline constexpr EpochSeconds kAwsDefaultNotAfter = 2524607999;

}  // namespace fk::crypto
