#include "crypto/openssl/ossl.h"

#include <arpa/inet.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <ctime>

#include "base/strings.h"
#include "crypto/x509.h"

namespace fk::crypto::ossl {

std::string last_error() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  // Keep the reason only: "error:0480006C:PEM routines::no start line" -> "no start line".
  std::string s(buf);
  auto pos = s.rfind(':');
  return pos == std::string::npos ? s : s.substr(pos + 1);
}

Bio mem_bio(std::string_view data) {
  return Bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

std::string bio_to_string(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<std::size_t>(n));
}

Result<Cert> read_cert(std::string_view pem) {
  if (pem.find("-----BEGIN CERTIFICATE-----") == std::string_view::npos)
    return Status(ErrorCode::kCertificateValidation,
                  "not a PEM certificate (no '-----BEGIN CERTIFICATE-----' line)");
  Bio bio = mem_bio(pem);
  Cert cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert)
    return Status(ErrorCode::kCertificateValidation,
                  "certificate PEM cannot be parsed: " + last_error());
  return cert;
}

Result<Pkey> read_private_key(std::string_view pem) {
  Bio bio = mem_bio(pem);
  // An empty password rather than none: OpenSSL would otherwise prompt on the terminal for an
  // encrypted key.
  char no_password[1] = {'\0'};
  Pkey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, no_password));
  if (!key) return invalid_request("private key PEM cannot be parsed: " + last_error());
  return key;
}

std::string cert_to_pem(X509* cert) {
  Bio bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  return bio_to_string(bio.get());
}

Result<std::string> private_key_to_pem(EVP_PKEY* key) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PrivateKey_traditional(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) !=
      1)
    return internal_error("cannot encode private key: " + last_error());
  return bio_to_string(bio.get());
}

Result<std::string> public_key_to_pem(EVP_PKEY* key) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PUBKEY(bio.get(), key) != 1)
    return internal_error("cannot encode public key: " + last_error());
  return bio_to_string(bio.get());
}

Result<Pkey> generate_key(const KeySpec& spec) {
  EVP_PKEY* key = nullptr;
  switch (spec.type) {
    case KeyType::kRsa:
      if (spec.rsa_bits < 2048 || spec.rsa_bits > 8192)
        return invalid_request("RSA key size must be 2048..8192 bits, not " +
                               std::to_string(spec.rsa_bits));
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(spec.rsa_bits));
      break;
    case KeyType::kEcP256:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
      break;
    case KeyType::kEcP384:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384");
      break;
    case KeyType::kEcP521:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-521");
      break;
  }
  if (key == nullptr) return internal_error("key generation failed: " + last_error());
  return Pkey(key);
}

Result<PublicKeyInfo> describe_key(EVP_PKEY* key) {
  PublicKeyInfo info;
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA: {
      info.type = KeyType::kRsa;
      info.bits = EVP_PKEY_get_bits(key);
      info.description = "RSA " + std::to_string(info.bits);
      if (info.bits < 2048)
        return Status(ErrorCode::kCertificateValidation,
                      "RSA key of " + std::to_string(info.bits) +
                          " bits is too weak: at least 2048 bits are required");
      if (info.bits > 8192)
        return Status(ErrorCode::kCertificateValidation,
                      "RSA key of " + std::to_string(info.bits) + " bits is larger than 8192 bits");
      return info;
    }
    case EVP_PKEY_EC: {
      char group[80] = {0};
      size_t len = 0;
      if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                         &len) != 1)
        return Status(ErrorCode::kCertificateValidation,
                      "EC key with explicit or unknown curve parameters is not supported "
                      "(use P-256, P-384 or P-521)");
      std::string g(group, len);
      if (g == "prime256v1" || g == "P-256") {
        info = {KeyType::kEcP256, 256, "EC P-256"};
      } else if (g == "secp384r1" || g == "P-384") {
        info = {KeyType::kEcP384, 384, "EC P-384"};
      } else if (g == "secp521r1" || g == "P-521") {
        info = {KeyType::kEcP521, 521, "EC P-521"};
      } else {
        return Status(ErrorCode::kCertificateValidation,
                      "EC curve " + g + " is not supported (use P-256, P-384 or P-521)");
      }
      return info;
    }
    default: {
      const char* name = OBJ_nid2sn(EVP_PKEY_get_base_id(key));
      return Status(ErrorCode::kCertificateValidation,
                    std::string("key type ") + (name ? name : "unknown") +
                        " is not supported (use RSA >= 2048 or ECDSA P-256, P-384, P-521)");
    }
  }
}

