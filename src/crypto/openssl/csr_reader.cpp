#include "crypto/openssl/csr_reader.h"

#include <openssl/asn1t.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include <cstring>

// OpenSSL's ASN.1 template macros are C; they cast the old way.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wold-style-cast"
#pragma GCC diagnostic ignored "-Wcast-align"
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

extern "C" {
// clang-format off

// SubjectPublicKeyInfo with the key left as its BIT STRING (RFC 5280 4.1).
typedef struct fk_spki_st {
  X509_ALGOR* algorithm;
  ASN1_BIT_STRING* public_key;
} FK_SPKI;

ASN1_SEQUENCE(FK_SPKI) = {
  ASN1_SIMPLE(FK_SPKI, algorithm, X509_ALGOR),
  ASN1_SIMPLE(FK_SPKI, public_key, ASN1_BIT_STRING),
} ASN1_SEQUENCE_END(FK_SPKI)

// CertificationRequestInfo (RFC 2986 4.1), keeping its original DER for the signature check.
typedef struct fk_req_info_st {
  ASN1_ENCODING enc;
  ASN1_INTEGER* version;
  X509_NAME* subject;
  FK_SPKI* spki;
  STACK_OF(X509_ATTRIBUTE)* attributes;
} FK_REQ_INFO;

ASN1_SEQUENCE_enc(FK_REQ_INFO, enc, NULL) = {
  ASN1_SIMPLE(FK_REQ_INFO, version, ASN1_INTEGER),
  ASN1_SIMPLE(FK_REQ_INFO, subject, X509_NAME),
  ASN1_SIMPLE(FK_REQ_INFO, spki, FK_SPKI),
  ASN1_IMP_SET_OF_OPT(FK_REQ_INFO, attributes, X509_ATTRIBUTE, 0),
} ASN1_SEQUENCE_END_enc(FK_REQ_INFO, FK_REQ_INFO)

// CertificationRequest (RFC 2986 4.2).
typedef struct fk_req_st {
  FK_REQ_INFO* info;
  X509_ALGOR* signature_algorithm;
  ASN1_BIT_STRING* signature;
} FK_REQ;

ASN1_SEQUENCE(FK_REQ) = {
  ASN1_SIMPLE(FK_REQ, info, FK_REQ_INFO),
  ASN1_SIMPLE(FK_REQ, signature_algorithm, X509_ALGOR),
  ASN1_SIMPLE(FK_REQ, signature, ASN1_BIT_STRING),
} ASN1_SEQUENCE_END(FK_REQ)

// RSAPublicKey (RFC 8017 A.1.1).
typedef struct fk_rsa_pub_st {
  ASN1_INTEGER* n;
  ASN1_INTEGER* e;
} FK_RSA_PUB;

ASN1_SEQUENCE(FK_RSA_PUB) = {
  ASN1_SIMPLE(FK_RSA_PUB, n, ASN1_INTEGER),
  ASN1_SIMPLE(FK_RSA_PUB, e, ASN1_INTEGER),
} ASN1_SEQUENCE_END(FK_RSA_PUB)

DECLARE_ASN1_FUNCTIONS(FK_REQ)
IMPLEMENT_ASN1_FUNCTIONS(FK_REQ)
DECLARE_ASN1_FUNCTIONS(FK_RSA_PUB)
IMPLEMENT_ASN1_FUNCTIONS(FK_RSA_PUB)

// clang-format on
}  // extern "C"

#pragma GCC diagnostic pop

