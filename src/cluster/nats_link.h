// NatsLink: the broker's ClusterLink on NATS JetStream (docs/cluster.md, "MQTT across nodes").
//
//   routing      every message published on a node goes out on `fk.<qos>.<topic subject>`
//                (cluster/subjects.h); a node subscribes only to the subjects of the filters
//                its own sessions hold, and `$share/<g>/<f>` is a NATS queue group, so each
//                message reaches one node of the group (which picks one member).
//   QoS 1        also stored in the replicated stream FLEETKEY_MSGS (fk.1.>): the publisher's
//                PUBACK waits for JetStream's acknowledgement (pipelined, no round trip per
//                message on the I/O thread); a session taken over after its node died is
//                replayed from the stream (no consumer per session or subscription).
//   client ids   one record per client id in the key-value bucket fleetkey_clients; a connect
//                claims it by compare-and-set, and the claim's revision is the fencing token
//                every later write of that session must still hold. The previous owner node
//                is asked to close its connection before the new one is accepted.
//   retained     the bucket fleetkey_retained (read from the stream leader: read-your-writes).
//   nodes        heartbeats in fleetkey_nodes and on core NATS; a node whose heartbeats stopped
//                for dead_after is declared dead by one survivor (compare-and-set), which
//                publishes its connected clients' wills and disconnect events. A node that
//                cannot write its heartbeat for `lease` while some peer is silent fences itself
//                (closes every connection, delivers nothing) until it is back.
//
// Thread-safety: all public methods may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "broker/cluster_link.h"

namespace fk::cluster {

struct NatsLinkOptions {
  std::string servers;  // comma-separated nats:// URLs
  std::string node_id;
  int replicas = 3;  // of the stream and the buckets
  int heartbeat_ms = 1000;
  int lease_ms = 5000;             // cut off this long (and a peer silent): fence
  int dead_after_ms = 8000;        // a node silent this long is declared dead
  int handover_timeout_ms = 2000;  // the previous owner's answer to a takeover
  std::int64_t stream_max_age_seconds = 24 * 3600;
  std::int64_t stream_max_bytes = std::int64_t{1} << 30;
  std::size_t max_payload_bytes = 128 * 1024;
  std::size_t max_replay = 1000;  // QoS 1 messages replayed into a session taken over
  int workers = 4;                // threads for the blocking JetStream calls
};

struct NatsLinkHealth {
  bool connected = false;      // to a NATS server
  bool jetstream = false;      // the last heartbeat write succeeded within the lease
  bool owns_sessions = false;  // not fenced
  std::int64_t heartbeat_age_ms = -1;
  std::vector<std::string> peers;    // nodes heard within the lease
  std::vector<std::string> members;  // nodes alive at the last scan (a silent one fences us)
  std::string detail;
};

class NatsLink : public broker::ClusterLink {
 public:
  // Connects, creates (or checks) the stream and the buckets. Fails when NATS or JetStream is
  // unreachable within a few seconds.
  static Result<std::unique_ptr<NatsLink>> open(const NatsLinkOptions& options);
  ~NatsLink() override;

  // Heartbeats and dead-node handling (after attach).
  void start();
  // Stops the background work and closes the NATS connection.
  void stop();
  NatsLinkHealth health() const;

  void attach(Node* node) override;
  void add_interest(const std::string& filter) override;
  void remove_interest(const std::string& filter) override;
  void publish(const broker::MessagePtr& msg, std::function<void(bool)> stored) override;
  void claim(const std::string& client_id, const broker::StoredSession& session,
             std::function<void(Claim)> done) override;
  void save(const std::string& client_id, std::uint64_t revision,
            const broker::StoredSession& session, std::function<void(bool)> done) override;
  void forget(const std::string& client_id, std::uint64_t revision) override;
  void retained(const std::string& topic, std::function<void(broker::MessagePtr)> done) override;
  std::optional<std::string> unavailable() const override;
  bool owns_sessions() const override;

  struct Impl;

 private:
  explicit NatsLink(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace fk::cluster
