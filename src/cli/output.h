// What the CLI prints: human tables by default, JSON for scripts, progress for batches, and
// the documented exit codes (docs/cli.md).
#pragma once

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/status.h"

namespace fk::cli {

enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,          // anything not listed below
  kExitUsage = 2,          // bad flags or arguments, a refused (invalid) request
  kExitUnreachable = 3,    // fleetkeyd cannot be reached
  kExitCredentials = 4,    // fleetkeyd refused the credentials or signature (403)
  kExitNotFound = 5,       // the thing, certificate, policy or template does not exist
  kExitConflict = 6,       // already exists, still in use, or a state that forbids it
  kExitLocalFiles = 7,     // a local file could not be read or written (disk full, permissions)
  kExitBatchPartial = 8,   // a batch finished with some devices failed (listed)
  kExitCannotConnect = 9,  // diagnose: the device cannot connect (or is not provisioned)
};

int exit_code_for(const Status& status);

// "error: <message>" plus what to do, on stderr; returns the exit code.
int report_error(const Status& status);

enum class OutputFormat { kTable, kJson };

// Columns padded to the widest cell; an empty table prints "(none)".
std::string render_table(const std::vector<std::string>& headers,
                         const std::vector<std::vector<std::string>>& rows);

// Prints `j` (json) or the table made from it.
void print(OutputFormat format, const nlohmann::json& j, const std::vector<std::string>& headers,
           const std::vector<std::vector<std::string>>& rows);

// Batch progress on stderr: a redrawn bar on a terminal, otherwise a plain line every 10%.
class Progress {
 public:
  Progress(std::size_t total, bool terminal);
  void update(std::size_t done, std::size_t failed);
  void finish(std::size_t done, std::size_t failed);

 private:
  std::size_t total_;
  bool terminal_;
  std::size_t last_decile_ = 0;
  std::chrono::steady_clock::time_point start_;
};

// "30d", "12h", "90m", "3600s" or plain seconds -> seconds. kInvalidRequest otherwise.
Result<std::int64_t> parse_duration(std::string_view text);

}  // namespace fk::cli
