// DeviceFactory: one direct-certificate device made on fleetkeyd and written to a folder, the
// way the article's `aws-iot-manage.sh create-device` did, but resumable and never doubled.
//
// Steps, each recorded in the folder's journal (.fleetkey-journal.json, written atomically)
// before the server is asked, so that a rerun after a crash or Ctrl-C continues where it
// stopped:
//   started                 key made here (or the device's CSR, or none for server keys)
//   certificate-requested   CreateThing done; the certificate is being made (INACTIVE)
//   certificate-created     its id and PEM recorded; principal, policy, ACTIVE follow
//   done                    device.cert.pem, device.private.key (0600) or device.p12,
//                           root-ca.pem written (temporary file + rename)
// A run interrupted while the certificate was being made finds it again by its public key
// among the certificates created since, so no stray certificate is left and no second one is
// made. The private key waits in .pending.key (0600; encrypted with the bundle password in
// bundle mode) until the certificate exists.
//
// Thread-safety: one DeviceFactory per thread (its IotClient is not shared).
#pragma once

#include <map>
#include <string>

#include "base/status.h"
#include "cli/iot_client.h"
#include "crypto/types.h"

namespace fk::cli {

enum class KeySource {
  kLocal,   // made by the CLI on this machine, sent as a CSR (the default)
  kCsr,     // the device's own CSR; no private key is written
  kServer,  // made by fleetkeyd (CreateKeysAndCertificate)
};

struct DeviceRequest {
  std::string thing_name;
  std::string folder;
  std::string policy_name;
  std::map<std::string, std::string> attributes;
  KeySource keys = KeySource::kLocal;
  crypto::KeySpec key_spec;
  std::string csr_pem;          // kCsr
  std::string bundle_password;  // non-empty: device.p12 (AES-256) instead of device.private.key
};

struct DeviceRecord {
  std::string thing_name;
  std::string certificate_id;  // = SHA-256 fingerprint of the certificate's DER
  std::string certificate_arn;
  std::string serial_hex;
  EpochSeconds not_after = 0;
  std::string folder;
  bool resumed = false;       // continued an interrupted run
  bool already_done = false;  // nothing left to do
};

// A direct-certificate device's rotation (fleetkey certs rotate): the new bundle in `folder`.
struct RotationRecord {
  std::string thing_name;
  std::string certificate_id;  // the new certificate
  std::string previous_certificate_id;
  EpochSeconds previous_deactivates_at = 0;  // the old one becomes INACTIVE then at the latest
  std::string folder;
  bool replayed = false;  // an interrupted run's request, answered again
};

// AWS's thing name rule: 1-128 of [a-zA-Z0-9:_-]. Errors say which character is wrong.
Status check_thing_name(std::string_view name);

class DeviceFactory {
 public:
  DeviceFactory(IotClient& api, std::string root_ca_pem);

  // Errors: kAlreadyExists when the thing exists on the server and this folder has no journal
  // for it; kInvalidRequest for a bad name or CSR; kInternal for files that cannot be written;
  // the server's errors otherwise.
  Result<DeviceRecord> create(const DeviceRequest& request);

  // A new certificate for `thing` (its one ACTIVE certificate's policies and things carry over
  // on the server) for a key made here, written over `folder`'s device.cert.pem,
  // device.private.key (0600) and root-ca.pem. The key waits in <folder>/.rotation.key (0600)
  // until the bundle is written, so a rerun after a crash sends the same CSR and gets the same
  // certificate back instead of a second one.
  Result<RotationRecord> rotate(const std::string& thing, const std::string& folder,
                                const crypto::KeySpec& key);

 private:
  IotClient& api_;
  std::string root_ca_pem_;
};

}  // namespace fk::cli