namespace fk::crypto::ossl {

namespace {

Status validation(std::string m) {
  return {ErrorCode::kCertificateValidation, std::move(m)};
}

struct FkReqFree {
  void operator()(FK_REQ* p) const { FK_REQ_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};

Result<Pkey> from_params(const char* type, OSSL_PARAM* params) {
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(
      EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* key = nullptr;
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params) != 1) {
    ERR_clear_error();
    return validation("the CSR's public key is malformed");
  }
  return Pkey(key);
}

// Imports the raw SubjectPublicKeyInfo and checks it against what AWS accepts.
Result<Pkey> import_key(const FK_SPKI* spki, PublicKeyInfo& info) {
  const ASN1_OBJECT* alg = nullptr;
  int ptype = 0;
  const void* pval = nullptr;
  X509_ALGOR_get0(&alg, &ptype, &pval, spki->algorithm);
  const int nid = OBJ_obj2nid(alg);
  const unsigned char* bits = ASN1_STRING_get0_data(spki->public_key);
  const int nbits = ASN1_STRING_length(spki->public_key);
  if (nid == NID_X9_62_id_ecPublicKey) {
    if (ptype != V_ASN1_OBJECT)
      return validation(
          "EC key with explicit or unknown curve parameters is not supported (use P-256, P-384 "
          "or P-521)");
    const int curve = OBJ_obj2nid(static_cast<const ASN1_OBJECT*>(pval));
    const char* group = nullptr;
    if (curve == NID_X9_62_prime256v1) {
      info = {KeyType::kEcP256, 256, "EC P-256"};
      group = "P-256";
    } else if (curve == NID_secp384r1) {
      info = {KeyType::kEcP384, 384, "EC P-384"};
      group = "P-384";
    } else if (curve == NID_secp521r1) {
      info = {KeyType::kEcP521, 521, "EC P-521"};
      group = "P-521";
    } else {
      const char* name = curve == NID_undef ? "unknown" : OBJ_nid2sn(curve);
      return validation(std::string("EC curve ") + name +
                        " is not supported (use P-256, P-384 or P-521)");
    }
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, const_cast<char*>(group), 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, const_cast<unsigned char*>(bits),
                                          static_cast<size_t>(nbits)),
        OSSL_PARAM_construct_end()};
    return from_params("EC", params);
  }
  if (nid == NID_rsaEncryption) {
    const unsigned char* p = bits;
    std::unique_ptr<FK_RSA_PUB, decltype(&FK_RSA_PUB_free)> rsa(d2i_FK_RSA_PUB(nullptr, &p, nbits),
                                                                &FK_RSA_PUB_free);
    if (!rsa) {
      ERR_clear_error();
      return validation("the CSR's RSA public key is malformed");
    }
    std::unique_ptr<BIGNUM, decltype(&BN_free)> n(ASN1_INTEGER_to_BN(rsa->n, nullptr), &BN_free);
    std::unique_ptr<BIGNUM, decltype(&BN_free)> e(ASN1_INTEGER_to_BN(rsa->e, nullptr), &BN_free);
    if (!n || !e) return validation("the CSR's RSA public key is malformed");
    const int modulus_bits = BN_num_bits(n.get());
    info = {KeyType::kRsa, modulus_bits, "RSA " + std::to_string(modulus_bits)};
    if (modulus_bits < 2048)
      return validation("RSA key of " + std::to_string(modulus_bits) +
                        " bits is too weak: at least 2048 bits are required");
    if (modulus_bits > 8192)
      return validation("RSA key of " + std::to_string(modulus_bits) +
                        " bits is larger than 8192 bits");
    std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> bld(OSSL_PARAM_BLD_new(),
                                                                        &OSSL_PARAM_BLD_free);
    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get());
    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get());
    std::unique_ptr<OSSL_PARAM, decltype(&OSSL_PARAM_free)> params(
        OSSL_PARAM_BLD_to_param(bld.get()), &OSSL_PARAM_free);
    return from_params("RSA", params.get());
  }
  const char* name = nid == NID_undef ? "unknown" : OBJ_nid2sn(nid);
  return validation(std::string("key type ") + name +
                    " is not supported (use RSA >= 2048 or ECDSA P-256, P-384, P-521)");
}

}  // namespace

struct ParsedCsr::Raw {
  std::unique_ptr<FK_REQ, FkReqFree> req;
  Pkey key;
};

ParsedCsr::ParsedCsr() : raw_(new Raw) {}
ParsedCsr::~ParsedCsr() = default;
ParsedCsr::ParsedCsr(ParsedCsr&&) noexcept = default;
ParsedCsr& ParsedCsr::operator=(ParsedCsr&&) noexcept = default;

X509_NAME* ParsedCsr::subject() const {
  return raw_->req->info->subject;
}

Status ParsedCsr::copy_public_key_to(X509* cert) const {
  const FK_SPKI* spki = raw_->req->info->spki;
  const ASN1_OBJECT* alg = nullptr;
  int ptype = 0;
  const void* pval = nullptr;
  X509_ALGOR_get0(&alg, &ptype, &pval, spki->algorithm);
  void* param = nullptr;
  if (ptype == V_ASN1_OBJECT) {
    param = OBJ_dup(static_cast<const ASN1_OBJECT*>(pval));
  } else {
    ptype = V_ASN1_NULL;
  }
  const int len = ASN1_STRING_length(spki->public_key);
  auto* copy = static_cast<unsigned char*>(OPENSSL_malloc(static_cast<size_t>(len)));
  std::memcpy(copy, ASN1_STRING_get0_data(spki->public_key), static_cast<size_t>(len));
  if (X509_PUBKEY_set0_param(X509_get_X509_PUBKEY(cert), OBJ_dup(alg), ptype, param, copy, len) !=
      1) {
    OPENSSL_free(copy);
    return internal_error("cannot set the certificate's public key: " + last_error());
  }
  return Status::ok();
}