std::string serial_to_hex(const ASN1_INTEGER* serial) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(serial, nullptr);
  if (bn == nullptr) return {};
  char* hex = BN_bn2hex(bn);
  std::string out = hex != nullptr ? hex : "";
  OPENSSL_free(hex);
  BN_free(bn);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string name_to_string(const X509_NAME* name) {
  Bio bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  return bio_to_string(bio.get());
}

NameFields name_fields(const X509_NAME* name) {
  NameFields out;
  for (int i = 0; i < X509_NAME_entry_count(name); ++i) {
    const X509_NAME_ENTRY* e = X509_NAME_get_entry(name, i);
    int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(e));
    const char* sn = nid == NID_undef ? "UNKNOWN" : OBJ_nid2sn(nid);
    const ASN1_STRING* v = X509_NAME_ENTRY_get_data(e);
    unsigned char* utf8 = nullptr;
    int n = ASN1_STRING_to_UTF8(&utf8, v);
    if (n >= 0) {
      out.emplace_back(sn, std::string(reinterpret_cast<char*>(utf8), static_cast<std::size_t>(n)));
      OPENSSL_free(utf8);
    }
  }
  return out;
}

namespace {

EpochSeconds to_epoch(const ASN1_TIME* t) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<EpochSeconds>(timegm(&tm));
}

}  // namespace

// The names of a GeneralNames extension, typed as AWS's policy variables name them.
NameFields alt_names(X509* cert, int nid) {
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, nid, nullptr, nullptr));
  if (names == nullptr) return {};
  NameFields out = general_names(names);
  GENERAL_NAMES_free(names);
  return out;
}

NameFields general_names(const GENERAL_NAMES* names) {
  NameFields out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(names, i);
    auto text = [](const ASN1_STRING* a) {
      return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(a)),
                         static_cast<std::size_t>(ASN1_STRING_length(a)));
    };
    switch (g->type) {
      case GEN_EMAIL:
        out.emplace_back("RFC822Name", text(g->d.rfc822Name));
        break;
      case GEN_DNS:
        out.emplace_back("DNSName", text(g->d.dNSName));
        break;
      case GEN_URI:
        out.emplace_back("UniformResourceIdentifier", text(g->d.uniformResourceIdentifier));
        break;
      case GEN_DIRNAME:
        out.emplace_back("DirectoryName", name_to_string(g->d.directoryName));
        break;
      case GEN_IPADD: {
        const int n = ASN1_STRING_length(g->d.iPAddress);
        char buf[INET6_ADDRSTRLEN] = {};
        if ((n == 4 || n == 16) &&
            inet_ntop(n == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(g->d.iPAddress), buf,
                      sizeof buf) != nullptr)
          out.emplace_back("IPAddress", buf);
        break;
      }
      default:
        break;
    }
  }
  return out;
}

CertificateInfo describe_cert(X509* cert, const PublicKeyInfo* known_key) {
  CertificateInfo info;
  unsigned char* der = nullptr;
  int len = i2d_X509(cert, &der);
  if (len > 0) {
    info.certificate_id =
        sha256_hex(std::string_view(reinterpret_cast<char*>(der), static_cast<std::size_t>(len)));
    OPENSSL_free(der);
  }
  info.pem = cert_to_pem(cert);
  info.subject = name_to_string(X509_get_subject_name(cert));
  info.issuer = name_to_string(X509_get_issuer_name(cert));
  info.subject_fields = name_fields(X509_get_subject_name(cert));
  info.issuer_fields = name_fields(X509_get_issuer_name(cert));
  info.subject_alt_names = alt_names(cert, NID_subject_alt_name);
  info.issuer_alt_names = alt_names(cert, NID_issuer_alt_name);
  info.serial_hex = serial_to_hex(X509_get0_serialNumber(cert));
  info.not_before = to_epoch(X509_get0_notBefore(cert));
  info.not_after = to_epoch(X509_get0_notAfter(cert));
  if (known_key != nullptr) {
    info.key = *known_key;
  } else if (EVP_PKEY* key = X509_get0_pubkey(cert)) {
    auto k = describe_key(key);
    if (k.is_ok()) {
      info.key = *k;
    } else {
      info.key.description = "unsupported";
    }
  }
  info.is_ca = X509_check_ca(cert) > 0;
  return info;
}

}  // namespace fk::crypto::ossl
