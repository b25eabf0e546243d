// DeviceEvent and DeviceEventSink: what happened to one device, for its timeline (issue 20).
//
// Producers (the broker, the TLS listeners, fleet provisioning, rotation, just-in-time
// registration, the control-plane API) describe each event with the identities they know: the
// thing, the certificate (its id is the SHA-256 of its DER, the fingerprint of a certificate
// that failed the handshake too), the MQTT client id. The sink (app/timeline_recorder) keeps
// them durably, bounded per device and in total; a query for a thing also finds the events of
// its certificates and of its name used as a client id.
//
// Thread-safety: record() may be called from any thread, including the I/O threads; it never
// blocks on storage.
#pragma once

#include <cstdint>
#include <string>

namespace fk {

struct DeviceEvent {
  std::int64_t sequence = 0;   // given by the store, increasing in commit order
  std::int64_t at_ms = 0;      // epoch milliseconds; 0: the sink stamps it
  std::string thing;           // "" when the producer does not know it
  std::string certificate_id;  // "" when none was presented
  std::string client_id;       // "" outside MQTT
  std::string source;          // the device's address, or the API caller's
  // What happened, a fixed word. The device: "connected", "connect_refused", "disconnected",
  // "tls_failed", "provisioning_accepted", "provisioning_rejected", "rotation_accepted",
  // "rotation_rejected". The registry (same transaction as the change, with its actor):
  // "thing_created", "thing_deleted", "certificate_created", "certificate_status",
  // "certificate_deleted", "principal_attached", "principal_detached".
  std::string event;
  // Why, a fixed word or AWS's code: the refusal cause ("certificate_not_active",
  // "policy_denied"), the disconnect reason of AWS's lifecycle events ("MQTT_KEEP_ALIVE_TIMEOUT",
  // "DUPLICATE_CLIENTID"), a provisioning errorCode ("InvalidCSR"), a new status ("INACTIVE").
  std::string reason;
  // A sentence a person can act on (the deciding policy statement, AWS's errorMessage, the
  // operation that changed the status). Never a key, token or payload.
  std::string detail;
  // Who made it happen: an access key id (the control plane), "fleetkeyd" (the server's own
  // decision: a rotation's end, a sweep), or "" (the device itself).
  std::string actor;
  bool operator==(const DeviceEvent&) const = default;
};

class DeviceEventSink {
 public:
  virtual ~DeviceEventSink() = default;
  virtual void record(DeviceEvent event) = 0;
};

}  // namespace fk
