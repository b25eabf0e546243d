// Broker: AWS IoT Core's device endpoint behaviour (../shared/spec/aws-iot-compat.md section 4)
// over mutual-TLS connections: sessions, subscriptions, QoS 0/1, retained messages, wills,
// persistent sessions, client-id takeover, keep-alive, AWS's limits and lifecycle events.
//
// Threads: connections are pinned to one IoPool context each (a "shard"); each shard keeps
// the subscriptions of its own sessions, and a PUBLISH is routed by posting the shared message
// to every shard, so the publish path takes no global lock. The registries that are touched on
// connect/disconnect only (client ids, certificate index, retained messages) have their own
// mutexes.
//
// Thread-safety: all public methods may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/device_events.h"
#include "broker/authorizer.h"
#include "broker/cluster_link.h"
#include "broker/reserved_topic_handler.h"
#include "net/io_pool.h"
#include "net/tls/tls_connection.h"

namespace fk::metrics {
class Exposition;
}

namespace fk::broker {

struct BrokerConfig {
  std::size_t max_client_id_bytes = 128;
  std::size_t max_topic_bytes = 256;
  std::size_t max_topic_slashes = 7;
  std::size_t max_payload_bytes = 128 * 1024;
  std::size_t max_filters_per_subscribe = 8;
  std::size_t max_subscriptions_per_connection = 50;
  // AWS: 100 publishes per second per connection, inbound and outbound together, the excess
  // discarded. 0 = no limit.
  std::uint32_t max_publishes_per_second = 100;
  // AWS: 512 KiB/s per connection, the excess delayed: past it in a one-second window the
  // connection is not read until the window ends. 0 = no limit.
  std::uint32_t max_bytes_per_second = 512 * 1024;
  std::uint16_t max_inflight = 100;  // unacknowledged QoS 1 messages per direction
  std::uint16_t min_keep_alive = 30;
  std::uint16_t max_keep_alive = 1200;
  std::uint32_t default_session_expiry = 3600;  // MQTT 3.1.1 persistent sessions
  std::uint32_t max_session_expiry = 7 * 24 * 3600;
  // Memory budgets per session (issue 15): QoS 1 messages waiting for a device, online (past
  // the in-flight window or the write backlog) or offline, capped by count and by bytes; the
  // oldest waiting message is dropped first (logged, counted in BrokerStats).
  std::size_t max_queued_messages = 1000;
  std::size_t max_queued_bytes = 1 << 20;
  // Bytes written to a connection and not yet taken by its peer: past this, QoS 0 messages to
  // it are dropped and QoS 1 messages wait in its queue. The TLS layer closes a connection at
  // twice this (a peer that does not read at all).
  std::size_t max_write_backlog_bytes = 2 << 20;
  // Bytes of packets that arrive between CONNECT and CONNACK (authorization in flight).
  std::size_t max_early_bytes = 256 << 10;
  // Retained messages (AWS: an account cap, answered as throttled): a retained PUBLISH to a
  // new topic past either cap is refused (MQTT 5 PUBACK 0x97), not stored and not forwarded.
  std::size_t max_retained_messages = 100000;
  std::size_t max_retained_bytes = 256 << 20;
  std::uint16_t topic_alias_maximum = 8;
  int connect_timeout_seconds = 10;
  bool lifecycle_events = true;
  // Where connects, refusals and disconnects go for the device timeline (with their reasons);
  // null: nowhere. Outlives the broker.
  DeviceEventSink* device_events = nullptr;
};

// A connection on this node, as the console and `fleetkey diagnose` show it.
struct LiveConnection {
  std::string client_id;
  std::string certificate_id;
  std::string remote_address;
  std::int64_t connected_at_ms = 0;
};

struct BrokerStats {
  std::uint64_t connections = 0;  // currently connected
  std::uint64_t sessions = 0;     // connected + offline persistent
  std::uint64_t messages_in = 0;
  std::uint64_t messages_out = 0;
  std::uint64_t connects_refused = 0;
  std::uint64_t dropped_qos0 = 0;      // to a connection whose write backlog was full
  std::uint64_t dropped_qos1 = 0;      // a session's queue past its count or byte budget
  std::uint64_t retained_refused = 0;  // past the retained-message caps
  std::uint64_t retained_messages = 0;
  std::uint64_t retained_bytes = 0;
};

class Broker {
 public:
  Broker(net::IoPool& pool, BrokerConfig config, Authorizer& authorizer,
         ReservedTopicHandler* reserved = nullptr);
  ~Broker();

  // Makes this broker one node of a cluster (before the first connection; the link outlives
  // the broker's connections). Without it the broker is a single node.
  void set_cluster(ClusterLink* link);

  // Takes a connection whose TLS handshake is done (called on its I/O thread).
  void accept(std::shared_ptr<net::TlsConnection> connection);

  // Closes every connection authenticated with this certificate (it left ACTIVE).
  void disconnect_certificate(const std::string& certificate_id, const std::string& reason);

  // Publishes a message of the server's own (QoS 0, no publisher: e.g. JITR's
  // $aws/events/certificates/registered/<caCertificateId>) to this node's and, in a cluster,
  // every node's subscribers. Any thread.
  void publish_event(const std::string& topic, std::string payload);

  // The connections on this node authenticated with this certificate (any thread).
  std::vector<LiveConnection> connections_of(const std::string& certificate_id) const;

  BrokerStats stats() const;
  // The broker's families for GET /metrics (connections, connects, messages, revocation cuts).
  void write_metrics(metrics::Exposition& out) const;

  // Closes every connection (MQTT 5: DISCONNECT 0x8B first) and drops all sessions; call while
  // the I/O pool still runs. Returns when every shard has done it.
  void shutdown();

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace fk::broker
