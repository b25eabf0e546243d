#include "app/config.h"

#include <toml++/toml.h>

#include <set>

#include "base/files.h"

namespace fk::app {
namespace {

Status bad(const std::string& path, const std::string& why) {
  return invalid_request(path + ": " + why);
}

Status get_string(const toml::node& node, const std::string& path, std::string& out) {
  auto v = node.value<std::string>();
  if (!node.is_string() || !v) return bad(path, "must be a string");
  out = *v;
  return Status::ok();
}

Status get_port(const toml::node& node, const std::string& path, std::uint16_t& out) {
  if (!node.is_integer()) return bad(path, "must be an integer port number");
  auto v = *node.value<std::int64_t>();
  if (v < 0 || v > 65535)
    return bad(path, "must be 0..65535 (0 = any free port), not " + std::to_string(v));
  out = static_cast<std::uint16_t>(v);
  return Status::ok();
}

// Checks that `table` holds only `known` keys.
Status only_known(const toml::table& table, const std::string& prefix,
                  const std::set<std::string>& known) {
  for (const auto& [key, value] : table) {
    std::string k(key.str());
    if (!known.count(k)) return bad(prefix + k, "unknown setting");
  }
  return Status::ok();
}

Status parse_listener(const toml::node& node, const std::string& name, ListenerConfig& out) {
  const toml::table* t = node.as_table();
  if (t == nullptr) return bad(name, "must be a table");
  FK_RETURN_IF_ERROR(only_known(*t, name + ".", {"bind", "port"}));
  if (auto n = t->get("bind")) FK_RETURN_IF_ERROR(get_string(*n, name + ".bind", out.bind));
  if (auto n = t->get("port")) FK_RETURN_IF_ERROR(get_port(*n, name + ".port", out.port));
  return Status::ok();
}

}  // namespace

Status parse_config(std::string_view text, const std::string& source, Config& config) {
  toml::table root;
  try {  // Debian's toml++ reports syntax errors by exception; start-up only
    root = toml::parse(text, source);
  } catch (const toml::parse_error& err) {
    return invalid_request(source + ":" + std::to_string(err.source().begin.line) + ":" +
                           std::to_string(err.source().begin.column) + ": " +
                           std::string(err.description()));
  }
  FK_RETURN_IF_ERROR(only_known(root, "",
                                {"data_dir", "log_level", "mqtt", "api", "ca", "aws", "storage",
                                 "provisioning", "cluster", "rotation", "timeline"}));
  if (auto n = root.get("timeline")) {
    const toml::table* t = n->as_table();
    if (t == nullptr) return bad("timeline", "must be a table");
    FK_RETURN_IF_ERROR(
        only_known(*t, "timeline.", {"retention_days", "max_events", "per_device_per_minute"}));
    if (auto k = t->get("retention_days")) {
      auto v = k->value<std::int64_t>();
      if (!k->is_integer() || *v < 1 || *v > 3650)
        return bad("timeline.retention_days", "must be an integer from 1 to 3650");
      config.timeline.retention_days = *v;
    }
    if (auto k = t->get("max_events")) {
      auto v = k->value<std::int64_t>();
      if (!k->is_integer() || *v < 100 || *v > 1'000'000'000)
        return bad("timeline.max_events", "must be an integer from 100 to 1000000000");
      config.timeline.max_events = *v;
    }
    if (auto k = t->get("per_device_per_minute")) {
      auto v = k->value<double>();
      if (!(k->is_integer() || k->is_floating_point()) || *v < 1 || *v > 6000)
        return bad("timeline.per_device_per_minute", "must be a number from 1 to 6000");
      config.timeline.per_device_per_minute = *v;
    }
  }
  if (auto n = root.get("rotation")) {
    const toml::table* t = n->as_table();
    if (t == nullptr) return bad("rotation", "must be a table");
    FK_RETURN_IF_ERROR(only_known(*t, "rotation.", {"overlap_seconds", "max_requests_per_hour"}));
    if (auto k = t->get("overlap_seconds")) {
      auto v = k->value<std::int64_t>();
      if (!k->is_integer() || *v < 1 || *v > 10LL * 365 * 86400)
        return bad("rotation.overlap_seconds", "must be an integer from 1 to 315360000 (10 years)");
      config.rotation.overlap_seconds = *v;
    }
    if (auto k = t->get("max_requests_per_hour")) {
      auto v = k->value<double>();
      if (!(k->is_integer() || k->is_floating_point()) || *v < 0 || *v > 1e6)
        return bad("rotation.max_requests_per_hour", "must be a number from 0 (no limit)");
      config.rotation.max_requests_per_hour = *v;
    }
  }
  if (auto n = root.get("provisioning")) {
    const toml::table* t = n->as_table();
    if (t == nullptr) return bad("provisioning", "must be a table");
    FK_RETURN_IF_ERROR(
        only_known(*t, "provisioning.",
                   {"max_requests_per_second", "thing_must_not_exist", "workers", "hook_timeout_ms",
                    "max_server_keys_per_second", "max_queued_requests", "max_queued_per_claim",
                    "max_requests_per_client_per_second", "jitp_first_connect"}));
    for (auto [key, out] :
         {std::pair{"max_server_keys_per_second", &config.provisioning.max_server_keys_per_second},
          std::pair{"max_requests_per_client_per_second",
                    &config.provisioning.max_requests_per_client_per_second}}) {
      auto k = t->get(key);
      if (!k) continue;
      auto v = k->value<double>();
      if (!v || *v < 0 || *v > 1e6)
        return bad(std::string("provisioning.") + key, "must be a number from 0 (no limit)");
      *out = *v;
    }
    for (auto [key, out] :
         {std::pair{"max_queued_requests", &config.provisioning.max_queued_requests},
          std::pair{"max_queued_per_claim", &config.provisioning.max_queued_per_claim}}) {
      auto k = t->get(key);
      if (!k) continue;
      auto v = k->value<std::int64_t>();
      if (!k->is_integer() || *v < 1 || *v > 1'000'000)
        return bad(std::string("provisioning.") + key, "must be an integer from 1 to 1000000");
      *out = static_cast<int>(*v);
    }
    if (auto k = t->get("hook_timeout_ms")) {
      auto v = k->value<std::int64_t>();
      if (!k->is_integer() || *v < 100 || *v > 60000)
        return bad("provisioning.hook_timeout_ms", "must be an integer from 100 to 60000");
      config.provisioning.hook_timeout_ms = static_cast<int>(*v);
    }
    if (auto k = t->get("max_requests_per_second")) {
      auto v = k->value<double>();
      if (!v || *v < 0 || *v > 1e6)
        return bad("provisioning.max_requests_per_second", "must be a number from 0 (no limit)");
      config.provisioning.max_requests_per_second = *v;
    }
    if (auto k = t->get("thing_must_not_exist")) {
      if (!k->is_boolean())
        return bad("provisioning.thing_must_not_exist", "must be true or false");
      config.provisioning.thing_must_not_exist = *k->value<bool>();
    }
    if (auto k = t->get("workers")) {
      auto v = k->value<std::int64_t>();
      if (!k->is_integer() || *v < 1 || *v > 64)
        return bad("provisioning.workers", "must be an integer from 1 to 64");
      config.provisioning.workers = static_cast<int>(*v);
    }
    if (auto k = t->get("jitp_first_connect")) {
      auto v = k->value<std::string>();
      if (!v || (*v != "refuse" && *v != "accept"))
        return bad("provisioning.jitp_first_connect", "must be \"refuse\" (AWS) or \"accept\"");
      config.provisioning.jitp_accept_first_connect = *v == "accept";
    }
  }
  if (auto n = root.get("data_dir"))
    FK_RETURN_IF_ERROR(get_string(*n, "data_dir", config.data_dir));
  if (auto n = root.get("log_level")) {
    FK_RETURN_IF_ERROR(get_string(*n, "log_level", config.log_level));
    if (config.log_level != "debug" && config.log_level != "info" && config.log_level != "warn" &&
        config.log_level != "error")
      return bad("log_level", "must be debug, info, warn or error, not '" + config.log_level + "'");
  }
  if (auto n = root.get("mqtt")) {
    const toml::table* t = n->as_table();
    if (t == nullptr) return bad("mqtt", "must be a table");
    FK_RETURN_IF_ERROR(only_known(
        *t, "mqtt.",
        {"bind", "port", "alpn_port", "threads", "max_publishes_per_second", "max_bytes_per_second",
         "enforce_policies", "max_queued_messages", "max_queued_bytes", "max_write_backlog_bytes",
         "max_retained_messages", "max_retained_bytes", "tls_engine", "tls_session_tickets",
         "max_pending_handshakes"}));
    struct Budget {
      const char* key;
      std::int64_t min, max;
      std::int64_t* out;
    };
    for (const Budget& b : {
             Budget{"max_queued_messages", 1, 1'000'000, &config.mqtt.max_queued_messages},
             Budget{"max_queued_bytes", 4096, 1LL << 32, &config.mqtt.max_queued_bytes},
             Budget{"max_write_backlog_bytes", 256 << 10, 1LL << 32,
                    &config.mqtt.max_write_backlog_bytes},
             Budget{"max_retained_messages", 0, 100'000'000, &config.mqtt.max_retained_messages},
             Budget{"max_retained_bytes", 0, 1LL << 40, &config.mqtt.max_retained_bytes},
         }) {
      auto k = t->get(b.key);
      if (!k) continue;
      const std::string path = std::string("mqtt.") + b.key;
      if (!k->is_integer()) return bad(path, "must be an integer");
      auto v = *k->value<std::int64_t>();
      if (v < b.min || v > b.max)
        return bad(path, "must be from " + std::to_string(b.min) + " to " + std::to_string(b.max));
      *b.out = v;
    }
    if (auto k = t->get("max_bytes_per_second")) {
      if (!k->is_integer()) return bad("mqtt.max_bytes_per_second", "must be an integer");
      auto v = *k->value<std::int64_t>();
      if (v != 0 && (v < 1024 || v > 1'000'000'000))
        return bad("mqtt.max_bytes_per_second", "must be 0 (no limit) or 1024 to 1000000000");
      config.mqtt.max_bytes_per_second = static_cast<int>(v);
    }
    if (auto k = t->get("enforce_policies")) {
      if (!k->is_boolean()) return bad("mqtt.enforce_policies", "must be true or false");
      config.mqtt.enforce_policies = *k->value<bool>();
    }
    if (auto k = t->get("max_publishes_per_second")) {
      if (!k->is_integer()) return bad("mqtt.max_publishes_per_second", "must be an integer");
      auto v = *k->value<std::int64_t>();
      if (v < 0 || v > 10'000'000)
        return bad("mqtt.max_publishes_per_second", "must be 0 (no limit) to 10000000");
      config.mqtt.max_publishes_per_second = static_cast<int>(v);
    }
    if (auto k = t->get("tls_engine")) {
      std::string name;
      FK_RETURN_IF_ERROR(get_string(*k, "mqtt.tls_engine", name));
      auto kind = net::parse_tls_engine(name);
      if (!kind.is_ok()) return bad("mqtt.tls_engine", kind.status().message());
      config.mqtt.tls_engine = *kind;
    }
    if (auto k = t->get("max_pending_handshakes")) {
      if (!k->is_integer()) return bad("mqtt.max_pending_handshakes", "must be an integer");
      const std::int64_t v = *k->value<std::int64_t>();
      if (v < 0 || v > 1'000'000)
        return bad("mqtt.max_pending_handshakes", "must be 0 (no limit) to 1000000");
      config.mqtt.max_pending_handshakes = static_cast<int>(v);
    }
    if (auto k = t->get("tls_session_tickets")) {
      if (!k->is_boolean()) return bad("mqtt.tls_session_tickets", "must be true or false");
      config.mqtt.tls_session_tickets = *k->value<bool>();
    }
    if (auto k = t->get("bind")) FK_RETURN_IF_ERROR(get_string(*k, "mqtt.bind", config.mqtt.bind));
    if (auto k = t->get("port")) FK_RETURN_IF_ERROR(get_port(*k, "mqtt.port", config.mqtt.port));
    if (auto k = t->get("alpn_port")) {
      if (!k->is_integer())
        return bad("mqtt.alpn_port", "must be an integer (-1 = off, 0 = any free port)");
      auto v = *k->value<std::int64_t>();
      if (v < -1 || v > 65535) return bad("mqtt.alpn_port", "must be -1..65535");
      config.mqtt.alpn_port = static_cast<int>(v);
    }
    if (auto k = t->get("threads")) {
      if (!k->is_integer()) return bad("mqtt.threads", "must be an integer");
      auto v = *k->value<std::int64_t>();
      if (v < 0 || v > 256) return bad("mqtt.threads", "must be 0 (one per core) to 256");
      config.mqtt.threads = static_cast<int>(v);
    }
  }
  if (auto n = root.get("api")) {
    const toml::table* t = n->as_table();
    if (t == nullptr) return bad("api", "must be a table");
    FK_RETURN_IF_ERROR(only_known(*t, "api.",
                                  {"bind", "port", "tls", "credentials_file",
                                   "allow_plain_http_on_network", "metrics_token"}));
    if (auto v = t->get("metrics_token")) {
      FK_RETURN_IF_ERROR(get_string(*v, "api.metrics_token", config.api.metrics_token));
      if (!config.api.metrics_token.empty() && config.api.metrics_token.size() < 16)
        return bad("api.metrics_token",
                   "must be at least 16 characters (or \"\" for loopback only)");
    }
    if (auto v = t->get("allow_plain_http_on_network")) {
      if (!v->is_boolean()) return bad("api.allow_plain_http_on_network", "must be true or false");
      config.api.allow_plain_http_on_network = *v->value<bool>();
    }
    toml::table listener;
    for (const char* k : {"bind", "port"})
      if (auto v = t->get(k)) listener.insert(k, *v);
    FK_RETURN_IF_ERROR(parse_listener(listener, "api", config.api));
    if (auto v = t->get("tls")) {
      if (!v->is_boolean()) return bad("api.tls", "must be true or false");
      config.api.tls = *v->value<bool>();
    }
    if (auto v = t->get("credentials_file"))
      FK_RETURN_IF_ERROR(get_string(*v, "api.credentials_file", config.api.credentials_file));
  }
  if (auto n = root.get("ca")) {
    const toml::table* t = n->as_table();
    if (t == nullptr) return bad("ca", "must be a table");
    FK_RETURN_IF_ERROR(only_known(*t, "ca.",
                                  {"key_type", "organization", "server_names",
                                   "device_validity_days", "crl_url", "ocsp_url"}));
    // Revocation URLs put into new device certificates: http(s)://... as clients will reach it.
    for (auto [key, out] :
         {std::pair{"crl_url", &config.ca.crl_url}, std::pair{"ocsp_url", &config.ca.ocsp_url}}) {
      if (auto k = t->get(key)) {
        const std::string name = std::string("ca.") + key;
        FK_RETURN_IF_ERROR(get_string(*k, name, *out));
        if (!out->empty() && out->rfind("http://", 0) != 0 && out->rfind("https://", 0) != 0)
          return bad(name, "must be an http:// or https:// URL");
        if (out->find_first_of(" ,;\"\n\r\t") != std::string::npos)
          return bad(name, "must be a URL without spaces, commas or semicolons");
      }
    }
    if (auto k = t->get("key_type")) {
      std::string key_type;
      FK_RETURN_IF_ERROR(get_string(*k, "ca.key_type", key_type));
      auto spec = crypto::parse_key_spec(key_type);
      if (!spec.is_ok()) return bad("ca.key_type", spec.status().message());
      if (spec->type == crypto::KeyType::kRsa && spec->rsa_bits < 3072)
        return bad("ca.key_type", "a CA's RSA key must be at least 3072 bits");
      config.ca.ca_key = *spec;
    }
    if (auto k = t->get("organization"))
      FK_RETURN_IF_ERROR(get_string(*k, "ca.organization", config.ca.organization));
    if (auto k = t->get("server_names")) {
      const toml::array* a = k->as_array();
      if (a == nullptr) return bad("ca.server_names", "must be an array of strings");
      config.ca.server_names.clear();
      for (std::size_t i = 0; i < a->size(); ++i) {
        std::string name;
        FK_RETURN_IF_ERROR(
            get_string(*a->get(i), "ca.server_names[" + std::to_string(i) + "]", name));
        config.ca.server_names.push_back(name);
      }
    }
    if (auto k = t->get("device_validity_days")) {
      if (!k->is_integer()) return bad("ca.device_validity_days", "must be an integer");
      auto days = *k->value<std::int64_t>();
      if (days < 0 || days > 36500)
        return bad("ca.device_validity_days", "must be 0 (AWS's 2049-12-31) to 36500 days");
      config.ca.device_validity_days = static_cast<int>(days);
    }
  }
  if (auto n = root.get("aws")) {
    const toml::table* t = n->as_table();
    if (t == nullptr) return bad("aws", "must be a table");
    FK_RETURN_IF_ERROR(only_known(*t, "aws.", {"region", "account_id"}));
    if (auto k = t->get("region"))
      FK_RETURN_IF_ERROR(get_string(*k, "aws.region", config.aws.region));
    if (auto k = t->get("account_id")) {
      FK_RETURN_IF_ERROR(get_string(*k, "aws.account_id", config.aws.account_id));
      if (config.aws.account_id.size() != 12 ||
          config.aws.account_id.find_first_not_of("0123456789") != std::string::npos)
        return bad("aws.account_id", "must be 12 digits");
    }
  }
  if (auto n = root.get("storage")) {
    const toml::table* t = n->as_table();
    if (t == nullptr) return bad("storage", "must be a table");
    FK_RETURN_IF_ERROR(
        only_known(*t, "storage.",
                   {"path", "backend", "url", "schema", "node_id", "fail_closed_after_seconds"}));
    if (auto k = t->get("fail_closed_after_seconds")) {
      auto v = k->value<std::int64_t>();
      if (!k->is_integer() || *v < 1 || *v > 86400)
        return bad("storage.fail_closed_after_seconds", "must be an integer from 1 to 86400");
      config.fail_closed_after_seconds = static_cast<int>(*v);
    }
    if (auto k = t->get("node_id"))
      FK_RETURN_IF_ERROR(get_string(*k, "storage.node_id", config.node_id));
    if (auto k = t->get("path"))
      FK_RETURN_IF_ERROR(get_string(*k, "storage.path", config.storage_path));
    if (auto k = t->get("backend")) {
      FK_RETURN_IF_ERROR(get_string(*k, "storage.backend", config.storage_backend));
      if (config.storage_backend != "sqlite" && config.storage_backend != "postgres")
        return bad("storage.backend",
                   "must be \"sqlite\" or \"postgres\", not '" + config.storage_backend + "'");
    }
    if (auto k = t->get("url"))
      FK_RETURN_IF_ERROR(get_string(*k, "storage.url", config.storage_url));
    if (auto k = t->get("schema"))
      FK_RETURN_IF_ERROR(get_string(*k, "storage.schema", config.storage_schema));
  }
  if (auto n = root.get("cluster")) {
    const toml::table* t = n->as_table();
    if (t == nullptr) return bad("cluster", "must be a table");
    FK_RETURN_IF_ERROR(only_known(*t, "cluster.",
                                  {"nats", "replicas", "heartbeat_ms", "lease_ms", "dead_after_ms",
                                   "stream_max_age_seconds"}));
    ClusterConfig& c = config.cluster;
    c.enabled = true;
    if (auto k = t->get("nats")) FK_RETURN_IF_ERROR(get_string(*k, "cluster.nats", c.nats));
    if (c.nats.empty()) return bad("cluster.nats", "the NATS servers' URLs are required");
    auto integer = [&](const char* key, std::int64_t lo, std::int64_t hi, auto& out) -> Status {
      auto k = t->get(key);
      if (!k) return Status::ok();
      auto v = k->value<std::int64_t>();
      if (!k->is_integer() || *v < lo || *v > hi)
        return bad(std::string("cluster.") + key,
                   "must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi));
      out = static_cast<std::remove_reference_t<decltype(out)>>(*v);
      return Status::ok();
    };
    FK_RETURN_IF_ERROR(integer("replicas", 1, 5, c.replicas));
    FK_RETURN_IF_ERROR(integer("heartbeat_ms", 100, 10000, c.heartbeat_ms));
    FK_RETURN_IF_ERROR(integer("lease_ms", 500, 60000, c.lease_ms));
    FK_RETURN_IF_ERROR(integer("dead_after_ms", 1000, 600000, c.dead_after_ms));
    FK_RETURN_IF_ERROR(integer("stream_max_age_seconds", 60, 30 * 86400, c.stream_max_age_seconds));
    if (c.lease_ms < 2 * c.heartbeat_ms)
      return bad("cluster.lease_ms", "must be at least twice cluster.heartbeat_ms");
    if (c.dead_after_ms <= c.lease_ms)
      return bad("cluster.dead_after_ms", "must be longer than cluster.lease_ms");
    if (config.storage_backend != "postgres")
      return bad("cluster", "needs the shared registry: storage.backend = \"postgres\"");
  }
  return Status::ok();
}

Status load_config_file(const std::string& path, Config& config) {
  auto text = read_file(path);
  if (!text.is_ok()) return invalid_request("--config " + path + ": cannot read the file");
  return parse_config(*text, path, config);
}

}  // namespace fk::app
