#include "fleetkey/credentials.h"

#include <ctime>
#include <vector>

#include "base/files.h"
#include "crypto/x509.h"

namespace fleetkey {
namespace {

Error invalid(const char* code, std::string message) {
  return Error{ErrorKind::kInvalidCredentials, std::move(message), 0, code};
}

// The PEM certificate blocks of a file, in order.
std::vector<std::string> certificates_in(const std::string& pem) {
  static const std::string kBegin = "-----BEGIN CERTIFICATE-----";
  static const std::string kEnd = "-----END CERTIFICATE-----";
  std::vector<std::string> out;
  for (std::size_t at = pem.find(kBegin); at != std::string::npos; at = pem.find(kBegin, at)) {
    const std::size_t end = pem.find(kEnd, at);
    if (end == std::string::npos) break;
    out.push_back(pem.substr(at, end + kEnd.size() - at) + "\n");
    at = end + kEnd.size();
  }
  return out;
}

std::string utc(std::int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

enum class Culprit { kCertificate, kKey, kRoot };

// The checks; `culprit` names the file a failure is about.
bool check(const TlsIdentity& id, std::int64_t now, CertificateFacts& facts, Error& error,
           Culprit& culprit) {
  culprit = Culprit::kCertificate;
  const auto chain = certificates_in(id.certificate_pem);
  if (chain.empty()) {
    error = invalid("Malformed", "the device certificate holds no PEM certificate");
    return false;
  }
  auto info = fk::crypto::parse_certificate(chain.front());
  if (!info.is_ok()) {
    error =
        invalid("Malformed", "the device certificate cannot be parsed: " + info.status().message());
    return false;
  }
  facts = {info->certificate_id, info->subject, info->not_before, info->not_after};
  if (now < info->not_before) {
    error = invalid("NotYetValid", "the device certificate is not valid before " +
                                       utc(info->not_before) + " (now " + utc(now) +
                                       "; is the clock set?)");
    return false;
  }
  if (now > info->not_after) {
    error = invalid("Expired", "the device certificate expired at " + utc(info->not_after) +
                                   " (now " + utc(now) + ")");
    return false;
  }
  if (auto st = fk::crypto::check_key_matches(chain.front(), id.private_key_pem); !st.is_ok()) {
    culprit = Culprit::kKey;
    error = invalid("KeyMismatch",
                    "the private key is not the device certificate's key: " + st.message());
    return false;
  }
  const auto roots = certificates_in(id.root_ca_pem);
  if (roots.empty()) {
    culprit = Culprit::kRoot;
    error = invalid("Malformed", "the root CA file holds no PEM certificate");
    return false;
  }
  const std::vector<std::string> intermediates(chain.begin() + 1, chain.end());
  if (auto st = fk::crypto::verify_chain(chain.front(), roots, intermediates, now); !st.is_ok()) {
    error = invalid("UntrustedChain", "the device certificate (issuer " + info->issuer +
                                          ") does not chain to the root CA: " + st.message());
    return false;
  }
  return true;
}

}  // namespace

CredentialPaths CredentialPaths::in_folder(const std::string& folder) {
  CredentialPaths p;
  const std::string f = folder.empty() || folder.back() == '/' ? folder : folder + "/";
  p.certificate = f + p.certificate;
  p.private_key = f + p.private_key;
  p.root_ca = f + p.root_ca;
  return p;
}

bool check_credentials(const TlsIdentity& identity, std::int64_t now, CertificateFacts& facts,
                       Error& error) {
  Culprit ignored;
  return check(identity, now, facts, error, ignored);
}

bool load_direct_credentials(const CredentialPaths& paths, std::int64_t now, TlsIdentity& out,
                             CertificateFacts& facts, Error& error) {
  struct File {
    const std::string* path;
    std::string* into;
    const char* what;
  };
  for (const File& f : {File{&paths.certificate, &out.certificate_pem, "device certificate"},
                        File{&paths.private_key, &out.private_key_pem, "private key"},
                        File{&paths.root_ca, &out.root_ca_pem, "root CA"}}) {
    auto text = fk::read_file(*f.path);
    if (!text.is_ok()) {
      error = invalid("MissingFile", std::string("cannot read the ") + f.what + " " + *f.path +
                                         ": " + text.status().message());
      return false;
    }
    *f.into = std::move(*text);
  }
  Culprit culprit;
  if (!check(out, now, facts, error, culprit)) {
    const std::string& file = culprit == Culprit::kKey    ? paths.private_key
                              : culprit == Culprit::kRoot ? paths.root_ca
                                                          : paths.certificate;
    error.message = file + ": " + error.message;
    return false;
  }
  return true;
}

bool generate_key_and_csr(KeyType type, const std::string& common_name,
                          std::string& private_key_pem, std::string& csr_pem, Error& error) {
  auto keys = fk::crypto::generate_key_pair(
      type == KeyType::kRsa2048 ? fk::crypto::KeySpec::rsa(2048) : fk::crypto::KeySpec::ec_p256());
  if (!keys.is_ok()) {
    error = {ErrorKind::kKeyGeneration, keys.status().message(), 0, ""};
    return false;
  }
  auto csr = fk::crypto::make_csr(keys->private_key_pem, common_name);
  if (!csr.is_ok()) {
    error = {ErrorKind::kKeyGeneration, csr.status().message(), 0, ""};
    return false;
  }
  private_key_pem = std::move(keys->private_key_pem);
  csr_pem = std::move(*csr);
  return true;
}

}  // namespace fleetkey
