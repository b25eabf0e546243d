// SqliteStore: the registry in one SQLite file, in WAL mode with synchronous=FULL, so a commit
// that returned ok survives a crash or power loss, and a crash mid-transaction leaves nothing.
//
// One writer connection (write transactions are serialised by a mutex and BEGIN IMMEDIATE) and
// a pool of reader connections (WAL snapshot reads that never block the writer). The schema is
// versioned with PRAGMA user_version and migrated forward in one transaction on open().
// Thread-safety: as storage::Store.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "storage/store.h"

namespace fk::storage {

struct SqliteOptions {
  // FULL (default): every commit fsyncs the WAL. NORMAL trades the last commits on power
  // loss for speed; fleetkey never uses it for the registry (acknowledged means durable).
  bool synchronous_full = true;
  int busy_timeout_ms = 5000;
};

class SqliteConnection;

class SqliteStore final : public Store {
 public:
  static Result<std::unique_ptr<SqliteStore>> open(const std::string& path,
                                                   SqliteOptions options = {});
  ~SqliteStore() override;

  Result<std::unique_ptr<Transaction>> begin_write() override;
  Result<std::unique_ptr<Transaction>> begin_read() override;

  // PRAGMA integrity_check on a reader connection: ok, or what SQLite found wrong.
  Status check_integrity();

  // The schema version this build writes (PRAGMA user_version after open()).
  static int schema_version();

  // Internal: returns a reader connection to the pool.
  void release_reader(std::unique_ptr<SqliteConnection> conn);

 private:
  SqliteStore(std::string path, SqliteOptions options);

  std::string path_;
  SqliteOptions options_;
  std::mutex writer_mutex_;
  std::unique_ptr<SqliteConnection> writer_;
  std::mutex readers_mutex_;
  std::vector<std::unique_ptr<SqliteConnection>> idle_readers_;
};

}  // namespace fk::storage
