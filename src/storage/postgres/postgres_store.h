// PostgresStore: the registry in PostgreSQL (libpq), for several fleetkeyd nodes sharing one
// registry (issue 16). Same contract as every storage::Store (tests/contract runs on it).
//
// Durability: a commit returns after PostgreSQL committed it (synchronous_commit as the server
// is configured; its default, on, means the WAL is flushed).
// Writers: one write transaction at a time in the whole cluster. Each write transaction takes
// a transaction-scoped advisory lock first, so the registry's read-check-write rules (names
// unique, a token or allow-list value used once) hold across nodes exactly as they do in one
// process; the GroupCommitter batches many changes into each such transaction.
// Readers: REPEATABLE READ READ ONLY transactions (a snapshot), concurrent with the writer.
// Schema: versioned migrations, run by open() under a session advisory lock, so nodes that
// start together migrate once; a schema newer than this build is refused.
// Connections: a small pool; a connection that broke is dropped and a new one is made on the
// next transaction (PostgreSQL restarts are survived), and every error is a Status
// (kUnavailable when the server cannot be reached).
//
// Thread-safety: as storage::Store.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "storage/store.h"

namespace fk::storage {

struct PostgresOptions {
  // A libpq connection string or URL ("postgresql://user@host:5432/db", "host=... dbname=...");
  // empty = libpq's PG* environment variables.
  std::string url;
  // The schema the tables live in ("" = public); made when missing.
  std::string schema;
  int connect_timeout_seconds = 5;
  std::size_t max_idle_connections = 8;
  // This node's id in the outbox (its own events are not fed back to it).
  std::string node_id = "node";
};

class PostgresConnection;

class PostgresStore final : public Store {
 public:
  static Result<std::unique_ptr<PostgresStore>> open(PostgresOptions options);
  ~PostgresStore() override;

  const PostgresOptions& options() const { return options_; }

  Result<std::unique_ptr<Transaction>> begin_write() override;
  Result<std::unique_ptr<Transaction>> begin_read() override;
  bool has_outbox() const override { return true; }

  // The schema version this build writes.
  static int schema_version();
  // Whether the server answers now (a trivial query on a pooled connection).
  Status ping();

  // Cluster membership (outside the registry's write transactions: no writer lock taken).
  struct Node {
    std::string node_id, instance, api_url;
    std::int64_t mqtt_port = 0, connections = 0, started_at = 0, seen_at = 0;
  };
  // Claims `node.node_id` for this process (`node.instance` unique per start); refused when
  // another instance refreshed that id within `stale_seconds`.
  Status join(const Node& node, int stale_seconds);
  Status heartbeat(const std::string& node_id, const std::string& instance,
                   std::int64_t connections);
  // The nodes seen within `within_seconds`, by id.
  Result<std::vector<Node>> nodes(int within_seconds);

  // Internal: a connection back to the pool (dropped when broken).
  void release(std::unique_ptr<PostgresConnection> conn);

 private:
  explicit PostgresStore(PostgresOptions options);
  Result<std::unique_ptr<PostgresConnection>> acquire();
  Result<std::unique_ptr<Transaction>> begin(bool write);

  PostgresOptions options_;
  std::mutex writer_mutex_;  // one writer per process; the advisory lock serialises nodes
  std::mutex pool_mutex_;
  std::vector<std::unique_ptr<PostgresConnection>> idle_;
};

// The other nodes' outbox entries (see storage::EventFeed): its own connection LISTENs on the
// schema's channel; a notification, or a poll every poll_interval_ms, reads the rows after the
// last one seen. After a lost connection it reconnects every second and reads on from the last
// row it delivered, so nothing committed meanwhile is missed (while the rows are kept: an hour).
class PostgresEventFeed final : public EventFeed {
 public:
  explicit PostgresEventFeed(PostgresOptions options, int poll_interval_ms = 1000);
  ~PostgresEventFeed() override;
  Status start(OnPayloads on_payloads) override;
  void stop() override;
  bool connected() const override;
  std::chrono::milliseconds disconnected_for() const override;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace fk::storage
