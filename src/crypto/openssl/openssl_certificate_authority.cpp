#include "crypto/openssl/openssl_certificate_authority.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <functional>

#include "base/files.h"
#include "base/log.h"
#include "crypto/openssl/csr_reader.h"
#include "crypto/openssl/ossl.h"
#include "crypto/x509.h"

namespace fk::crypto {

using namespace ossl;  // NOLINT(google-build-using-namespace): backend-internal helpers

namespace {

constexpr EpochSeconds kDay = 86400;
// CA lifetimes outlast AWS's device notAfter (2049-12-31) so a device certificate never
// outlives its chain.
constexpr EpochSeconds kRootNotAfter = 2871763199;     // 2060-12-31T23:59:59Z
constexpr EpochSeconds kIssuingNotAfter = 2714083199;  // 2055-12-31T23:59:59Z
constexpr EpochSeconds kServerLifetime = 825 * kDay;

struct Extension {
  int nid;
  std::string value;
};

struct CertTemplate {
  X509_NAME* subject = nullptr;  // borrowed
  std::function<Status(X509*)> set_public_key;
  X509* issuer = nullptr;  // null: self-signed
  EVP_PKEY* signing_key = nullptr;
  EpochSeconds not_before = 0;
  EpochSeconds not_after = 0;
  std::vector<Extension> extensions;
};

Result<Cert> build_certificate(const CertTemplate& t) {
  ERR_clear_error();
  Cert cert(X509_new());
  X509_set_version(cert.get(), 2);
  // 20 random bytes, positive and with a non-zero first byte (AWS uses 20-byte serials).
  unsigned char serial[20];
  if (RAND_bytes(serial, sizeof serial) != 1) return internal_error("no randomness for a serial");
  serial[0] = static_cast<unsigned char>((serial[0] & 0x7f) | 0x40);
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_set_subject_name(cert.get(), t.subject);
  X509_set_issuer_name(cert.get(), t.issuer ? X509_get_subject_name(t.issuer) : t.subject);
  FK_RETURN_IF_ERROR(t.set_public_key(cert.get()));
  if (!ASN1_TIME_set(X509_getm_notBefore(cert.get()), static_cast<time_t>(t.not_before)) ||
      !ASN1_TIME_set(X509_getm_notAfter(cert.get()), static_cast<time_t>(t.not_after)))
    return internal_error("cannot set validity: " + last_error());
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, t.issuer ? t.issuer : cert.get(), cert.get(), nullptr, nullptr, 0);
  for (const Extension& e : t.extensions) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, e.nid, e.value.c_str());
    if (ext == nullptr)
      return internal_error("cannot build extension " + std::string(OBJ_nid2sn(e.nid)) + ": " +
                            last_error());
    X509_add_ext(cert.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (X509_sign(cert.get(), t.signing_key, EVP_sha256()) <= 0)
    return internal_error("cannot sign certificate: " + last_error());
  return cert;
}

// The public-key step of a CertTemplate for a key we hold.
std::function<Status(X509*)> key_of(EVP_PKEY* key) {
  return [key](X509* cert) { return set_public_key(cert, key); };
}

Name make_name(const std::string& organization, const std::string& common_name) {
  Name name(X509_NAME_new());
  auto add = [&](const char* field, const std::string& v) {
    X509_NAME_add_entry_by_txt(name.get(), field, MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(v.data()),
                               static_cast<int>(v.size()), -1, 0);
  };
  if (!organization.empty()) add("O", organization);
  add("CN", common_name);
  return name;
}

// "IP:127.0.0.1" or "DNS:localhost", as X509V3_EXT_conf_nid reads a subjectAltName list.
std::string san_entry(const std::string& name) {
  unsigned char buf[16];
  bool is_ip =
      inet_pton(AF_INET, name.c_str(), buf) == 1 || inet_pton(AF_INET6, name.c_str(), buf) == 1;
  return (is_ip ? "IP:" : "DNS:") + name;
}

std::string san_list(const std::vector<std::string>& extra) {
  std::vector<std::string> names = {"localhost", "127.0.0.1", "::1"};
  for (const auto& n : extra) {
    if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  }
  std::string out;
  for (const auto& n : names) {
    if (!out.empty()) out += ',';
    out += san_entry(n);
  }
  return out;
}

Status write_key(const std::string& path, EVP_PKEY* key) {
  FK_ASSIGN_OR_RETURN(std::string pem, private_key_to_pem(key));
  return write_file_atomic(path, pem, 0600);
}

std::vector<std::string> cert_sans(X509* cert) {
  std::vector<std::string> out;
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
    if (gn->type == GEN_DNS) {
      out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(gn->d.dNSName)));
    } else if (gn->type == GEN_IPADD) {
      char buf[INET6_ADDRSTRLEN] = {0};
      int len = ASN1_STRING_length(gn->d.iPAddress);
      inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(gn->d.iPAddress), buf,
                sizeof buf);
      out.emplace_back(buf);
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

}  // namespace

