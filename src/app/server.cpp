#include "app/server.h"

#include <unistd.h>

#include <boost/asio.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "api/iot_api.h"
#include "app/policy_authorizer.h"
#include "app/provisioning_topics.h"
#include "app/revocation.h"
#include "app/timeline_recorder.h"
#include "base/files.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/strings.h"
#include "broker/broker.h"
#include "cluster/nats_link.h"
#include "crypto/hash.h"
#include "crypto/openssl/openssl_certificate_authority.h"
#include "crypto/x509.h"
#include "net/http_server.h"
#include "net/io_pool.h"
#include "net/tls/tls_listener.h"
#include "registry/registry.h"
#include "storage/postgres/postgres_store.h"
#include "storage/sqlite/sqlite_store.h"

namespace fk::app {

struct Server::Parts {
  Config config;
  Endpoints endpoints;
  std::unique_ptr<crypto::OpensslCertificateAuthority> ca;
  std::unique_ptr<storage::Store> store;
  std::unique_ptr<storage::EventFeed> event_feed;  // the other nodes' changes (postgres)
  storage::PostgresStore* postgres = nullptr;      // = store, when the backend is postgres
  std::string node_id;
  std::string instance;  // this start of the node (membership)
  std::unique_ptr<boost::asio::steady_timer> heartbeat_timer;
  // Why new connects are refused now (fail closed), or nothing.
  std::optional<std::string> connect_gate() const {
    if (!event_feed) return std::nullopt;
    const auto lost = event_feed->disconnected_for();
    if (lost < std::chrono::seconds(config.fail_closed_after_seconds)) return std::nullopt;
    return "the shared registry has been unreachable for " +
           std::to_string(std::chrono::duration_cast<std::chrono::seconds>(lost).count()) +
           " s: new connects are refused until it is back (fail closed)";
  }
  std::unique_ptr<registry::Registry> registry;
  // The device timeline: goes after everything that records into it, before the registry.
  std::unique_ptr<TimelineRecorder> timeline;
  std::unique_ptr<Revocation> revocation;  // the issuing CA's CRL and OCSP answers
  AdminCredentials admin;
  std::unique_ptr<api::IotApi> iot_api;
  std::unique_ptr<net::IoPool> api_pool;  // the API's connections and handlers
  std::unique_ptr<net::HttpServer> api;
  std::unique_ptr<net::IoPool> io_pool;
  std::unique_ptr<PolicyAuthorizer> authorizer;
  std::unique_ptr<WebhookHook> hook;
  std::unique_ptr<provisioning::FleetProvisioning> provisioning;
  std::unique_ptr<ProvisioningTopics> provisioning_topics;
  std::unique_ptr<provisioning::JustInTime> just_in_time;
  std::unique_ptr<provisioning::CertificateRotation> rotation;
  std::chrono::steady_clock::time_point provisioning_swept{};
  std::unique_ptr<boost::asio::steady_timer> sweep_timer;
  std::unique_ptr<broker::Broker> broker;
  std::unique_ptr<cluster::NatsLink> cluster;  // [cluster]: MQTT across nodes on NATS
  std::unique_ptr<net::TlsListener> mqtt;
  std::unique_ptr<net::TlsListener> mqtt_alpn;
  int listener_id = 0;
  bool stopped = false;

