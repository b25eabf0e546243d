#include "cli/device_factory.h"

#include <unistd.h>

#include <cstdlib>

#include "base/clock.h"
#include "base/files.h"
#include "crypto/x509.h"

namespace fk::cli {
namespace {

constexpr const char* kJournal = ".fleetkey-journal.json";
constexpr const char* kPendingKey = ".pending.key";
constexpr const char* kRotationKey = ".rotation.key";
// How far before the journal's time a certificate made by the interrupted run may be dated
// (the server's clock against this machine's).
constexpr EpochSeconds kClockAllowance = 300;

struct Journal {
  std::string thing_name;
  std::string phase;  // started, certificate-requested, certificate-created, done
  EpochSeconds requested_at = 0;
  std::string certificate_id;
  std::string certificate_arn;
  std::string certificate_pem;
  std::string public_key_sha256;  // of the key the certificate must carry (local and CSR keys)
};

std::string path_in(const std::string& folder, const char* name) {
  return folder + "/" + name;
}

Result<std::optional<Journal>> read_journal(const std::string& folder) {
  const std::string path = path_in(folder, kJournal);
  if (!file_exists(path)) return std::optional<Journal>();
  FK_ASSIGN_OR_RETURN(std::string text, read_file(path));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return internal_error(path + " is damaged (not JSON); move the folder away and rerun");
  Journal out;
  out.thing_name = j.value("thingName", "");
  out.phase = j.value("phase", "");
  out.requested_at = j.value("requestedAt", EpochSeconds{0});
  out.certificate_id = j.value("certificateId", "");
  out.certificate_arn = j.value("certificateArn", "");
  out.certificate_pem = j.value("certificatePem", "");
  out.public_key_sha256 = j.value("publicKeySha256", "");
  return std::optional<Journal>(out);
}

Status write_journal(const std::string& folder, const Journal& j) {
  json out = {{"thingName", j.thing_name},
              {"phase", j.phase},
              {"requestedAt", j.requested_at},
              {"certificateId", j.certificate_id},
              {"certificateArn", j.certificate_arn},
              {"certificatePem", j.certificate_pem},
              {"publicKeySha256", j.public_key_sha256}};
  return write_file_atomic(path_in(folder, kJournal), out.dump(1) + "\n", 0600);
}

// Crash tests: FLEETKEY_FAILPOINT=<name> ends the process at that step as a power cut would.
void failpoint(const char* name) {
  const char* fp = std::getenv("FLEETKEY_FAILPOINT");
  if (fp != nullptr && std::string_view(fp) == name) ::_exit(137);
}

Status local_file_error(const Status& s) {
  return {ErrorCode::kInternal, s.message()};
}

}  // namespace

Status check_thing_name(std::string_view name) {
  if (name.empty() || name.size() > 128)
    return invalid_request("thing name '" + std::string(name) + "' must be 1 to 128 characters");
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == ':' || c == '_' || c == '-'))
      return invalid_request("thing name '" + std::string(name) + "' has '" + std::string(1, c) +
                             "'; only letters, digits, ':', '_' and '-' are allowed");
  }
  return Status::ok();
}

DeviceFactory::DeviceFactory(IotClient& api, std::string root_ca_pem)
    : api_(api), root_ca_pem_(std::move(root_ca_pem)) {}