struct OpensslCertificateAuthority::Keys {
  Cert root_cert;
  Cert issuing_cert;
  Pkey issuing_key;
};

CaPaths CaPaths::in(const std::string& dir) {
  return {dir + "/root-ca.pem",    dir + "/root-ca.key", dir + "/issuing-ca.pem",
          dir + "/issuing-ca.key", dir + "/server.pem",  dir + "/server.key"};
}

OpensslCertificateAuthority::OpensslCertificateAuthority(CaPaths paths, CaConfig config,
                                                         const Clock& clock)
    : paths_(std::move(paths)), config_(std::move(config)), clock_(clock), keys_(new Keys) {}

OpensslCertificateAuthority::~OpensslCertificateAuthority() = default;

Result<std::unique_ptr<OpensslCertificateAuthority>> OpensslCertificateAuthority::load_or_create(
    const std::string& dir, const CaConfig& config, const Clock& clock) {
  FK_RETURN_IF_ERROR(make_dirs(dir, 0700));
  std::unique_ptr<OpensslCertificateAuthority> ca(
      new OpensslCertificateAuthority(CaPaths::in(dir), config, clock));
  const CaPaths& p = ca->paths_;
  Keys& k = *ca->keys_;
  const EpochSeconds now = clock.now();

  if (!file_exists(p.root_cert)) {
    if (file_exists(p.issuing_cert))
      return internal_error(p.issuing_cert + " exists without " + p.root_cert +
                            ": refusing to create a new root over an existing CA");
    FK_ASSIGN_OR_RETURN(Pkey root_key, generate_key(config.ca_key));
    Name name = make_name(config.organization, config.organization + " Root CA");
    CertTemplate t{name.get(),
                   key_of(root_key.get()),
                   nullptr,
                   root_key.get(),
                   now - 60,
                   kRootNotAfter,
                   {{NID_basic_constraints, "critical,CA:TRUE"},
                    {NID_key_usage, "critical,keyCertSign,cRLSign"},
                    {NID_subject_key_identifier, "hash"}}};
    FK_ASSIGN_OR_RETURN(Cert root, build_certificate(t));
    // Key first: a certificate on disk always has its key.
    FK_RETURN_IF_ERROR(write_key(p.root_key, root_key.get()));
    FK_RETURN_IF_ERROR(write_file_atomic(p.root_cert, cert_to_pem(root.get()), 0644));
    log::info("ca.root_created", {{"path", p.root_cert}, {"key", to_string(config.ca_key)}});
  }
  FK_ASSIGN_OR_RETURN(std::string root_pem, read_file(p.root_cert));
  FK_ASSIGN_OR_RETURN(k.root_cert, read_cert(root_pem));

  if (!file_exists(p.issuing_cert)) {
    FK_ASSIGN_OR_RETURN(std::string root_key_pem, read_file(p.root_key));
    FK_ASSIGN_OR_RETURN(Pkey root_key, read_private_key(root_key_pem));
    FK_ASSIGN_OR_RETURN(Pkey issuing_key, generate_key(config.ca_key));
    Name name = make_name(config.organization, config.organization + " Issuing CA 1");
    CertTemplate t{name.get(),
                   key_of(issuing_key.get()),
                   k.root_cert.get(),
                   root_key.get(),
                   now - 60,
                   kIssuingNotAfter,
                   {{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
                    {NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature"},
                    {NID_subject_key_identifier, "hash"},
                    {NID_authority_key_identifier, "keyid:always"}}};
    FK_ASSIGN_OR_RETURN(Cert issuing, build_certificate(t));
    FK_RETURN_IF_ERROR(write_key(p.issuing_key, issuing_key.get()));
    FK_RETURN_IF_ERROR(write_file_atomic(p.issuing_cert, cert_to_pem(issuing.get()), 0644));
    log::info("ca.issuing_created", {{"path", p.issuing_cert}});
  }
  FK_ASSIGN_OR_RETURN(std::string issuing_pem, read_file(p.issuing_cert));
  FK_ASSIGN_OR_RETURN(k.issuing_cert, read_cert(issuing_pem));
  FK_ASSIGN_OR_RETURN(std::string issuing_key_pem, read_file(p.issuing_key));
  FK_ASSIGN_OR_RETURN(k.issuing_key, read_private_key(issuing_key_pem));
  if (X509_check_private_key(k.issuing_cert.get(), k.issuing_key.get()) != 1)
    return internal_error(p.issuing_key + " is not the key of " + p.issuing_cert);
  FK_RETURN_IF_ERROR(verify_signed_by(issuing_pem, root_pem));

  // Server certificate: (re)issued when missing, near expiry, or when the names changed.
  bool reissue = !file_exists(p.server_cert) || !file_exists(p.server_key);
  std::string wanted = san_list(config.server_names);
  if (!reissue) {
    FK_ASSIGN_OR_RETURN(std::string server_pem, read_file(p.server_cert));
    auto server = read_cert(server_pem);
    if (!server.is_ok()) {
      reissue = true;
    } else {
      CertificateInfo si = describe_cert(server->get());
      std::vector<std::string> have = cert_sans(server->get());
      std::string have_list;
      for (const auto& s : have) {
        if (!have_list.empty()) have_list += ',';
        have_list += san_entry(s);
      }
      reissue = have_list != wanted || si.not_after < now + 30 * kDay ||
                verify_signed_by(server_pem, issuing_pem).code() != ErrorCode::kOk;
    }
  }
  if (reissue) {
    FK_ASSIGN_OR_RETURN(Pkey server_key, generate_key(config.ca_key));
    Name name = make_name(config.organization, "fleetkeyd");
    CertTemplate t{name.get(),
                   key_of(server_key.get()),
                   k.issuing_cert.get(),
                   k.issuing_key.get(),
                   now - 60,
                   now + kServerLifetime,
                   {{NID_basic_constraints, "critical,CA:FALSE"},
                    {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
                    {NID_ext_key_usage, "serverAuth"},
                    {NID_subject_alt_name, wanted},
                    {NID_subject_key_identifier, "hash"},
                    {NID_authority_key_identifier, "keyid:always"}}};
    FK_ASSIGN_OR_RETURN(Cert server, build_certificate(t));
    FK_RETURN_IF_ERROR(write_key(p.server_key, server_key.get()));
    FK_RETURN_IF_ERROR(
        write_file_atomic(p.server_cert, cert_to_pem(server.get()) + issuing_pem, 0644));
    log::info("ca.server_certificate_issued", {{"path", p.server_cert}, {"names", wanted}});
  }

  ca->root_info_ = describe_cert(k.root_cert.get());
  ca->issuing_info_ = describe_cert(k.issuing_cert.get());
  return ca;
}

namespace {

std::vector<Extension> device_extensions(KeyType key, const CaConfig& config) {
  bool rsa = key == KeyType::kRsa;
  std::vector<Extension> out = {{NID_basic_constraints, "critical,CA:FALSE"},
                                {NID_key_usage, rsa ? "critical,digitalSignature,keyEncipherment"
                                                    : "critical,digitalSignature"},
                                {NID_ext_key_usage, "clientAuth"},
                                {NID_subject_key_identifier, "hash"},
                                {NID_authority_key_identifier, "keyid:always"}};
  if (!config.crl_url.empty())
    out.push_back({NID_crl_distribution_points, "URI:" + config.crl_url});
  if (!config.ocsp_url.empty()) out.push_back({NID_info_access, "OCSP;URI:" + config.ocsp_url});
  return out;
}

// "0a1b..." -> an ASN1_INTEGER (null when not hex).
ASN1_INTEGER* serial_from_hex(const std::string& hex) {
  BIGNUM* bn = nullptr;
  if (hex.empty() || BN_hex2bn(&bn, hex.c_str()) != static_cast<int>(hex.size())) {
    BN_free(bn);
    return nullptr;
  }
  ASN1_INTEGER* out = BN_to_ASN1_INTEGER(bn, nullptr);
  BN_free(bn);
  return out;
}

std::string der_of_response(OCSP_RESPONSE* resp) {
  unsigned char* der = nullptr;
  const int len = i2d_OCSP_RESPONSE(resp, &der);
  std::string out = len > 0
                        ? std::string(reinterpret_cast<char*>(der), static_cast<std::size_t>(len))
                        : std::string();
  OPENSSL_free(der);
  return out;
}

std::string ocsp_failure(int status) {
  OCSP_RESPONSE* resp = OCSP_response_create(status, nullptr);
  std::string out = der_of_response(resp);
  OCSP_RESPONSE_free(resp);
  return out;
}

}  // namespace

EpochSeconds OpensslCertificateAuthority::device_not_after(const IssueOptions& options,
                                                           EpochSeconds now) const {
  if (options.not_after) return *options.not_after;
  return config_.device_validity_days > 0 ? now + config_.device_validity_days * kDay
                                          : kAwsDefaultNotAfter;
}

Result<CertificateInfo> OpensslCertificateAuthority::issue_from_csr(std::string_view csr_pem,
                                                                    const IssueOptions& options) {
  FK_ASSIGN_OR_RETURN(ParsedCsr csr, read_csr(csr_pem));
  X509_NAME* subject = csr.subject();
  Name fallback;
  if (X509_NAME_entry_count(subject) == 0) {
    fallback = make_name("", options.common_name);
    subject = fallback.get();
  }
  const EpochSeconds now = clock_.now();
  CertTemplate t{subject,
                 [&csr](X509* cert) { return csr.copy_public_key_to(cert); },
                 keys_->issuing_cert.get(),
                 keys_->issuing_key.get(),
                 now,
                 device_not_after(options, now),
                 device_extensions(csr.info().key.type, config_)};
  FK_ASSIGN_OR_RETURN(Cert cert, build_certificate(t));
  return describe_cert(cert.get(), &csr.info().key);
}

Result<IssuedWithKey> OpensslCertificateAuthority::issue_with_new_key(const KeySpec& spec,
                                                                      const IssueOptions& options) {
  FK_ASSIGN_OR_RETURN(Pkey key, generate_key(spec));
  FK_ASSIGN_OR_RETURN(PublicKeyInfo key_info, describe_key(key.get()));
  Name subject = make_name("", options.common_name);
  const EpochSeconds now = clock_.now();
  CertTemplate t{subject.get(),
                 key_of(key.get()),
                 keys_->issuing_cert.get(),
                 keys_->issuing_key.get(),
                 now,
                 device_not_after(options, now),
                 device_extensions(key_info.type, config_)};
  FK_ASSIGN_OR_RETURN(Cert cert, build_certificate(t));
  IssuedWithKey out;
  out.certificate = describe_cert(cert.get(), &key_info);
  FK_ASSIGN_OR_RETURN(out.keys.private_key_pem, private_key_to_pem(key.get()));
  FK_ASSIGN_OR_RETURN(out.keys.public_key_pem, public_key_to_pem(key.get()));
  return out;
}

Result<std::string> OpensslCertificateAuthority::make_crl(
    const std::vector<RevokedCertificate>& revoked, EpochSeconds this_update,
    EpochSeconds next_update, std::uint64_t number) {
  ERR_clear_error();
  std::unique_ptr<X509_CRL, decltype(&X509_CRL_free)> crl(X509_CRL_new(), &X509_CRL_free);
  X509* issuer = keys_->issuing_cert.get();
  X509_CRL_set_version(crl.get(), 1);  // v2
  X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(issuer));
  auto set_time = [&](int (*setter)(X509_CRL*, const ASN1_TIME*), EpochSeconds t) {
    ASN1_TIME* at = ASN1_TIME_set(nullptr, static_cast<time_t>(t));
    const bool ok = at != nullptr && setter(crl.get(), at) == 1;
    ASN1_TIME_free(at);
    return ok;
  };
  if (!set_time(&X509_CRL_set1_lastUpdate, this_update) ||
      !set_time(&X509_CRL_set1_nextUpdate, next_update))
    return internal_error("cannot set the CRL's dates: " + last_error());
  for (const RevokedCertificate& r : revoked) {
    ASN1_INTEGER* serial = serial_from_hex(r.serial_hex);
    if (serial == nullptr) continue;  // not a serial this CA wrote
    X509_REVOKED* entry = X509_REVOKED_new();
    ASN1_TIME* when = ASN1_TIME_set(nullptr, static_cast<time_t>(r.revoked_at));
    X509_REVOKED_set_serialNumber(entry, serial);
    X509_REVOKED_set_revocationDate(entry, when);
    ASN1_TIME_free(when);
    ASN1_INTEGER_free(serial);
    X509_CRL_add0_revoked(crl.get(), entry);
  }
  X509_CRL_sort(crl.get());
  ASN1_INTEGER* crl_number = ASN1_INTEGER_new();
  ASN1_INTEGER_set_uint64(crl_number, number);
  X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, crl_number, 0, 0);
  ASN1_INTEGER_free(crl_number);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, nullptr, nullptr, crl.get(), 0);
  if (X509_EXTENSION* akid =
          X509V3_EXT_conf_nid(nullptr, &ctx, NID_authority_key_identifier, "keyid:always")) {
    X509_CRL_add_ext(crl.get(), akid, -1);
    X509_EXTENSION_free(akid);
  }
  if (X509_CRL_sign(crl.get(), keys_->issuing_key.get(), EVP_sha256()) <= 0)
    return internal_error("cannot sign the CRL: " + last_error());
  unsigned char* der = nullptr;
  const int len = i2d_X509_CRL(crl.get(), &der);
  if (len <= 0) return internal_error("cannot encode the CRL: " + last_error());
  std::string out(reinterpret_cast<char*>(der), static_cast<std::size_t>(len));
  OPENSSL_free(der);
  return out;
}