  // GET /metrics: every part's families, and the certificates expiring within 30 days (a
  // registry scan, made again after a certificate event, at most once a minute otherwise).
  std::atomic<bool> expiring_stale{true};
  std::mutex expiring_mu;
  std::chrono::steady_clock::time_point expiring_at{};
  std::optional<std::uint64_t> expiring_count;
  std::string prometheus_text() {
    metrics::Exposition out;
    if (broker) broker->write_metrics(out);
    for (auto* l : {mqtt.get(), mqtt_alpn.get()})
      if (l) l->write_metrics(out);
    if (provisioning) provisioning->write_metrics(out);
    if (timeline) timeline->write_metrics(out);
    out.histogram("fleetkey_registry_commit_duration_seconds",
                  "Registry COMMITs (a batch of changes each): the fsync or PostgreSQL round trip.",
                  registry->commit_durations());
    out.counter("fleetkey_registry_commits_total", "Registry COMMITs.",
                static_cast<double>(registry->commits()));
    {
      std::lock_guard<std::mutex> lock(expiring_mu);
      const auto now = std::chrono::steady_clock::now();
      if (!expiring_count || expiring_stale.exchange(false) ||
          now - expiring_at > std::chrono::minutes(1)) {
        std::uint64_t n = 0;
        const EpochSeconds limit = SystemClock::instance().now() + 30 * 86400;
        Status st = registry->read([&](registry::Txn& t) -> Status {
          storage::CertificateQuery q;
          q.page.limit = 1000;
          for (;;) {
            FK_ASSIGN_OR_RETURN(auto list, t.store().list_certificates(q));
            for (const auto& c : list)
              if (c.status == storage::CertificateStatus::kActive && c.not_after < limit) ++n;
            if (list.size() < q.page.limit) return Status::ok();
            q.page.after = storage::certificate_page_key(list.back());
          }
        });
        if (st.is_ok()) {
          expiring_count = n;
          expiring_at = now;
        }
      }
      if (expiring_count)
        out.gauge("fleetkey_certificates_expiring_soon",
                  "ACTIVE certificates whose notAfter is within 30 days (refreshed each minute).",
                  static_cast<double>(*expiring_count), {{"within", "30d"}});
    }
    return out.text();
  }

