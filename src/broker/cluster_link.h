// ClusterLink: what the broker needs from the other nodes of a cluster (ARCHITECTURE.md,
// "Cluster: seams first"). A single node has none (the broker's in-process path is all there
// is); src/cluster/ implements it on NATS JetStream and app/ wires it from the config.
//
// The broker tells the link which filters its sessions need (interest), hands it every message
// published on this node, and asks it who owns a client id cluster-wide. The link calls back
// through ClusterLink::Node from its own threads; the broker posts that work to its shards.
// No method blocks: slow work (JetStream round trips) answers through callbacks.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "broker/types.h"

namespace fk::broker {

// A session as the cluster stores it (persistent sessions and wills that outlive a node).
struct StoredWill {
  std::string topic;
  std::string payload;
  std::uint8_t qos = 0;
  bool retain = false;
};
struct StoredSession {
  std::string node;  // the node that owns it ("" = nobody: offline)
  std::string certificate_id;
  std::string session_id;  // AWS's sessionIdentifier of the live connection
  bool connected = false;
  bool lifecycle_events = false;     // whether its disconnect is announced
  std::uint32_t expiry_seconds = 0;  // 0 = clean session (forgotten at disconnect)
  std::int64_t disconnected_at_ms = 0;
  std::vector<std::pair<std::string, std::uint8_t>> subscriptions;  // filter, QoS
  std::optional<StoredWill> will;
  std::uint64_t replay_from = 0;  // QoS 1 messages at or after this stream position may be due
};

class ClusterLink {
 public:
  // The broker, as the link sees it.
  class Node {
   public:
    virtual ~Node() = default;
    // A message published on another node, for this node's subscribers (not shared ones).
    virtual void deliver_remote(MessagePtr msg) = 0;
    // This node was picked for one delivery to the shared subscription `share_filter`.
    virtual void deliver_shared(const std::string& share_filter, MessagePtr msg) = 0;
    // Another connection now owns `client_id` (revision): close ours if it is older.
    // `done` runs once the local connection (if any) is closed.
    virtual void owner_changed(const std::string& client_id, std::uint64_t revision,
                               std::function<void()> done) = 0;
    // This node may no longer own any session (cut off from the cluster): close every
    // connection. Deliveries stop until the link says it is healthy again.
    virtual void fence(const std::string& why) = 0;
  };

  struct Claim {
    bool ok = false;
    bool throttled = false;                 // refused because the client id is taken over in a loop
    std::string reason;                     // why not (the CONNACK's reason string)
    std::uint64_t revision = 0;             // the fencing token: the record's revision
    std::optional<StoredSession> previous;  // its stored session, if it had one
    std::vector<MessagePtr> replay;         // QoS 1 messages it may have missed (previous)
  };

  virtual ~ClusterLink() = default;

  virtual void attach(Node* node) = 0;
  // Called when the first local subscription with this exact filter (possibly $share/...) is
  // made, and when the last one goes.
  virtual void add_interest(const std::string& filter) = 0;
  virtual void remove_interest(const std::string& filter) = 0;
  // A message published on this node, for the other nodes (and shared subscriptions anywhere).
  // `stored(true)` when it is where a node's death cannot lose it (QoS 1: replicated; a
  // retained message: stored as the topic's retained message too), false when it could not
  // be stored (the publisher gets no success PUBACK).
  virtual void publish(const MessagePtr& msg, std::function<void(bool stored)> stored) = 0;
  // Makes this node the owner of `client_id` for `session` (compare-and-set); closes the
  // previous owner's connection first.
  virtual void claim(const std::string& client_id, const StoredSession& session,
                     std::function<void(Claim)> done) = 0;
  // Writes the session again (subscriptions changed, disconnected) if `revision` still owns
  // it; false = this node lost the record (the caller closes the connection).
  virtual void save(const std::string& client_id, std::uint64_t revision,
                    const StoredSession& session, std::function<void(bool owned)> done) = 0;
  // The session ended (clean session, expired): deleted if `revision` still owns it.
  virtual void forget(const std::string& client_id, std::uint64_t revision) = 0;
  // The retained message of a topic (publish() stores them, replicated), or nullptr.
  virtual void retained(const std::string& topic, std::function<void(MessagePtr)> done) = 0;
  // Why new connects are refused now (cut off from the cluster), or nothing.
  virtual std::optional<std::string> unavailable() const = 0;
  // False while this node may not deliver to its sessions (fenced: another node may own them).
  virtual bool owns_sessions() const = 0;
};

}  // namespace fk::broker