Result<DeviceRecord> DeviceFactory::create(const DeviceRequest& r) {
  FK_RETURN_IF_ERROR(check_thing_name(r.thing_name));
  const std::string& dir = r.folder;
  const bool bundle = !r.bundle_password.empty();
  DeviceRecord rec;
  rec.thing_name = r.thing_name;
  rec.folder = dir;

  FK_ASSIGN_OR_RETURN(std::optional<Journal> loaded, read_journal(dir));
  Journal j;
  if (loaded) {
    j = *loaded;
    if (j.thing_name != r.thing_name)
      return invalid_request(dir + " holds the files of device " + j.thing_name + ", not " +
                             r.thing_name + "; choose another output folder");
    rec.resumed = j.phase != "done";
  } else {
    // A new device: the name must be free on the server and the folder must not hold another
    // device's files.
    auto thing = api_.call("GET", "/things/" + encode(r.thing_name));
    if (thing.is_ok())
      return already_exists("thing " + r.thing_name +
                            " already exists on fleetkeyd; choose another name, or remove it "
                            "first (fleetkey things delete " +
                            r.thing_name + " --with-certificates)");
    if (thing.status().code() != ErrorCode::kNotFound) return thing.status();
    for (const char* f : {"device.cert.pem", "device.private.key", "device.p12"})
      if (file_exists(path_in(dir, f)))
        return invalid_request(path_in(dir, f) + " already exists; choose an empty output folder");
    if (Status st = make_dirs(dir, 0700); !st.is_ok()) return local_file_error(st);
    if (::access(dir.c_str(), W_OK) != 0)
      return Status{ErrorCode::kInternal, "output folder " + dir + " is not writable"};
    j.thing_name = r.thing_name;
    j.phase = "started";
    if (r.keys == KeySource::kLocal) {
      FK_ASSIGN_OR_RETURN(crypto::KeyPair keys, crypto::generate_key_pair(r.key_spec));
      std::string stored = keys.private_key_pem;
      if (bundle) {
        FK_ASSIGN_OR_RETURN(stored, crypto::encrypt_private_key(stored, r.bundle_password));
      }
      if (Status st = write_file_atomic(path_in(dir, kPendingKey), stored, 0600); !st.is_ok())
        return local_file_error(st);
      FK_ASSIGN_OR_RETURN(j.public_key_sha256, crypto::public_key_sha256(keys.private_key_pem));
    } else if (r.keys == KeySource::kCsr) {
      FK_ASSIGN_OR_RETURN(j.public_key_sha256, crypto::public_key_sha256(r.csr_pem));
    }
    if (Status st = write_journal(dir, j); !st.is_ok()) return local_file_error(st);
  }

  // The pending private key (local and server keys), in clear in memory only.
  std::string private_key;
  auto load_pending_key = [&]() -> Status {
    const std::string p = path_in(dir, kPendingKey);
    if (!file_exists(p)) return Status::ok();
    FK_ASSIGN_OR_RETURN(std::string stored, read_file(p));
    if (bundle) {
      FK_ASSIGN_OR_RETURN(private_key, crypto::decrypt_private_key(stored, r.bundle_password));
    } else {
      private_key = std::move(stored);
    }
    return Status::ok();
  };

  if (j.phase == "started") {
    json thing = json::object();
    if (!r.attributes.empty()) thing["attributePayload"] = {{"attributes", r.attributes}};
    auto made = api_.call("POST", "/things/" + encode(r.thing_name), thing);
    // Made by this device's interrupted run (the journal was written before asking).
    if (!made.is_ok() && made.status().code() != ErrorCode::kAlreadyExists) return made.status();
    j.phase = "certificate-requested";
    j.requested_at = SystemClock::instance().now();
    if (Status st = write_journal(dir, j); !st.is_ok()) return local_file_error(st);
  } else if (j.phase == "certificate-requested" && !j.public_key_sha256.empty()) {
    // Interrupted while the certificate was being made: find it by its public key among the
    // certificates created since (newest first).
    std::string marker;
    bool older = false;
    while (!older && j.certificate_id.empty()) {
      std::string target = "/certificates?isAscendingOrder=false&pageSize=250";
      if (!marker.empty()) target += "&marker=" + encode(marker);
      FK_ASSIGN_OR_RETURN(json page, api_.call("GET", target));
      for (const auto& c : page.value("certificates", json::array())) {
        if (c.value("creationDate", EpochSeconds{0}) < j.requested_at - kClockAllowance) {
          older = true;
          break;
        }
        FK_ASSIGN_OR_RETURN(
            json d, api_.call("GET", "/certificates/" + encode(c.value("certificateId", ""))));
        std::string pem = d["certificateDescription"].value("certificatePem", "");
        auto fp = crypto::public_key_sha256(pem);
        if (fp.is_ok() && *fp == j.public_key_sha256) {
          j.certificate_id = c.value("certificateId", "");
          j.certificate_arn = c.value("certificateArn", "");
          j.certificate_pem = pem;
          break;
        }
      }
      if (!page.contains("nextMarker")) break;
      marker = page["nextMarker"];
    }
    if (!j.certificate_id.empty()) {
      j.phase = "certificate-created";
      if (Status st = write_journal(dir, j); !st.is_ok()) return local_file_error(st);
    }
  }

  if (j.phase == "certificate-requested") {
    json made;
    if (r.keys == KeySource::kServer) {
      FK_ASSIGN_OR_RETURN(
          made, api_.call("POST", "/keys-and-certificate?setAsActive=false", json::object()));
      private_key = made["keyPair"].value("PrivateKey", "");
      std::string stored = private_key;
      if (bundle) {
        FK_ASSIGN_OR_RETURN(stored, crypto::encrypt_private_key(stored, r.bundle_password));
      }
      if (Status st = write_file_atomic(path_in(dir, kPendingKey), stored, 0600); !st.is_ok())
        return local_file_error(st);
    } else {
      std::string csr = r.csr_pem;
      if (r.keys == KeySource::kLocal) {
        FK_RETURN_IF_ERROR(load_pending_key());
        if (private_key.empty())
          return internal_error(path_in(dir, kPendingKey) +
                                " is missing; the interrupted run's key is lost: delete " + dir +
                                " and the thing, then rerun");
        FK_ASSIGN_OR_RETURN(csr, crypto::make_csr(private_key, r.thing_name));
      }
      FK_ASSIGN_OR_RETURN(made, api_.call("POST", "/certificates?setAsActive=false",
                                          json{{"certificateSigningRequest", csr}}));
    }
    failpoint("certificate-made");  // made on the server, not yet in the journal
    j.certificate_id = made.value("certificateId", "");
    j.certificate_arn = made.value("certificateArn", "");
    j.certificate_pem = made.value("certificatePem", "");
    j.phase = "certificate-created";
    if (Status st = write_journal(dir, j); !st.is_ok()) return local_file_error(st);
  }

  FK_ASSIGN_OR_RETURN(crypto::CertificateInfo info, crypto::parse_certificate(j.certificate_pem));
  rec.certificate_id = j.certificate_id;
  rec.certificate_arn = j.certificate_arn;
  rec.serial_hex = info.serial_hex;
  rec.not_after = info.not_after;

  if (j.phase == "certificate-created") {
    const std::string& arn = j.certificate_arn;
    FK_RETURN_IF_ERROR(api_.call("PUT", "/things/" + encode(r.thing_name) + "/principals", nullptr,
                                 {{"x-amzn-principal", arn}})
                           .status());
    FK_RETURN_IF_ERROR(
        api_.call("PUT", "/target-policies/" + encode(r.policy_name), json{{"target", arn}})
            .status());
    FK_RETURN_IF_ERROR(
        api_.call("PUT", "/certificates/" + encode(j.certificate_id) + "?newStatus=ACTIVE")
            .status());
    // The files, each complete or absent.
    FK_RETURN_IF_ERROR(load_pending_key());
    Status st = write_file_atomic(path_in(dir, "root-ca.pem"), root_ca_pem_, 0644);
    if (st.is_ok())
      st = write_file_atomic(path_in(dir, "device.cert.pem"), j.certificate_pem, 0644);
    if (st.is_ok() && !private_key.empty()) {
      if (bundle) {
        FK_ASSIGN_OR_RETURN(std::string p12,
                            crypto::make_pkcs12(j.certificate_pem, private_key, root_ca_pem_,
                                                r.bundle_password, r.thing_name));
        st = write_file_atomic(path_in(dir, "device.p12"), p12, 0600);
      } else {
        st = write_file_atomic(path_in(dir, "device.private.key"), private_key, 0600);
      }
    }
    if (!st.is_ok()) return local_file_error(st);
    j.phase = "done";
    if (Status w = write_journal(dir, j); !w.is_ok()) return local_file_error(w);
    ::unlink(path_in(dir, kPendingKey).c_str());
  } else {
    rec.already_done = true;
  }
  return rec;
}

