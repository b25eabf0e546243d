// Values the broker hands to its seams (Authorizer, ReservedTopicHandler) and routes.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "mqtt/packet.h"
#include "net/tls/tls_listener.h"

namespace fk::broker {

// Who is on the other end of a connection.
struct ClientIdentity {
  std::string client_id;
  // The TLS layer's reading of the client certificate, shared by the connection, its session
  // and its permissions (one copy per connection).
  std::shared_ptr<const net::PeerCertificate> peer;
  const net::PeerCertificate& certificate() const {
    static const net::PeerCertificate kNone;
    return peer ? *peer : kNone;
  }
  std::string remote_address;
  // The certificate's DER when the authorizer asked for it (ConnectDecision::
  // wants_certificate_der: just-in-time registration); empty in every copy kept after it.
  std::string certificate_der;
  mqtt::Version version = mqtt::Version::kV311;
  // AWS's iot:ConnectAttributes: a session that outlives the connection, and a last will.
  bool persistent_connect = false;
  bool last_will = false;
};

struct AuthDecision {
  bool allowed = false;
  std::string reason;  // for the log (and MQTT 5 reason strings)
  // A refusal's cause as a short, fixed word (a metric label: "certificate_inactive",
  // "policy_denied", ...); null: the MQTT reason code says it.
  const char* cause = nullptr;

  static AuthDecision allow() { return {true, {}, nullptr}; }
  static AuthDecision deny(std::string why, const char* cause = nullptr) {
    return {false, std::move(why), cause};
  }
};

// One application message as routed (immutable once made; shared by all its deliveries).
struct Message {
  std::string topic;
  std::string payload;
  std::uint8_t qos = 0;
  bool retain = false;
  std::string origin_client_id;
  // MQTT 5 properties that travel with the message.
  std::optional<std::uint8_t> payload_format_indicator;
  std::optional<std::string> content_type;
  std::optional<std::string> response_topic;
  std::optional<std::string> correlation_data;
  mqtt::UserProperties user_properties;
  // Message expiry: absolute deadline, when the publisher set an interval.
  std::optional<std::chrono::steady_clock::time_point> expires_at;
};
using MessagePtr = std::shared_ptr<const Message>;

}  // namespace fk::broker