  // Our root and issuing CA, and every ACTIVE registered CA.
  std::vector<std::string> trust_anchors() {
    std::vector<std::string> pems = {ca->root_certificate().pem, ca->issuing_certificate().pem};
    (void)registry->read([&](registry::Txn& t) -> Status {
      FK_ASSIGN_OR_RETURN(auto cas, t.store().list_ca_certificates(storage::Page{}));
      for (const auto& c : cas) {
        if (c.status == storage::CertificateStatus::kActive) pems.push_back(c.pem);
      }
      return Status::ok();
    });
    return pems;
  }
};

Server::Server() : parts_(new Parts) {}
Server::~Server() {
  stop();
}

const Endpoints& Server::endpoints() const {
  return parts_->endpoints;
}
registry::Registry& Server::registry() {
  return *parts_->registry;
}

namespace {

// A refused handshake's cause as a fixed word (the TLS engines' failure() texts are OpenSSL's
// verify strings).
std::string tls_failure_cause(const std::string& why) {
  if (why.find("expired") != std::string::npos) return "certificate_expired";
  if (why.find("not yet valid") != std::string::npos) return "certificate_not_yet_valid";
  if (why.find("revoked") != std::string::npos) return "certificate_revoked";
  if (why.find("issuer") != std::string::npos || why.find("CA") != std::string::npos)
    return "unknown_ca";
  if (why.find("signature") != std::string::npos) return "bad_signature";
  return "tls_error";
}

std::string absolute(const std::string& path) {
  std::error_code ec;
  auto p = std::filesystem::absolute(path, ec);
  return ec ? path : p.lexically_normal().string();
}

}  // namespace

Result<std::unique_ptr<Server>> Server::start(const Config& config, boost::asio::io_context& io) {
  std::unique_ptr<Server> server(new Server);
  Parts& p = *server->parts_;
  p.config = config;
  p.config.data_dir = absolute(config.data_dir);
  FK_RETURN_IF_ERROR(make_dirs(p.config.data_dir, 0700));

  FK_ASSIGN_OR_RETURN(p.ca, crypto::OpensslCertificateAuthority::load_or_create(
                                p.config.ca_dir(), p.config.ca, SystemClock::instance()));
  p.node_id = p.config.node_id.empty() ? "node-" + crypto::random_hex(6) : p.config.node_id;
  storage::PostgresOptions po;
  po.url = p.config.storage_url;
  po.schema = p.config.storage_schema;
  po.node_id = p.node_id;
  if (p.config.storage_backend == "postgres") {
    auto pg = storage::PostgresStore::open(po);
    if (!pg.is_ok()) return Status(pg.status().code(), "storage.url: " + pg.status().message());
    p.postgres = pg->get();
    p.store = std::move(pg).value();
  } else {
    FK_ASSIGN_OR_RETURN(p.store, storage::SqliteStore::open(p.config.registry_path()));
  }
  registry::RegistryConfig rc;
  rc.arns = p.config.aws;
  p.registry = std::make_unique<registry::Registry>(*p.store, *p.ca, SystemClock::instance(), rc);
  p.revocation = std::make_unique<Revocation>(*p.ca, *p.registry, SystemClock::instance());
  p.timeline =
      std::make_unique<TimelineRecorder>(*p.registry, SystemClock::instance(), p.config.timeline);
  if (p.postgres) {
    // Changes other nodes commit reach this node's listeners (broker, authorizer) as its own.
    p.event_feed = std::make_unique<storage::PostgresEventFeed>(po);
    registry::Registry* reg = p.registry.get();
    if (Status st = p.event_feed->start(
            [reg](const std::vector<std::string>& payloads) { reg->publish_remote(payloads); });
        !st.is_ok())
      return Status(st.code(), "storage.url (event feed): " + st.message());
  }

  Endpoints& e = p.endpoints;
  e.credentials_path = p.config.data_dir + "/credentials";
  e.aws_config_path = p.config.data_dir + "/aws-config";
  e.root_ca_path = p.ca->paths().root_cert;
  e.registry_path = p.postgres ? "postgres" + (p.config.storage_schema.empty()
                                                   ? std::string()
                                                   : " schema " + p.config.storage_schema)
                               : absolute(p.config.registry_path());
  FK_ASSIGN_OR_RETURN(p.admin, load_or_create_admin_credentials(
                                   e.credentials_path, e.aws_config_path, p.config.aws.region));

  if (!p.config.api.tls && !is_loopback_address(p.config.api.bind)) {
    if (!p.config.api.allow_plain_http_on_network)
      return invalid_request(
          "api.bind: " + p.config.api.bind +
          " is not a loopback address and api.tls is false: admin requests and the private keys "
          "some calls return would cross the network in clear. Set api.tls = true, or "
          "api.allow_plain_http_on_network = true to accept that");
    log::warn("api.plain_http_on_network",
              {{"bind", p.config.api.bind},
               {"reason", "api.allow_plain_http_on_network = true: requests travel in clear"}});
  }
  net::HttpServerOptions api_options;
  api_options.bind_address = p.config.api.bind;
  api_options.port = p.config.api.port;
  if (p.config.api.tls) {
    api_options.tls_certificate_chain_file = p.ca->paths().server_cert;
    api_options.tls_private_key_file = p.ca->paths().server_key;
  }

  // The device endpoint: broker on an I/O pool (one thread per core), mutual TLS on the MQTT
  // port and on the ALPN port (AWS's 443 mode).
  std::size_t threads = p.config.mqtt.threads > 0
                            ? static_cast<std::size_t>(p.config.mqtt.threads)
                            : std::max(1u, std::thread::hardware_concurrency());
  p.io_pool = std::make_unique<net::IoPool>(threads);
  p.authorizer = std::make_unique<PolicyAuthorizer>(*p.registry, p.config.mqtt.enforce_policies);
  if (p.event_feed) p.authorizer->set_connect_gate([parts = &p] { return parts->connect_gate(); });
  PolicyAuthorizer* authz = p.authorizer.get();
  broker::BrokerConfig broker_config;
  broker_config.max_publishes_per_second =
      static_cast<std::uint32_t>(p.config.mqtt.max_publishes_per_second);
  broker_config.max_bytes_per_second =
      static_cast<std::uint32_t>(p.config.mqtt.max_bytes_per_second);
  broker_config.max_queued_messages = static_cast<std::size_t>(p.config.mqtt.max_queued_messages);
  broker_config.max_queued_bytes = static_cast<std::size_t>(p.config.mqtt.max_queued_bytes);
  broker_config.max_write_backlog_bytes =
      static_cast<std::size_t>(p.config.mqtt.max_write_backlog_bytes);
  broker_config.max_retained_messages =
      static_cast<std::size_t>(p.config.mqtt.max_retained_messages);
  broker_config.max_retained_bytes = static_cast<std::size_t>(p.config.mqtt.max_retained_bytes);
  broker_config.device_events = p.timeline.get();
  provisioning::FleetProvisioningConfig fp;
  fp.max_requests_per_second = p.config.provisioning.max_requests_per_second;
  fp.thing_must_not_exist = p.config.provisioning.thing_must_not_exist;
  fp.max_server_keys_per_second = p.config.provisioning.max_server_keys_per_second;
  fp.max_requests_per_client_per_second = p.config.provisioning.max_requests_per_client_per_second;
  fp.events = p.timeline.get();
  p.hook = std::make_unique<WebhookHook>(
      std::chrono::milliseconds(p.config.provisioning.hook_timeout_ms));
  FK_ASSIGN_OR_RETURN(p.provisioning, provisioning::FleetProvisioning::create(
                                          *p.registry, SystemClock::instance(), fp, p.hook.get()));
  p.rotation = std::make_unique<provisioning::CertificateRotation>(
      *p.registry, SystemClock::instance(),
      provisioning::RotationConfig{p.config.rotation.overlap_seconds,
                                   p.config.rotation.max_requests_per_hour, p.timeline.get()});
  p.authorizer->set_rotation(p.rotation.get());
  p.provisioning_topics = std::make_unique<ProvisioningTopics>(
      *p.provisioning, static_cast<std::size_t>(p.config.provisioning.workers),
      ProvisioningQueueLimits{static_cast<std::size_t>(p.config.provisioning.max_queued_requests),
                              static_cast<std::size_t>(p.config.provisioning.max_queued_per_claim)},
      p.rotation.get());
  p.broker = std::make_unique<broker::Broker>(*p.io_pool, broker_config, *p.authorizer,
                                              p.provisioning_topics.get());
  // JITR and JITP: certificates of registered CAs that allow auto-registration.
  p.just_in_time = std::make_unique<provisioning::JustInTime>(
      *p.registry, provisioning::JustInTimeConfig{p.config.provisioning.jitp_accept_first_connect},
      [b = p.broker.get()](const std::string& topic, std::string payload) {
        b->publish_event(topic, std::move(payload));
      });
  p.authorizer->set_just_in_time(p.just_in_time.get());
  // Certificates made over MQTT and never provisioned are deleted after the token's hour.
  p.sweep_timer = std::make_unique<boost::asio::steady_timer>(io);
  p.provisioning_swept = std::chrono::steady_clock::now();
  server->schedule_sweep();
  if (p.config.cluster.enabled) {
    cluster::NatsLinkOptions co;
    co.servers = p.config.cluster.nats;
    co.node_id = p.node_id;
    co.replicas = p.config.cluster.replicas;
    co.heartbeat_ms = p.config.cluster.heartbeat_ms;
    co.lease_ms = p.config.cluster.lease_ms;
    co.dead_after_ms = p.config.cluster.dead_after_ms;
    co.stream_max_age_seconds = p.config.cluster.stream_max_age_seconds;
    co.max_payload_bytes = broker_config.max_payload_bytes;
    co.max_replay = broker_config.max_queued_messages;
    auto link = cluster::NatsLink::open(co);
    if (!link.is_ok())
      return Status(link.status().code(), "cluster.nats: " + link.status().message());
    p.cluster = std::move(link).value();
    p.broker->set_cluster(p.cluster.get());
    p.cluster->start();
  }
  broker::Broker* b = p.broker.get();
  Parts* parts = &p;
  // Certificate status reaches live sessions at once, policy changes reach their permissions,
  // CA changes reach the TLS trust store.
  p.listener_id = p.registry->add_listener(
      [b, parts, authz](const std::vector<registry::RegistryEvent>& events) {
        // Forget cached decisions first, so a reconnect after a cut is refused.
        authz->on_registry_events(events);
        parts->revocation->on_registry_events(events);
        bool cas_changed = false;
        for (const auto& ev : events) {
          using K = registry::RegistryEvent::Kind;
          // A certificate just recorded has no session yet but the one whose connect made it
          // (just-in-time registration), which its refusal answers.
          if (ev.kind == K::kCertificateStatusChanged) {
            parts->expiring_stale = true;
            if (ev.status != storage::CertificateStatus::kActive && ev.detail != "created")
              b->disconnect_certificate(ev.subject, "certificate " + ev.subject + " is now " +
                                                        std::string(storage::to_string(ev.status)));
          } else if (ev.kind == K::kCertificateDeleted) {
            parts->expiring_stale = true;
            b->disconnect_certificate(ev.subject, "certificate " + ev.subject + " was deleted");
          } else if (ev.kind == K::kCaCertificateChanged) {
            cas_changed = true;
          }
        }
        if (cas_changed) {
          auto anchors = parts->trust_anchors();
          for (auto* l : {parts->mqtt.get(), parts->mqtt_alpn.get()}) {
            if (l) (void)l->set_trust_anchors(anchors);
          }
        }
      });
  net::TlsListenerConfig tls;
  tls.bind_address = p.config.mqtt.bind;
  tls.port = p.config.mqtt.port;
  tls.engine = p.config.mqtt.tls_engine;
  tls.tls.certificate_chain_file = p.ca->paths().server_cert;
  tls.tls.private_key_file = p.ca->paths().server_key;
  tls.tls.trust_anchors = p.trust_anchors();
  tls.tls.session_tickets = p.config.mqtt.tls_session_tickets;
  tls.max_pending_handshakes = p.config.mqtt.max_pending_handshakes;
  // A refused handshake that brought a certificate goes on that certificate's timeline (its id
  // is the SHA-256 of its DER, as AWS's certificate ids are).
  tls.on_handshake_failed = [t = p.timeline.get()](const std::string& remote,
                                                   const std::string& der, const std::string& why) {
    DeviceEvent refused;
    refused.certificate_id = to_hex(crypto::sha256(der));
    refused.source = remote;
    refused.event = "tls_failed";
    refused.reason = tls_failure_cause(why);
    refused.detail = "TLS handshake refused: " + why;
    t->record(std::move(refused));
  };
  auto on_connection = [b](std::shared_ptr<net::TlsConnection> c) { b->accept(std::move(c)); };
  // A connection whose peer does not read is closed at twice the broker's backlog budget.
  tls.max_write_backlog_bytes = 2 * broker_config.max_write_backlog_bytes;
  // The I/O threads run before any listener binds, so that a listener that cannot bind (the
  // port is taken) fails start-up at once and stop() finds every part able to shut down.
  p.io_pool->start();
  p.mqtt = std::make_unique<net::TlsListener>(*p.io_pool, io, tls, on_connection);
  if (Status st = p.mqtt->start(); !st.is_ok())
    return Status(st.code(), "mqtt.port: " + st.message() +
                                 " (is another broker running? choose a port with --mqtt-port)");
  if (p.config.mqtt.alpn_port >= 0) {
    net::TlsListenerConfig alpn = tls;
    alpn.port = static_cast<std::uint16_t>(p.config.mqtt.alpn_port);
    alpn.tls.required_alpn = "x-amzn-mqtt-ca";
    alpn.name = "mqtt-alpn";
    p.mqtt_alpn = std::make_unique<net::TlsListener>(*p.io_pool, io, alpn, on_connection);
    if (Status st = p.mqtt_alpn->start(); !st.is_ok())
      return Status(st.code(), "mqtt.alpn_port: " + st.message() +
                                   " (choose a port with --alpn-port, or -1 to turn it off)");
  }

  api::ApiConfig api_config;
  api_config.region = p.config.aws.region;
  api_config.credentials[p.admin.access_key_id] = p.admin.secret_access_key;
  // Further keys: every profile of [api] credentials_file.
  if (!p.config.api.credentials_file.empty()) {
    const std::string& file = p.config.api.credentials_file;
    auto text = read_file(file);
    if (!text.is_ok()) return invalid_request("api.credentials_file: " + text.status().message());
    for (const auto& profile : ini_section_names(*text)) {
      auto key = parse_shared_credentials(*text, profile);
      if (!key.is_ok()) return invalid_request(file + ": " + key.status().message());
      api_config.credentials[key->access_key_id] = key->secret_access_key;
    }
  }
  auto connect_host = [](const std::string& bind) {
    return bind == "0.0.0.0" || bind == "::" ? std::string("localhost") : bind;
  };
  e.mqtt_host = connect_host(p.config.mqtt.bind);
  api_config.mqtt_endpoint = e.mqtt_host;
  api_config.mqtt_port = p.mqtt->port();
  api_config.root_ca_pem = p.ca->root_certificate().pem;
  api_config.issuing_ca_pem = p.ca->issuing_certificate().pem;
  provisioning::FleetProvisioning* fps = p.provisioning.get();
  storage::EventFeed* feed = p.event_feed.get();
  api_config.crl = [r = p.revocation.get()] { return r->crl(); };
  api_config.ocsp = [r = p.revocation.get()](std::string_view req) { return r->ocsp(req); };
  api_config.rotation = p.rotation.get();
  api_config.metrics_token = p.config.api.metrics_token;
  api_config.console_secure_cookie = p.config.api.tls;
  api_config.prometheus = [parts = &p] { return parts->prometheus_text(); };
  api_config.health = [parts = &p, feed] {
    // role: "single" (the registry is this process's own) or "cluster-node" (shared).
    std::map<std::string, std::string> h = {{"node", parts->node_id},
                                            {"role", parts->postgres ? "cluster-node" : "single"},
                                            {"backend", parts->config.storage_backend}};
    h["eventFeed"] = feed == nullptr ? "none" : feed->connected() ? "connected" : "disconnected";
    auto gate = parts->connect_gate();
    h["mqttCluster"] = parts->cluster ? "nats" : "none";
    if (parts->cluster) {
      auto c = parts->cluster->health();
      h["nats"] = c.connected ? "connected" : "disconnected";
      h["jetstream"] = c.jetstream ? "ok" : "unavailable";
      h["sessions"] = c.owns_sessions ? "served" : "fenced";
      std::string peers;
      for (const auto& n : c.peers) peers += (peers.empty() ? "" : ",") + n;
      h["peers"] = peers;
      std::string members;
      for (const auto& n : c.members) members += (members.empty() ? "" : ",") + n;
      h["members"] = members;
      if (!gate && !c.detail.empty()) gate = c.detail;
    }
    h["connects"] = gate ? "refused: " + *gate : "accepted";
    return h;
  };
  if (p.postgres) {
    api_config.nodes = [parts = &p] {
      std::vector<std::map<std::string, std::string>> out;
      auto nodes = parts->postgres->nodes(10);
      if (!nodes.is_ok()) return out;
      const auto now = SystemClock::instance().now();
      for (const auto& n : *nodes)
        out.push_back(
            {{"node", n.node_id},
             {"api", n.api_url},
             {"mqttPort", std::to_string(n.mqtt_port)},
             {"connections", std::to_string(n.connections)},
             {"seenSecondsAgo", std::to_string(std::max<std::int64_t>(0, now - n.seen_at))}});
      return out;
    };
  }
  api_config.metrics = [fps, b] {
    auto out = fps->counters();
    std::map<std::string, std::uint64_t> m;
    for (auto& [k, v] : out) m["provisioning." + k] = v;
    broker::BrokerStats s = b->stats();
    m["broker.connections"] = s.connections;
    m["broker.sessions"] = s.sessions;
    m["broker.messages_in"] = s.messages_in;
    m["broker.messages_out"] = s.messages_out;
    m["broker.connects_refused"] = s.connects_refused;
    m["broker.dropped_qos0"] = s.dropped_qos0;
    m["broker.dropped_qos1"] = s.dropped_qos1;
    m["broker.retained_refused"] = s.retained_refused;
    m["broker.retained_messages"] = s.retained_messages;
    m["broker.retained_bytes"] = s.retained_bytes;
    return m;
  };
  api_config.flush_timeline = [t = p.timeline.get()] { t->flush(); };
  api_config.check_connect = [authz](const std::string& certificate_id,
                                     const std::string& client_id) {
    broker::AuthDecision d = authz->explain_connect(certificate_id, client_id);
    return api::ConnectCheck{d.allowed, d.cause != nullptr ? d.cause : "", d.reason};
  };
  api_config.live_connections = [b](const std::string& certificate_id) {
    std::vector<api::LiveConnectionInfo> out;
    for (auto& l : b->connections_of(certificate_id))
      out.push_back({l.client_id, l.remote_address, l.connected_at_ms});
    return out;
  };
  p.iot_api = std::make_unique<api::IotApi>(*p.registry, SystemClock::instance(), api_config);
  api::IotApi* iot = p.iot_api.get();
  // API handlers on their own threads (one per core, at least two): a slow one (RSA key
  // generation for CreateKeysAndCertificate) neither blocks the others nor an MQTT I/O thread.
  p.api_pool =
      std::make_unique<net::IoPool>(std::max<std::size_t>(2, std::thread::hardware_concurrency()));
  p.api_pool->start();
  api_options.connection_pool = p.api_pool.get();
  p.api = std::make_unique<net::HttpServer>(
      io, api_options, [iot](const net::HttpRequest& r) { return iot->handle(r); });
  if (Status st = p.api->start(); !st.is_ok())
    return Status(st.code(), "api.port: " + st.message() + " (choose a port with --api-port)");
  e.mqtt_port = p.mqtt->port();
  e.mqtt_alpn_port = p.mqtt_alpn ? p.mqtt_alpn->port() : 0;
  e.api_port = p.api->port();
  std::string api_host = connect_host(p.config.api.bind);
  if (api_host.find(':') != std::string::npos) api_host = "[" + api_host + "]";
  e.api_url = std::string(p.config.api.tls ? "https://" : "http://") + api_host + ":" +
              std::to_string(e.api_port);
  if (p.postgres) {
    // Membership: this node's row, refreshed every 2 s with its connection count; a second
    // running node with the same id is refused.
    p.instance = crypto::random_hex(8);
    storage::PostgresStore::Node self{p.node_id, p.instance, e.api_url,
                                      static_cast<std::int64_t>(e.mqtt_port)};
    if (Status st = p.postgres->join(self, 10); !st.is_ok())
      return Status(st.code(), "storage.node_id: " + st.message());
    p.heartbeat_timer = std::make_unique<boost::asio::steady_timer>(io);
    server->schedule_heartbeat();
  }
  return server;
}

// Each minute: certificates provisioning made and nobody claimed. More often when rotation
// windows are short (half the window, at least each second): rotations whose window ended.
void Server::schedule_sweep() {
  Parts* p = parts_.get();
  const auto every =
      std::chrono::seconds(std::clamp<std::int64_t>(p->config.rotation.overlap_seconds / 2, 1, 60));
  p->sweep_timer->expires_after(every);
  p->sweep_timer->async_wait([this, p](const boost::system::error_code& ec) {
    if (ec || p->stopped) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - p->provisioning_swept >= std::chrono::minutes(1)) {
      p->provisioning_swept = now;
      p->provisioning_topics->run([p] {
        registry::ActorScope actor("fleetkeyd: unclaimed provisioning certificates swept");
        (void)p->provisioning->sweep();
      });
    }
    p->provisioning_topics->run([p] {
      registry::ActorScope actor("fleetkeyd: rotation overlap window ended");
      (void)p->rotation->sweep();
    });
    schedule_sweep();
  });
}

