// create-devices: many DeviceFactory runs on a few connections, with a manifest of the result.
// Idempotent and resumable: each device's folder carries its journal, so a rerun of the same
// command after a crash or Ctrl-C finishes what is missing and redoes nothing.
#pragma once

#include <atomic>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "cli/device_factory.h"
#include "cli/settings.h"

namespace fk::cli {

struct BatchOptions {
  std::vector<std::string> names;
  std::string out_dir;
  DeviceRequest device;  // policy, attributes, key spec; name and folder are set per device
  int parallel = 4;
  bool bundle = false;         // PKCS#12 per device, passwords in passwords_file
  std::string passwords_file;  // default <out_dir>/bundle-passwords.csv
  bool terminal = false;       // progress bar instead of progress lines
  bool show_progress = true;
  const std::atomic<bool>* stop = nullptr;  // set by SIGINT: finish started devices, then stop
};

struct BatchOutcome {
  std::vector<DeviceRecord> done;  // in the order of options.names
  std::vector<std::pair<std::string, Status>> failed;
  std::size_t not_started = 0;  // left when stopped
  // Set when fleetkeyd stopped answering: the batch stopped at the first such failure instead
  // of failing every remaining device the same way.
  std::optional<Status> unreachable;
};

// "locker-controller-" 101..150 -> locker-controller-101 ... (zero-padded to `width` digits).
Result<std::vector<std::string>> range_names(const std::string& prefix, long from, long to,
                                             int width);
// One name per line; blank lines and '#' comments skipped; duplicates refused.
Result<std::vector<std::string>> read_names_file(const std::string& path);

Result<BatchOutcome> run_batch(const Connection& connection, const std::string& root_ca_pem,
                               const BatchOptions& options);

// manifest.csv and manifest.json in `out_dir` (atomically): thing name, certificate id,
// SHA-256 fingerprint, serial, notAfter, folder.
Status write_manifest(const std::string& out_dir, const std::vector<DeviceRecord>& records);

// "AB:CD:..." as `openssl x509 -fingerprint -sha256` prints it, from the certificate id.
std::string colon_fingerprint(const std::string& certificate_id);

}  // namespace fk::cli