Result<ParsedCsr> read_csr(std::string_view pem) {
  if (pem.size() > kMaxCsrPemChars)
    return validation("CSR is " + std::to_string(pem.size()) + " characters; at most " +
                      std::to_string(kMaxCsrPemChars) + " are allowed");
  if (pem.find("-----BEGIN CERTIFICATE REQUEST-----") == std::string_view::npos &&
      pem.find("-----BEGIN NEW CERTIFICATE REQUEST-----") == std::string_view::npos)
    return validation("not a PEM CSR (no '-----BEGIN CERTIFICATE REQUEST-----' line)");
  ERR_clear_error();
  Bio bio = mem_bio(pem);
  unsigned char* der = nullptr;
  long der_len = 0;
  if (PEM_bytes_read_bio(&der, &der_len, nullptr, PEM_STRING_X509_REQ, bio.get(), nullptr,
                         nullptr) != 1)
    return validation("CSR cannot be parsed: " + last_error());
  const unsigned char* p = der;
  ParsedCsr out;
  out.raw_->req.reset(d2i_FK_REQ(nullptr, &p, der_len));
  const bool trailing = out.raw_->req && p != der + der_len;
  OPENSSL_free(der);
  if (!out.raw_->req) return validation("CSR cannot be parsed: " + last_error());
  if (trailing) return validation("CSR has trailing bytes after its DER structure");
  const FK_REQ* req = out.raw_->req.get();

  FK_ASSIGN_OR_RETURN(out.raw_->key, import_key(req->info->spki, out.info_.key));

  // Signature: algorithm matching the key, over the original DER of the request info.
  int md_nid = NID_undef, pkey_nid = NID_undef;
  const ASN1_OBJECT* sig_alg = nullptr;
  X509_ALGOR_get0(&sig_alg, nullptr, nullptr, req->signature_algorithm);
  const int sig_nid = OBJ_obj2nid(sig_alg);
  if (!OBJ_find_sigid_algs(sig_nid, &md_nid, &pkey_nid) || md_nid == NID_undef)
    return validation(std::string("CSR signature algorithm ") +
                      (sig_nid == NID_undef ? "unknown" : OBJ_nid2sn(sig_nid)) +
                      " is not supported");
  const int key_nid =
      out.info_.key.type == KeyType::kRsa ? NID_rsaEncryption : NID_X9_62_id_ecPublicKey;
  if (pkey_nid != key_nid) return validation("CSR signature algorithm does not match its key type");
  const EVP_MD* md = EVP_get_digestbynid(md_nid);
  // SHA-1 is accepted as AWS does (the certificate itself is always signed with SHA-256);
  // MD5 and MD4 are not.
  if (md == nullptr || md_nid == NID_md5 || md_nid == NID_md4)
    return validation(std::string("CSR signature digest ") + OBJ_nid2sn(md_nid) +
                      " is not accepted (use SHA-256 or stronger)");
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  const FK_REQ_INFO* info = req->info;
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, out.raw_->key.get()) != 1 ||
      EVP_DigestVerify(ctx.get(), ASN1_STRING_get0_data(req->signature),
                       static_cast<size_t>(ASN1_STRING_length(req->signature)),
                       reinterpret_cast<const unsigned char*>(info->enc.enc), info->enc.len) != 1) {
    ERR_clear_error();
    return validation("CSR signature does not verify with the CSR's public key");
  }
  out.info_.subject = name_to_string(info->subject);
  out.info_.subject_fields = name_fields(info->subject);
  return out;
}

Status set_public_key(X509* cert, EVP_PKEY* key) {
  if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC) {
    if (X509_set_pubkey(cert, key) != 1)
      return internal_error("cannot set public key: " + last_error());
    return Status::ok();
  }
  char group[64] = {0};
  size_t group_len = 0;
  unsigned char point[160];
  size_t point_len = 0;
  if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                     &group_len) != 1 ||
      EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point, sizeof point,
                                      &point_len) != 1)
    return internal_error("cannot read the EC public key: " + last_error());
  int curve = OBJ_txt2nid(group);
  if (curve == NID_undef) curve = EC_curve_nist2nid(group);
  if (curve == NID_undef) return internal_error(std::string("unknown curve ") + group);
  auto* copy = static_cast<unsigned char*>(OPENSSL_malloc(point_len));
  std::memcpy(copy, point, point_len);
  if (X509_PUBKEY_set0_param(X509_get_X509_PUBKEY(cert), OBJ_nid2obj(NID_X9_62_id_ecPublicKey),
                             V_ASN1_OBJECT, OBJ_nid2obj(curve), copy,
                             static_cast<int>(point_len)) != 1) {
    OPENSSL_free(copy);
    return internal_error("cannot set the certificate's public key: " + last_error());
  }
  return Status::ok();
}

}  // namespace fk::crypto::ossl
