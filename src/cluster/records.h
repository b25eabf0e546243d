// What the nodes of a cluster write for each other: a routed message (on NATS subjects and in
// the JetStream message stream), a stored session (the client-id record in the key-value
// bucket), a node's heartbeat. CBOR (nlohmann), read back with codec's depth and size bounds:
// a record that does not decode is dropped and logged by the caller, never trusted.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "broker/cluster_link.h"
#include "broker/types.h"

namespace fk::cluster {

// A message as it crosses nodes: where it comes from (node, per-node sequence for dedupe) and
// everything MQTT carries with it. The expiry travels as the time left.
struct Envelope {
  std::string node;
  std::uint64_t id = 0;
  broker::MessagePtr message;
};
std::string encode_envelope(const std::string& node, std::uint64_t id, const broker::Message& m);
std::optional<Envelope> decode_envelope(std::string_view bytes, std::size_t max_payload);

// Takeovers of a live connection of one client id (two devices with one id reconnecting in a
// loop): counted per window, and refused until `blocked_until_ms` past the allowance.
struct TakeoverCount {
  std::uint32_t count = 0;
  std::int64_t window_start_ms = 0;
  std::int64_t blocked_until_ms = 0;
};

// The client-id record. `epoch` is the revision of the claim that made it (0 in the claim's
// own write): the fencing token a later write must still hold.
std::string encode_session(const broker::StoredSession& s, std::uint64_t epoch,
                           const TakeoverCount& takeovers = {});
struct SessionRecord {
  broker::StoredSession session;
  std::uint64_t epoch = 0;
  TakeoverCount takeovers;
};
std::optional<SessionRecord> decode_session(std::string_view bytes);

// A node's heartbeat: alive (with its wall-clock time) or handled (declared dead, its clients'
// wills published by `by`).
struct NodeRecord {
  bool alive = true;
  std::int64_t at_ms = 0;
  std::string by;
};
std::string encode_node(const NodeRecord& n);
std::optional<NodeRecord> decode_node(std::string_view bytes);

}  // namespace fk::cluster
