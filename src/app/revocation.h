// Revocation: the issuing CA's revocation data for third parties, from the registry.
//
//   crl()        the CRL (DER) of fleetkey's issuing CA: every REVOKED certificate it issued that
//                has not expired, and those deleted after being revoked (their tombstones,
//                registry::revoked_tombstone_key).
//                Kept until a certificate event or a minute passes, then made again on the next
//                request: a fetch after `fleetkey certs revoke` returns lists it (on another node
//                as soon as the event feed brings the change, well within a second).
//   ocsp(req)    the OCSP response (RFC 6960) for a DER request: good / revoked / unknown from
//                the registry status; certificates of registered CAs are answered too (signed
//                by fleetkey's issuing CA as a responder the client trusts by configuration).
//
// Served over the API port without SigV4 (api/iot_api.cpp). Thread-safety: any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "crypto/certificate_authority.h"
#include "registry/registry.h"

namespace fk::app {

class Revocation {
 public:
  // How long a CRL or an OCSP answer says it is valid (nextUpdate - thisUpdate).
  static constexpr EpochSeconds kCrlValidity = 24 * 3600;
  static constexpr EpochSeconds kOcspValidity = 3600;

  Revocation(crypto::CertificateAuthority& ca, registry::Registry& registry, const Clock& clock);

  Result<std::string> crl();
  std::string ocsp(std::string_view request_der);

  // What the server's registry listener calls: certificate events make the next crl() anew.
  void on_registry_events(const std::vector<registry::RegistryEvent>& events);

 private:
  Result<std::vector<crypto::RevokedCertificate>> revoked_now();
  crypto::OcspAnswer lookup(registry::Txn& txn, const std::string& ca_id,
                            const std::string& serial_hex);

  crypto::CertificateAuthority& ca_;
  registry::Registry& registry_;
  const Clock& clock_;
  std::mutex mu_;
  std::string crl_;  // DER; empty until made
  EpochSeconds crl_made_at_ = 0;
  std::uint64_t crl_number_ = 0;
  // Set by certificate events without waiting for a CRL being made (the registry's listener
  // runs on a writer's thread); cleared by the crl() that reads the registry after it.
  std::atomic<bool> dirty_{true};
};

}  // namespace fk::app
