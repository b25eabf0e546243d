// Parsing and checking of CSRs, certificates and keys (implemented in crypto/openssl/).
//
// Every function takes untrusted text and returns a precise reason on failure; none throws or
// asserts on bad input. All functions are thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "crypto/types.h"

namespace fk::crypto {

// Parses a PEM CSR, verifies its self-signature and checks its key against what AWS accepts
// (RSA >= 2048 bits, ECDSA P-256/P-384/P-521). Errors: kCertificateValidation.
Result<CsrInfo> parse_csr(std::string_view pem);

// Parses one PEM certificate. Errors: kCertificateValidation.
Result<CertificateInfo> parse_certificate(std::string_view pem);

// Generates a key pair.
Result<KeyPair> generate_key_pair(const KeySpec& spec);

// Checks that `cert_pem` carries a signature made by the key of `issuer_pem` and names it as
// issuer. Errors: kCertificateValidation with the reason.
Status verify_signed_by(std::string_view cert_pem, std::string_view issuer_pem);

// Full path validation of `cert_pem` at time `at` against `trust_anchors` (any of which may be
// an intermediate), with `intermediates` as untrusted helpers.
Status verify_chain(std::string_view cert_pem, const std::vector<std::string>& trust_anchors,
                    const std::vector<std::string>& intermediates, EpochSeconds at);

// Whether `private_key_pem` is the key of `cert_pem`.
Status check_key_matches(std::string_view cert_pem, std::string_view private_key_pem);

// Makes a PEM CSR for the key, with subject CN=common_name, signed with SHA-256 (what a device
// or the factory tool does with its own key).
Result<std::string> make_csr(std::string_view private_key_pem, std::string_view common_name);

// Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo in a PEM certificate, CSR or private
// key: equal for a key, its CSR and the certificate made from it.
Result<std::string> public_key_sha256(std::string_view pem);

// The private key as PKCS#8 PEM encrypted with AES-256-CBC under `password`, and back (to the
// traditional PEM form). Errors: kInvalidRequest for a bad key or a wrong password.
Result<std::string> encrypt_private_key(std::string_view private_key_pem,
                                        std::string_view password);
Result<std::string> decrypt_private_key(std::string_view encrypted_pem, std::string_view password);

// A PKCS#12 bundle (DER bytes) of certificate, key and CA, encrypted with AES-256 under
// `password` (what `openssl pkcs12 -in` and most device loaders read).
Result<std::string> make_pkcs12(std::string_view cert_pem, std::string_view private_key_pem,
                                std::string_view ca_pem, std::string_view password,
                                std::string_view friendly_name);

// DER bytes as PEM with the given label ("X509 CRL", "CERTIFICATE", ...), and a PEM block's
// DER bytes back ("" when `pem` holds no PEM block).
std::string der_to_pem(std::string_view der, const char* label);
std::string pem_to_der(std::string_view pem);

// Lowercase hex SHA-256.
std::string sha256_hex(std::string_view data);

// Cryptographically secure random bytes as lowercase hex (2 * n characters).
std::string random_hex(std::size_t n_bytes);

// A random (version 4) UUID, e.g. "1b4e28ba-2fa1-41d2-883f-0016d3cca427".
std::string random_uuid();

}  // namespace fk::crypto