void Server::schedule_heartbeat() {
  Parts* p = parts_.get();
  p->heartbeat_timer->expires_after(std::chrono::seconds(2));
  p->heartbeat_timer->async_wait([this, p](const boost::system::error_code& ec) {
    if (ec || p->stopped) return;
    (void)p->postgres->heartbeat(p->node_id, p->instance,
                                 static_cast<std::int64_t>(p->broker->stats().connections));
    schedule_heartbeat();
  });
}

void Server::stop() {
  if (!parts_ || parts_->stopped) return;  // once: the destructor calls it again
  parts_->stopped = true;
  if (parts_->api) parts_->api->stop();
  if (parts_->api_pool) parts_->api_pool->stop();  // joins: no handler runs after this
  if (parts_->mqtt) parts_->mqtt->stop();
  if (parts_->mqtt_alpn) parts_->mqtt_alpn->stop();
  if (parts_->sweep_timer) parts_->sweep_timer->cancel();
  if (parts_->heartbeat_timer) parts_->heartbeat_timer->cancel();
  if (parts_->provisioning_topics) parts_->provisioning_topics->stop();
  if (parts_->authorizer) parts_->authorizer->stop();
  // shutdown() waits for every I/O thread: only when they run (start-up may fail before).
  if (parts_->broker && parts_->io_pool && parts_->io_pool->started()) parts_->broker->shutdown();
  if (parts_->io_pool) parts_->io_pool->stop();
  if (parts_->cluster) parts_->cluster->stop();  // after the sessions' last writes
  if (parts_->event_feed) parts_->event_feed->stop();
  if (parts_->registry && parts_->listener_id != 0) {
    parts_->registry->remove_listener(parts_->listener_id);
    parts_->listener_id = 0;
  }
}

std::string Endpoints::to_json(const Config& config) const {
  nlohmann::json j = {
      {"mqtt",
       {{"host", mqtt_host},
        {"port", mqtt_port},
        {"alpn_port", mqtt_alpn_port},
        {"tls_engine", net::to_string(config.mqtt.tls_engine)},
        {"tls_session_tickets", config.mqtt.tls_session_tickets}}},
      {"api", {{"url", api_url}, {"port", api_port}}},
      // The issuing CA's revocation data on this node (no signature needed).
      {"crl_url", api_url + "/crl"},
      {"ocsp_url", api_url + "/ocsp"},
      {"root_ca", root_ca_path},
      {"credentials_file", credentials_path},
      {"aws_config_file", aws_config_path},
      {"registry", registry_path},
      {"region", config.aws.region},
      {"account_id", config.aws.account_id},
      {"pid", static_cast<long>(::getpid())},
  };
  return j.dump(2) + "\n";
}

}  // namespace fk::app
