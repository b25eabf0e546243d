#include <cerrno>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/files.h"
#include "fleetkey/credentials.h"

namespace fleetkey {
namespace {

using nlohmann::json;

constexpr const char* kRecordFile = "provisioning.json";
constexpr const char* kRotationFile = "rotation.json";

bool parse_stage(const std::string& s, Stage& out) {
  for (Stage st : {Stage::kNone, Stage::kKeyReady, Stage::kCertificateIssued, Stage::kRegistered})
    if (s == to_string(st)) {
      out = st;
      return true;
    }
  return false;
}

Error storage_error(std::string message) {
  return {ErrorKind::kStorage, std::move(message), 0, ""};
}

// A record file: `exists` false (and true returned) when there is none.
bool read_record(const std::string& path, json& out, bool& exists, Error& error) {
  exists = fk::file_exists(path);
  if (!exists) return true;
  auto text = fk::read_file(path);
  if (!text.is_ok()) {
    error = storage_error(text.status().message());
    return false;
  }
  out = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  return true;
}

// `folder`/`name` (0600), atomically.
bool write_record(const std::string& folder, const char* name, const json& j, Error& error) {
  if (auto st = fk::make_dirs(folder, 0700); !st.is_ok()) {
    error = storage_error(st.message());
    return false;
  }
  if (auto st = fk::write_file_atomic(folder + "/" + name, j.dump(2) + "\n", 0600); !st.is_ok()) {
    error = storage_error(st.message());
    return false;
  }
  return true;
}

// The direct layout: device.cert.pem and device.private.key (0600), each written atomically.
bool write_identity(const std::string& folder, const std::string& certificate_pem,
                    const std::string& private_key_pem, Error& error) {
  for (auto [name, text, mode] : {std::tuple{"device.cert.pem", &certificate_pem, 0644},
                                  std::tuple{"device.private.key", &private_key_pem, 0600}}) {
    if (auto st = fk::write_file_atomic(folder + "/" + name, *text, static_cast<mode_t>(mode));
        !st.is_ok()) {
      error = storage_error(st.message());
      return false;
    }
  }
  return true;
}

// The record at `path` with its stage read by `parse`: `exists` false (and true returned) when
// there is none; false with an error for a file that is not such a record.
template <typename StageT>
bool read_staged_record(const std::string& path, const char* what,
                        bool (*parse)(const std::string&, StageT&), json& j, StageT& stage,
                        bool& exists, Error& error) {
  if (!read_record(path, j, exists, error)) return false;
  if (!exists) return true;
  if (j.is_discarded() || !j.is_object() || !j.contains("stage") || !j["stage"].is_string() ||
      !parse(j["stage"].get<std::string>(), stage)) {
    error = storage_error(path + ": not a " + what + " record (written by another program?)");
    return false;
  }
  return true;
}

// A string member, "" when absent or not a string.
std::string member(const json& j, const char* k) {
  auto it = j.find(k);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool parse_rotation_stage(const std::string& s, RotationStage& out) {
  for (RotationStage st : {RotationStage::kNone, RotationStage::kKeyReady, RotationStage::kIssued})
    if (s == to_string(st)) {
      out = st;
      return true;
    }
  return false;
}

}  // namespace

bool CredentialStore::load_rotation(RotationRecord& out, Error&) {
  out = {};
  return true;
}

bool CredentialStore::save_rotation(const RotationRecord&, Error& error) {
  error = storage_error("this credential store keeps no rotation record");
  return false;
}

bool CredentialStore::commit_rotation(const RotationRecord&, Error& error) {
  error = storage_error("this credential store keeps no rotation record");
  return false;
}

bool FileCredentialStore::load_rotation(RotationRecord& out, Error& error) {
  out = {};
  const std::string path = folder_ + "/" + kRotationFile;
  json j;
  bool exists = false;
  RotationStage stage = RotationStage::kNone;
  if (!read_staged_record(path, "rotation", parse_rotation_stage, j, stage, exists, error))
    return false;
  if (!exists) return true;
  out.stage = stage;
  out.private_key_pem = member(j, "privateKey");
  out.csr_pem = member(j, "certificateSigningRequest");
  out.certificate_pem = member(j, "certificatePem");
  out.certificate_id = member(j, "certificateId");
  out.previous_certificate_pem = member(j, "previousCertificatePem");
  out.previous_private_key_pem = member(j, "previousPrivateKey");
  if (auto it = j.find("previousDeactivatesAt"); it != j.end() && it->is_number_integer())
    out.previous_deactivates_at = it->get<std::int64_t>();
  const bool previous =
      !out.previous_certificate_pem.empty() && !out.previous_private_key_pem.empty();
  const bool complete = stage == RotationStage::kNone ||
                        (stage == RotationStage::kKeyReady && previous &&
                         !out.private_key_pem.empty() && !out.csr_pem.empty()) ||
                        (stage == RotationStage::kIssued && previous &&
                         !out.private_key_pem.empty() && !out.certificate_pem.empty());
  if (!complete) {
    error = storage_error(path + ": the record for stage " + to_string(stage) +
                          " lacks members it needs");
    return false;
  }
  return true;
}

bool FileCredentialStore::save_rotation(const RotationRecord& r, Error& error) {
  json j = {{"stage", to_string(r.stage)}};
  auto put = [&](const char* k, const std::string& v) {
    if (!v.empty()) j[k] = v;
  };
  if (r.stage != RotationStage::kNone) {
    put("privateKey", r.private_key_pem);
    put("certificateSigningRequest", r.csr_pem);
    put("certificatePem", r.certificate_pem);
    put("certificateId", r.certificate_id);
    put("previousCertificatePem", r.previous_certificate_pem);
    put("previousPrivateKey", r.previous_private_key_pem);
    if (r.previous_deactivates_at != 0) j["previousDeactivatesAt"] = r.previous_deactivates_at;
  }
  return write_record(folder_, kRotationFile, j, error);
}

bool FileCredentialStore::commit_rotation(const RotationRecord& r, Error& error) {
  if (r.stage != RotationStage::kIssued) {
    error = storage_error("only an issued rotation can be committed");
    return false;
  }
  // The direct layout, then a registered provisioning record, then the rotation record (last:
  // until it is cleared, the next boot completes the rotation again from it).
  if (!write_identity(folder_, r.certificate_pem, r.private_key_pem, error)) return false;
  ProvisioningRecord provisioned;
  Error ignored;
  if (load(provisioned, ignored) && provisioned.stage == Stage::kRegistered) {
    provisioned.certificate_pem = r.certificate_pem;
    provisioned.certificate_id = r.certificate_id;
    provisioned.private_key_pem = r.private_key_pem;
    provisioned.csr_pem.clear();
    if (!save(provisioned, error)) return false;
  }
  if (std::remove((folder_ + "/" + kRotationFile).c_str()) != 0 && errno != ENOENT) {
    error = storage_error("cannot remove " + folder_ + "/" + kRotationFile);
    return false;
  }
  return true;
}

FileCredentialStore::FileCredentialStore(std::string folder) : folder_(std::move(folder)) {}

bool FileCredentialStore::load(ProvisioningRecord& out, Error& error) {
  out = {};
  const std::string path = folder_ + "/" + kRecordFile;
  json j;
  bool exists = false;
  Stage stage = Stage::kNone;
  if (!read_staged_record(path, "provisioning", parse_stage, j, stage, exists, error)) return false;
  if (!exists) return true;  // nothing saved yet
  out.stage = stage;
  out.private_key_pem = member(j, "privateKey");
  out.csr_pem = member(j, "certificateSigningRequest");
  out.certificate_pem = member(j, "certificatePem");
  out.certificate_id = member(j, "certificateId");
  out.ownership_token = member(j, "certificateOwnershipToken");
  out.thing_name = member(j, "thingName");
  if (auto it = j.find("deviceConfiguration"); it != j.end() && it->is_object())
    for (const auto& [k, v] : it->items())
      if (v.is_string()) out.device_configuration[k] = v.get<std::string>();
  const bool complete =
      (stage == Stage::kNone) ||
      (stage == Stage::kKeyReady && !out.private_key_pem.empty() && !out.csr_pem.empty()) ||
      (stage == Stage::kCertificateIssued && !out.private_key_pem.empty() &&
       !out.certificate_pem.empty() && !out.ownership_token.empty()) ||
      (stage == Stage::kRegistered && !out.private_key_pem.empty() &&
       !out.certificate_pem.empty() && !out.thing_name.empty());
  if (!complete) {
    error = storage_error(path + ": the record for stage " + to_string(stage) +
                          " lacks members it needs");
    return false;
  }
  return true;
}

bool FileCredentialStore::save(const ProvisioningRecord& r, Error& error) {
  if (auto st = fk::make_dirs(folder_, 0700); !st.is_ok()) {
    error = storage_error(st.message());
    return false;
  }
  // The direct layout first: once the record says "registered" these files exist.
  if (r.stage == Stage::kRegistered &&
      !write_identity(folder_, r.certificate_pem, r.private_key_pem, error))
    return false;
  json j = {{"stage", to_string(r.stage)}};
  auto put = [&](const char* k, const std::string& v) {
    if (!v.empty()) j[k] = v;
  };
  put("privateKey", r.private_key_pem);
  put("certificateSigningRequest", r.csr_pem);
  put("certificatePem", r.certificate_pem);
  put("certificateId", r.certificate_id);
  put("certificateOwnershipToken", r.ownership_token);
  put("thingName", r.thing_name);
  if (!r.device_configuration.empty()) j["deviceConfiguration"] = r.device_configuration;
  return write_record(folder_, kRecordFile, j, error);
}

bool FileCredentialStore::clear(Error& error) {
  for (const char* name : {kRecordFile, kRotationFile, "device.cert.pem", "device.private.key"}) {
    const std::string path = folder_ + "/" + name;
    if (std::remove(path.c_str()) != 0 && errno != ENOENT) {
      error = storage_error("cannot remove " + path);
      return false;
    }
  }
  return true;
}

}  // namespace fleetkey