std::string OpensslCertificateAuthority::answer_ocsp(std::string_view request_der,
                                                     const OcspLookup& lookup,
                                                     const OcspOptions& options) {
  ERR_clear_error();
  if (request_der.empty() || request_der.size() > kMaxOcspRequestBytes)
    return ocsp_failure(OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
  const auto* p = reinterpret_cast<const unsigned char*>(request_der.data());
  std::unique_ptr<OCSP_REQUEST, decltype(&OCSP_REQUEST_free)> req(
      d2i_OCSP_REQUEST(nullptr, &p, static_cast<long>(request_der.size())), &OCSP_REQUEST_free);
  const int questions = req ? OCSP_request_onereq_count(req.get()) : 0;
  if (!req ||
      p != reinterpret_cast<const unsigned char*>(request_der.data()) + request_der.size() ||
      questions <= 0 || questions > kMaxOcspQuestions)
    return ocsp_failure(OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);

  // The issuers a question may name: this CA, then the registered ones.
  struct Issuer {
    std::string id;  // "" = this CA
    X509* cert;
  };
  std::vector<Cert> others;
  std::vector<Issuer> issuers = {{"", keys_->issuing_cert.get()}};
  for (const auto& [id, pem] : options.other_cas) {
    auto c = read_cert(pem);
    if (!c.is_ok()) continue;
    issuers.push_back({id, c->get()});
    others.push_back(std::move(*c));
  }

  std::unique_ptr<OCSP_BASICRESP, decltype(&OCSP_BASICRESP_free)> basic(OCSP_BASICRESP_new(),
                                                                        &OCSP_BASICRESP_free);
  std::unique_ptr<ASN1_TIME, decltype(&ASN1_TIME_free)> this_update(
      ASN1_TIME_set(nullptr, static_cast<time_t>(options.now)), &ASN1_TIME_free);
  std::unique_ptr<ASN1_TIME, decltype(&ASN1_TIME_free)> next_update(
      options.next_update != 0 ? ASN1_TIME_set(nullptr, static_cast<time_t>(options.next_update))
                               : nullptr,
      &ASN1_TIME_free);
  for (int i = 0; i < questions; ++i) {
    OCSP_CERTID* id = OCSP_onereq_get0_id(OCSP_request_onereq_get0(req.get(), i));
    ASN1_OBJECT* md_oid = nullptr;
    ASN1_INTEGER* serial = nullptr;
    OCSP_id_get0_info(nullptr, &md_oid, nullptr, &serial, id);
    const EVP_MD* md = md_oid != nullptr ? EVP_get_digestbyobj(md_oid) : nullptr;
    if (md == nullptr || serial == nullptr)
      return ocsp_failure(OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
    const Issuer* named = nullptr;
    for (const Issuer& issuer : issuers) {
      OCSP_CERTID* candidate = OCSP_cert_id_new(md, X509_get_subject_name(issuer.cert),
                                                X509_get0_pubkey_bitstr(issuer.cert), serial);
      const bool same = candidate != nullptr && OCSP_id_issuer_cmp(candidate, id) == 0;
      OCSP_CERTID_free(candidate);
      if (same) {
        named = &issuer;
        break;
      }
    }
    OcspAnswer answer;
    if (named != nullptr) answer = lookup(named->id, serial_to_hex(serial));
    int status = V_OCSP_CERTSTATUS_UNKNOWN;
    std::unique_ptr<ASN1_TIME, decltype(&ASN1_TIME_free)> revoked_at(nullptr, &ASN1_TIME_free);
    if (answer.status == OcspAnswer::Status::kGood) {
      status = V_OCSP_CERTSTATUS_GOOD;
    } else if (answer.status == OcspAnswer::Status::kRevoked) {
      status = V_OCSP_CERTSTATUS_REVOKED;
      revoked_at.reset(ASN1_TIME_set(nullptr, static_cast<time_t>(answer.revoked_at)));
    }
    if (OCSP_basic_add1_status(basic.get(), id, status, OCSP_REVOKED_STATUS_NOSTATUS,
                               revoked_at.get(), this_update.get(), next_update.get()) == nullptr)
      // The question's CertID parsed but does not encode again (e.g. a hash algorithm whose
      // parameters are an empty constructed value): the request is malformed, not the CA.
      return ocsp_failure(OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
  }
  if (OCSP_copy_nonce(basic.get(), req.get()) == 0)
    return ocsp_failure(OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
  if (OCSP_basic_sign(basic.get(), keys_->issuing_cert.get(), keys_->issuing_key.get(),
                      EVP_sha256(), nullptr, 0) != 1) {
    log::warn("ca.ocsp_sign_failed", {{"error", last_error()}});
    return ocsp_failure(OCSP_RESPONSE_STATUS_INTERNALERROR);
  }
  std::unique_ptr<OCSP_RESPONSE, decltype(&OCSP_RESPONSE_free)> resp(
      OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, basic.get()), &OCSP_RESPONSE_free);
  return der_of_response(resp.get());
}

}  // namespace fk::crypto
