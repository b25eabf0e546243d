#include "cli/batch.h"

#include <algorithm>
#include <mutex>
#include <set>
#include <thread>

#include "base/files.h"
#include "base/strings.h"
#include "cli/output.h"
#include "crypto/x509.h"

namespace fk::cli {
namespace {

// name,password lines; the file is rewritten whole (atomically, 0600) before any device starts.
Result<std::map<std::string, std::string>> load_or_make_passwords(
    const std::string& path, const std::vector<std::string>& names) {
  std::map<std::string, std::string> out;
  if (file_exists(path)) {
    FK_ASSIGN_OR_RETURN(std::string text, read_file(path));
    std::size_t pos = 0;
    while (pos < text.size()) {
      std::size_t nl = text.find('\n', pos);
      std::string line = trim(std::string_view(text).substr(
          pos, nl == std::string::npos ? std::string::npos : nl - pos));
      pos = nl == std::string::npos ? text.size() : nl + 1;
      std::size_t comma = line.find(',');
      if (line.empty() || comma == std::string::npos || line == "thing_name,password") continue;
      out[line.substr(0, comma)] = line.substr(comma + 1);
    }
  }
  bool added = false;
  for (const auto& n : names) {
    if (out.count(n)) continue;
    out[n] = crypto::random_hex(16);  // 128 bits
    added = true;
  }
  if (added || !file_exists(path)) {
    std::string text = "thing_name,password\n";
    for (const auto& [k, v] : out) text += k + "," + v + "\n";
    if (Status st = write_file_atomic(path, text, 0600); !st.is_ok())
      return Status{ErrorCode::kInternal, st.message()};
  }
  return out;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

}  // namespace

std::string colon_fingerprint(const std::string& certificate_id) {
  std::string out;
  for (std::size_t i = 0; i + 1 < certificate_id.size(); i += 2) {
    if (!out.empty()) out += ':';
    out += static_cast<char>(std::toupper(static_cast<unsigned char>(certificate_id[i])));
    out += static_cast<char>(std::toupper(static_cast<unsigned char>(certificate_id[i + 1])));
  }
  return out;
}

Result<std::vector<std::string>> range_names(const std::string& prefix, long from, long to,
                                             int width) {
  if (from < 0 || to < from)
    return invalid_request("--from " + std::to_string(from) + " --to " + std::to_string(to) +
                           " is not a range (0 <= from <= to)");
  if (to - from >= 1000000) return invalid_request("at most 1,000,000 devices per batch");
  std::vector<std::string> out;
  for (long i = from; i <= to; ++i) {
    std::string n = std::to_string(i);
    if (static_cast<int>(n.size()) < width) n.insert(0, width - n.size(), '0');
    out.push_back(prefix + n);
    FK_RETURN_IF_ERROR(check_thing_name(out.back()));
  }
  return out;
}

Result<std::vector<std::string>> read_names_file(const std::string& path) {
  auto text = read_file(path);
  if (!text.is_ok())
    return invalid_request("cannot read names file " + path + ": " + text.status().message());
  std::vector<std::string> out;
  std::set<std::string> seen;
  std::size_t pos = 0, line_no = 0;
  while (pos < text->size()) {
    std::size_t nl = text->find('\n', pos);
    std::string line = trim(std::string_view(*text).substr(
        pos, nl == std::string::npos ? std::string::npos : nl - pos));
    pos = nl == std::string::npos ? text->size() : nl + 1;
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    if (Status st = check_thing_name(line); !st.is_ok())
      return invalid_request(path + ":" + std::to_string(line_no) + ": " + st.message());
    if (!seen.insert(line).second)
      return invalid_request(path + ":" + std::to_string(line_no) + ": " + line + " appears twice");
    out.push_back(line);
  }
  if (out.empty()) return invalid_request(path + " names no device");
  return out;
}

Result<BatchOutcome> run_batch(const Connection& connection, const std::string& root_ca_pem,
                               const BatchOptions& o) {
  if (Status st = make_dirs(o.out_dir, 0700); !st.is_ok())
    return Status{ErrorCode::kInternal,
                  "cannot create output folder " + o.out_dir + ": " + st.message()};
  std::map<std::string, std::string> passwords;
  if (o.bundle) {
    FK_ASSIGN_OR_RETURN(passwords, load_or_make_passwords(o.passwords_file.empty()
                                                              ? o.out_dir + "/bundle-passwords.csv"
                                                              : o.passwords_file,
                                                          o.names));
  }
  // One connection per worker; the first failure to connect ends the batch before it starts.
  const int workers = std::max(1, std::min<int>(o.parallel, static_cast<int>(o.names.size())));
  std::vector<std::unique_ptr<IotClient>> clients;
  for (int i = 0; i < workers; ++i) {
    FK_ASSIGN_OR_RETURN(auto c, IotClient::create(connection));
    clients.push_back(std::move(c));
  }
  std::vector<std::optional<Result<DeviceRecord>>> results(o.names.size());
  std::atomic<std::size_t> next{0}, done{0}, failed{0};
  std::atomic<bool> unreachable{false};
  std::mutex progress_mu;
  Progress progress(o.names.size(), o.terminal);
  auto work = [&](IotClient* api) {
    DeviceFactory factory(*api, root_ca_pem);
    for (;;) {
      if ((o.stop && o.stop->load()) || unreachable.load()) return;
      std::size_t i = next.fetch_add(1);
      if (i >= o.names.size()) return;
      DeviceRequest r = o.device;
      r.thing_name = o.names[i];
      r.folder = o.out_dir + "/" + o.names[i];
      if (o.bundle) r.bundle_password = passwords[o.names[i]];
      results[i] = factory.create(r);
      (results[i]->is_ok() ? done : failed).fetch_add(1);
      if (!results[i]->is_ok() && results[i]->status().code() == ErrorCode::kUnavailable)
        unreachable.store(true);  // the others would fail the same way: stop
      if (o.show_progress) {
        std::lock_guard<std::mutex> lock(progress_mu);
        progress.update(done.load(), failed.load());
      }
    }
  };
  std::vector<std::thread> threads;
  for (int i = 1; i < workers; ++i) threads.emplace_back(work, clients[i].get());
  work(clients[0].get());
  for (auto& t : threads) t.join();
  if (o.show_progress) progress.finish(done.load(), failed.load());

  BatchOutcome out;
  for (std::size_t i = 0; i < o.names.size(); ++i) {
    if (!results[i]) {
      ++out.not_started;
    } else if (results[i]->is_ok()) {
      out.done.push_back(**results[i]);
    } else {
      out.failed.emplace_back(o.names[i], results[i]->status());
      if (results[i]->status().code() == ErrorCode::kUnavailable && !out.unreachable)
        out.unreachable = results[i]->status();
    }
  }
  return out;
}

Status write_manifest(const std::string& out_dir, const std::vector<DeviceRecord>& records) {
  std::string csv = "thing_name,certificate_id,sha256_fingerprint,serial,not_after,folder\n";
  nlohmann::json devices = nlohmann::json::array();
  for (const auto& r : records) {
    csv += csv_field(r.thing_name) + "," + r.certificate_id + "," +
           colon_fingerprint(r.certificate_id) + "," + r.serial_hex + "," +
           format_utc(r.not_after) + "," + csv_field(r.folder) + "\n";
    devices.push_back({{"thingName", r.thing_name},
                       {"certificateId", r.certificate_id},
                       {"certificateArn", r.certificate_arn},
                       {"sha256Fingerprint", colon_fingerprint(r.certificate_id)},
                       {"serialNumber", r.serial_hex},
                       {"notAfter", format_utc(r.not_after)},
                       {"folder", r.folder}});
  }
  Status st = write_file_atomic(out_dir + "/manifest.csv", csv, 0644);
  if (st.is_ok())
    st = write_file_atomic(out_dir + "/manifest.json",
                           nlohmann::json{{"devices", devices}}.dump(2) + "\n", 0644);
  if (!st.is_ok()) return Status{ErrorCode::kInternal, st.message()};
  return Status::ok();
}

}  // namespace fk::cli
