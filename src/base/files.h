// File helpers with the durability fleetkey promises: a file is either the old one or the
// complete new one, never half-written (temporary file, fsync, rename, fsync of the folder).
#pragma once

#include <sys/types.h>

#include <string>

#include "base/status.h"

namespace fk {

// Writes `content` to `path` atomically with permission bits `mode` (e.g. 0600 for keys);
// the temporary file is created with `mode` too, so a secret is never world-readable.
Status write_file_atomic(const std::string& path, std::string_view content, mode_t mode);

Result<std::string> read_file(const std::string& path);

bool file_exists(const std::string& path);

// mkdir -p with the given mode for folders it creates.
Status make_dirs(const std::string& path, mode_t mode = 0755);

}  // namespace fk
