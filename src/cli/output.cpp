#include "cli/output.h"

#include <algorithm>
#include <iostream>

namespace fk::cli {

int exit_code_for(const Status& s) {
  switch (s.code()) {
    case ErrorCode::kOk:
      return kExitOk;
    case ErrorCode::kInvalidRequest:
    case ErrorCode::kCertificateValidation:
    case ErrorCode::kMalformedPolicy:
      return kExitUsage;
    case ErrorCode::kUnavailable:
      return kExitUnreachable;
    case ErrorCode::kUnauthorized:
      return kExitCredentials;
    case ErrorCode::kNotFound:
      return kExitNotFound;
    case ErrorCode::kAlreadyExists:
    case ErrorCode::kDeleteConflict:
    case ErrorCode::kVersionConflict:
    case ErrorCode::kCertificateState:
    case ErrorCode::kCertificateConflict:
      return kExitConflict;
    case ErrorCode::kInternal:
      return kExitLocalFiles;
    default:
      return kExitError;
  }
}

int report_error(const Status& s) {
  std::string hint;
  switch (s.code()) {
    case ErrorCode::kUnavailable:
      hint = "is fleetkeyd running? Check --endpoint-url (or FLEETKEY_ENDPOINT_URL).";
      break;
    case ErrorCode::kUnauthorized:
      hint =
          "use fleetkeyd's credentials: AWS_SHARED_CREDENTIALS_FILE=<data folder>/credentials, "
          "or --profile.";
      break;
    default:
      break;
  }
  std::cerr << "error: " << s.message() << "\n";
  if (!hint.empty()) std::cerr << "hint: " << hint << "\n";
  return exit_code_for(s);
}

std::string render_table(const std::vector<std::string>& headers,
                         const std::vector<std::vector<std::string>>& rows) {
  if (rows.empty()) return "(none)\n";
  std::vector<std::size_t> width(headers.size());
  for (std::size_t i = 0; i < headers.size(); ++i) width[i] = headers[i].size();
  for (const auto& r : rows)
    for (std::size_t i = 0; i < r.size() && i < width.size(); ++i)
      width[i] = std::max(width[i], r[i].size());
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (std::size_t i = 0; i < headers.size(); ++i) {
      std::string cell = i < cells.size() ? cells[i] : "";
      out += cell;
      if (i + 1 < headers.size()) out += std::string(width[i] - cell.size() + 2, ' ');
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };
  std::string out = line(headers);
  for (const auto& r : rows) out += line(r);
  return out;
}

void print(OutputFormat format, const nlohmann::json& j, const std::vector<std::string>& headers,
           const std::vector<std::vector<std::string>>& rows) {
  if (format == OutputFormat::kJson) {
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << render_table(headers, rows);
  }
  std::cout.flush();
}

Progress::Progress(std::size_t total, bool terminal)
    : total_(total), terminal_(terminal), start_(std::chrono::steady_clock::now()) {}

void Progress::update(std::size_t done, std::size_t failed) {
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = secs > 0 ? static_cast<double>(done + failed) / secs * 60 : 0;
  if (terminal_) {
    constexpr std::size_t kBar = 30;
    std::size_t filled = total_ ? (done + failed) * kBar / total_ : kBar;
    std::fprintf(stderr, "\r[%s%s] %zu/%zu devices, %zu failed, %.0f/min ",
                 std::string(filled, '#').c_str(), std::string(kBar - filled, '.').c_str(),
                 done + failed, total_, failed, rate);
    std::fflush(stderr);
    return;
  }
  std::size_t decile = total_ ? (done + failed) * 10 / total_ : 10;
  if (decile > last_decile_) {
    last_decile_ = decile;
    std::fprintf(stderr, "progress: %zu/%zu devices, %zu failed, %.0f/min\n", done + failed, total_,
                 failed, rate);
  }
}

void Progress::finish(std::size_t done, std::size_t failed) {
  update(done, failed);
  if (terminal_) std::fprintf(stderr, "\n");
}

Result<std::int64_t> parse_duration(std::string_view text) {
  if (text.empty()) return invalid_request("empty duration; use e.g. 30d, 12h, 90m");
  std::int64_t unit = 1;
  std::string_view digits = text;
  switch (text.back()) {
    case 'd':
      unit = 86400;
      break;
    case 'h':
      unit = 3600;
      break;
    case 'm':
      unit = 60;
      break;
    case 's':
      unit = 1;
      break;
    default:
      if (!std::isdigit(static_cast<unsigned char>(text.back())))
        return invalid_request("'" + std::string(text) +
                               "' is not a duration; use e.g. 30d, 12h, 90m");
      break;
  }
  if (!std::isdigit(static_cast<unsigned char>(text.back()))) digits.remove_suffix(1);
  if (digits.empty() || digits.size() > 9 || !std::all_of(digits.begin(), digits.end(), [](char c) {
        return std::isdigit(static_cast<unsigned char>(c));
      }))
    return invalid_request("'" + std::string(text) + "' is not a duration; use e.g. 30d, 12h, 90m");
  return std::stoll(std::string(digits)) * unit;
}

}  // namespace fk::cli
