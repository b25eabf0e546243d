// fleetkey device SDK: a device's credentials on disk.
//
// Direct certificates (the "house keys"): the factory copies device.cert.pem,
// device.private.key and the root CA onto the device, which checks them before it connects
// (validity dates, that the key is the certificate's, that the certificate chains to the root)
// and refuses with a precise error instead of failing a TLS handshake later.
//
// CredentialStore keeps the fleet provisioning record across reboots; FileCredentialStore
// writes it atomically (temporary file, fsync, rename, fsync of the folder; 0600), so a power
// cut leaves either the old record or the new one, never half of one.
//
// Thread-safety: free functions are thread-safe; a store is used by one thread at a time.
#pragma once

#include <cstdint>
#include <string>

#include "fleetkey/mqtt_client.h"
#include "fleetkey/provisioning.h"
#include "fleetkey/rotation.h"

namespace fleetkey {

// The article's SPIFFS layout, relative to a folder or absolute.
struct CredentialPaths {
  std::string certificate = "device.cert.pem";
  std::string private_key = "device.private.key";
  std::string root_ca = "root-ca.pem";

  static CredentialPaths in_folder(const std::string& folder);
};

struct CertificateFacts {
  std::string certificate_id;  // SHA-256 of the DER, lowercase hex (as AWS)
  std::string subject;
  std::int64_t not_before = 0;  // epoch seconds
  std::int64_t not_after = 0;
};

// Loads the three files and checks them at `now` (epoch seconds). On failure returns false
// with error.kind = kInvalidCredentials and error.error_code one of: MissingFile, Malformed,
// NotYetValid, Expired, KeyMismatch, UntrustedChain; error.message names the file and why.
bool load_direct_credentials(const CredentialPaths& paths, std::int64_t now, TlsIdentity& out,
                             CertificateFacts& facts, Error& error);

// The same checks on credentials already in memory (e.g. read from a secure element).
bool check_credentials(const TlsIdentity& identity, std::int64_t now, CertificateFacts& facts,
                       Error& error);

// A new key pair of `type` and a PEM CSR for it (CN = common_name): what a device makes on
// first boot. Linux: OpenSSL.
bool generate_key_and_csr(KeyType type, const std::string& common_name,
                          std::string& private_key_pem, std::string& csr_pem, Error& error);

class CredentialStore {
 public:
  virtual ~CredentialStore() = default;
  // The saved record; a record with stage kNone when nothing was saved.
  virtual bool load(ProvisioningRecord& out, Error& error) = 0;
  // All or nothing: after a crash load() returns this record or the previous one.
  virtual bool save(const ProvisioningRecord& record, Error& error) = 0;
  virtual bool clear(Error& error) = 0;

  // The certificate rotation under way (rotation.h), kept like the provisioning record: a
  // record with stage kNone when none. The defaults keep none (save and commit fail).
  virtual bool load_rotation(RotationRecord& out, Error& error);
  virtual bool save_rotation(const RotationRecord& record, Error& error);
  // The rotation's new certificate and key become the device's identity (and a registered
  // provisioning record's), then the rotation record is cleared. A crash before the end leaves
  // the record (stage issued), and the next boot completes the rotation again.
  virtual bool commit_rotation(const RotationRecord& record, Error& error);
};

// provisioning.json (0600) in `folder` is the record. Once registered, the device's
// credentials are also written in the direct layout (device.cert.pem, device.private.key
// 0600) before the record says so, so that load_direct_credentials() works on the folder.
class FileCredentialStore : public CredentialStore {
 public:
  explicit FileCredentialStore(std::string folder);
  bool load(ProvisioningRecord& out, Error& error) override;
  bool save(const ProvisioningRecord& record, Error& error) override;
  bool clear(Error& error) override;
  // rotation.json (0600), atomically; the commit writes device.cert.pem and device.private.key.
  bool load_rotation(RotationRecord& out, Error& error) override;
  bool save_rotation(const RotationRecord& record, Error& error) override;
  bool commit_rotation(const RotationRecord& record, Error& error) override;
  const std::string& folder() const { return folder_; }

 private:
  std::string folder_;
};

}  // namespace fleetkey
