// Certificate rotation that keeps the device's identity (fleetkey's, not AWS's; docs/rotation.md).
//
// A device connected with an ACTIVE certificate publishes a CSR for a key of its own on
// $fleetkey/certificates/rotate/<json|cbor>; the operator's `fleetkey certs rotate` does the same
// through the API for direct certificates. The new certificate is signed by the issuing CA and
// recorded ACTIVE with the old one's things and policies (groups and attributes are the thing's)
// in one transaction, with the rotation's state, before the reply.
//
// The old certificate stays ACTIVE until the new one first connects (complete()) or the overlap
// window ends (sweep()); then it becomes INACTIVE, never REVOKED, and its sessions are cut.
//
// Requests are idempotent: the same CSR again (a reply lost to a power cut) returns the same new
// certificate; a CSR for another key replaces a new certificate that was never used. Refused:
// a CSR for the current certificate's key, a certificate that is not ACTIVE, a certificate whose
// policies do not allow fleetkey:RotateCertificate on its ARN, more than the rate.
//
// Thread-safety: every method may be called from any thread (handle() off the I/O threads).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/clock.h"
#include "base/device_events.h"
#include "provisioning/fleet_provisioning.h"
#include "provisioning/messages.h"
#include "provisioning/rate_limiter.h"
#include "registry/registry.h"

namespace fk::provisioning {

// The policy action that lets a certificate rotate itself (resource: its certificate ARN).
inline constexpr std::string_view kRotateAction = "fleetkey:RotateCertificate";

struct RotationConfig {
  std::int64_t overlap_seconds = 7 * 86400;  // the old certificate's ACTIVE time at most
  double max_requests_per_hour = 6;          // per certificate; 0 = no limit
  // MQTT requests' answers go on the requesting certificate's timeline; null: nowhere.
  DeviceEventSink* events = nullptr;
};

struct Rotated {
  storage::CertificateRecord certificate;  // the new one
  std::string previous_certificate_id;
  EpochSeconds previous_deactivates_at = 0;
  bool replayed = false;  // the same CSR again: the certificate made the first time
};

class CertificateRotation {
 public:
  CertificateRotation(registry::Registry& registry, const Clock& clock, RotationConfig config);

  // The MQTT request from a connection authenticated with `who.claim_certificate_id` (the
  // requester's own certificate here). admit() is the rate limit (I/O thread), handle_admitted()
  // the rest (a worker).
  std::optional<Reply> admit(Format format, const Requester& who);
  Reply handle_admitted(Format format, std::string_view payload, const Requester& who);
  Reply throttled(Format format, std::string why) const;

  // A new certificate for `old_id` from `csr_pem` (the MQTT request after its policy check, and
  // the API's). Errors: kCertificateValidation (CSR), kInvalidRequest (key reused),
  // kCertificateState (not ACTIVE), kNotFound.
  Result<Rotated> rotate(std::string_view old_id, std::string_view csr_pem);

  // Whether `certificate_id` is the new certificate of a rotation not yet completed (read inside
  // the caller's transaction: the connect decision's).
  static Result<bool> completes_rotation(registry::Txn& txn, std::string_view certificate_id);
  // The first connect with a rotated certificate: the old one becomes INACTIVE.
  Status complete(std::string_view new_id);
  // Rotations whose overlap window ended: the old certificate becomes INACTIVE. Returns how many.
  Result<std::size_t> sweep();
  // The pending rotation from `old_id`: the new certificate's id ("" when none).
  Result<std::string> pending_from(std::string_view old_id);

  const RotationConfig& config() const { return config_; }

 private:
  // A rejection; `who` non-null: also on its timeline.
  Reply reject(Format format, const Requester* who, int status, std::string code,
               std::string message) const;
  void record(const Requester& who, const char* event, std::string reason,
              std::string detail) const;

  registry::Registry& registry_;
  const Clock& clock_;
  const RotationConfig config_;
  KeyedRateLimiter rate_;
};

}  // namespace fk::provisioning
