// fleetkeyd's configuration: one TOML file parsed into per-part structs. Every setting has a
// documented default (docs/configuration.md); command-line flags override the file. Every
// error names the setting's path, and an unknown setting is an error (a typo must not be
// silently ignored).
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "crypto/openssl/openssl_certificate_authority.h"
#include "net/tls/tls_engine.h"
#include "registry/arn.h"

namespace fk::app {

struct ListenerConfig {
  std::string bind;
  std::uint16_t port = 0;
};

// [api]: the control-plane listener.
struct ApiListenerConfig : ListenerConfig {
  bool tls = false;  // https with the server certificate (the one the MQTT ports use)
  // An AWS shared-credentials file whose every profile is a further access key the API
  // accepts (besides the generated admin key); "" = none.
  std::string credentials_file;
  // Plain HTTP on an address other than loopback sends every signed admin request (and the
  // private keys CreateKeysAndCertificate returns) in clear: refused unless this is true.
  bool allow_plain_http_on_network = false;
  // GET /metrics: "" = loopback clients only; else scrapes must bring this bearer token.
  std::string metrics_token;
};

struct MqttConfig : ListenerConfig {
  // AWS's port-443 mode: MQTT over TLS with ALPN x-amzn-mqtt-ca required. -1 = off.
  int alpn_port = 443;
  int threads = 0;                        // I/O threads; 0 = one per core
  int max_publishes_per_second = 100;     // per connection, as AWS; 0 = no limit
  int max_bytes_per_second = 512 * 1024;  // inbound per connection, as AWS; 0 = no limit
  // IoT policies decide connect, publish, subscribe and receive (AWS). false: an ACTIVE
  // certificate may do anything (benchmarks of the broker alone).
  bool enforce_policies = true;
  // Memory budgets (docs/configuration.md): QoS 1 messages waiting per session (count, bytes),
  // unread bytes per connection (QoS 0 dropped past it, closed at twice it), retained messages
  // of the account (count, bytes).
  std::int64_t max_queued_messages = 1000;
  std::int64_t max_queued_bytes = 1 << 20;
  std::int64_t max_write_backlog_bytes = 2 << 20;
  std::int64_t max_retained_messages = 100000;
  std::int64_t max_retained_bytes = 256 << 20;
  // The TLS library of the MQTT ports (docs/decisions.md: chosen by measurement) and whether
  // a full handshake issues a session ticket (cheaper reconnects, dearer first connects).
  net::TlsEngineKind tls_engine = net::TlsEngineKind::kGnuTls;
  bool tls_session_tickets = true;
  int max_pending_handshakes = 1024;  // past it connections wait in the accept backlog
};

struct ProvisioningConfig {
  double max_requests_per_second = 50;    // per claim certificate; 0 = no limit
  bool thing_must_not_exist = true;       // RegisterThing never takes over an existing thing
  int workers = 2;                        // threads that sign and commit provisioning requests
  int hook_timeout_ms = 5000;             // the pre-provisioning hook must answer within (AWS: 5 s)
  double max_server_keys_per_second = 2;  // CreateKeysAndCertificate per claim; 0 = no limit
  double max_requests_per_client_per_second = 5;  // per connection of a claim; 0 = no limit
  int max_queued_requests = 1024;                 // waiting for a worker, in all (then Throttled)
  int max_queued_per_claim = 256;                 // waiting for a worker, per claim certificate
  // JITP: the connect that provisioned a device goes on ("accept") instead of being refused so
  // that the device reconnects ("refuse", AWS's way).
  bool jitp_accept_first_connect = false;
};

// [cluster]: the nodes sharing a PostgreSQL registry are one MQTT service over NATS
// JetStream (docs/cluster.md). Absent: a single node's in-process broker, no NATS.
struct ClusterConfig {
  bool enabled = false;
  std::string nats;  // comma-separated nats:// URLs of the NATS servers
  int replicas = 3;  // of the JetStream stream and buckets
  int heartbeat_ms = 1000;
  int lease_ms = 5000;       // cut off this long (and a peer silent): the node fences itself
  int dead_after_ms = 8000;  // a node silent this long is declared dead (wills published)
  std::int64_t stream_max_age_seconds = 24 * 3600;  // how long QoS 1 messages can be replayed
};

// [rotation]: certificate rotation over $fleetkey/certificates/rotate and the API
// (docs/rotation.md).
struct RotationSettings {
  std::int64_t overlap_seconds = 7 * 86400;  // the old certificate stays ACTIVE at most this long
  double max_requests_per_hour = 6;          // per certificate; 0 = no limit
};

// [timeline]: the device timeline's bounds (docs/timeline.md).
struct TimelineConfig {
  std::int64_t retention_days = 30;
  std::int64_t max_events = 1'000'000;  // in the whole table
  double per_device_per_minute = 30;    // after a burst of as many
  std::size_t queue_limit = 10'000;     // events waiting to be written (not configurable)
};

struct Config {
  std::string data_dir = "./fleetkey-data";
  std::string log_level = "info";  // debug, info, warn, error
  // Devices connect here. Every member is named in order (a positional list once put `true`
  // into a new member); Config.DefaultsAreAws's checks them.
  MqttConfig mqtt{{"0.0.0.0", 8883},
                  /*alpn_port=*/443,
                  /*threads=*/0,
                  /*max_publishes_per_second=*/100,
                  /*max_bytes_per_second=*/512 * 1024,
                  /*enforce_policies=*/true};
  ApiListenerConfig api{{"127.0.0.1", 8443}, false, "", false, ""};  // the control-plane API
  ProvisioningConfig provisioning;                                   // [provisioning]
  crypto::CaConfig ca;       // [ca] key_type, organization, server_names, ...
  registry::ArnScope aws;    // [aws] region, account_id
  std::string storage_path;  // [storage] path; "" = <data_dir>/registry.db
  // [storage] backend: "sqlite" (one node, the default) or "postgres" (several nodes sharing
  // one registry; url is a libpq connection string or URL, "" = libpq's PG* variables;
  // schema "" = public).
  std::string storage_backend = "sqlite";
  std::string storage_url;
  std::string storage_schema;
  // [storage] node_id: this node's name among those sharing a PostgreSQL registry ("" = a
  // random one per start).
  std::string node_id;
  // postgres: after this long without the registry's event feed (the database unreachable),
  // new connects are refused (fail closed: the node would decide from facts it can no longer
  // check, e.g. miss a revocation); live sessions continue.
  int fail_closed_after_seconds = 30;
  ClusterConfig cluster;
  RotationSettings rotation;
  TimelineConfig timeline;  // [timeline] retention_days, max_events, per_device_per_minute

  std::string registry_path() const {
    return storage_path.empty() ? data_dir + "/registry.db" : storage_path;
  }
  std::string ca_dir() const { return data_dir + "/ca"; }
};

// Reads `path` over the defaults in `config`.
Status load_config_file(const std::string& path, Config& config);
// Parses TOML text (for tests); `source` names it in errors.
Status parse_config(std::string_view toml_text, const std::string& source, Config& config);

}  // namespace fk::app