Result<RotationRecord> DeviceFactory::rotate(const std::string& thing, const std::string& folder,
                                             const crypto::KeySpec& key_spec) {
  FK_RETURN_IF_ERROR(check_thing_name(thing));
  const std::string dir = folder.empty() ? thing : folder;
  if (Status st = make_dirs(dir, 0700); !st.is_ok()) return local_file_error(st);
  const std::string pending = path_in(dir, kRotationKey);
  std::string key;
  if (file_exists(pending)) {
    auto text = read_file(pending);
    if (!text.is_ok()) return local_file_error(text.status());
    key = std::move(*text);
  } else {
    FK_ASSIGN_OR_RETURN(crypto::KeyPair made, crypto::generate_key_pair(key_spec));
    key = std::move(made.private_key_pem);
    if (Status st = write_file_atomic(pending, key, 0600); !st.is_ok()) return local_file_error(st);
  }
  FK_ASSIGN_OR_RETURN(std::string csr, crypto::make_csr(key, thing));
  FK_ASSIGN_OR_RETURN(json made,
                      api_.call("POST", "/fleetkey/certificates/rotate",
                                json{{"thingName", thing}, {"certificateSigningRequest", csr}}));
  failpoint("rotation-issued");  // made on the server, the bundle not yet written
  RotationRecord rec;
  rec.thing_name = thing;
  rec.folder = dir;
  rec.certificate_id = made.value("certificateId", "");
  rec.previous_certificate_id = made.value("previousCertificateId", "");
  rec.previous_deactivates_at = made.value("previousCertificateDeactivatesAt", EpochSeconds{0});
  rec.replayed = made.value("replayed", false);
  // Each file complete or absent; the key file last but one, the pending key removed last.
  Status st = write_file_atomic(path_in(dir, "root-ca.pem"), root_ca_pem_, 0644);
  if (st.is_ok())
    st = write_file_atomic(path_in(dir, "device.cert.pem"), made.value("certificatePem", ""), 0644);
  if (st.is_ok()) st = write_file_atomic(path_in(dir, "device.private.key"), key, 0600);
  if (!st.is_ok()) return local_file_error(st);
  ::unlink(pending.c_str());
  return rec;
}

}  // namespace fk::cli
