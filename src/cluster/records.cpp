#include "cluster/records.h"

#include <chrono>
#include <nlohmann/json.hpp>

#include "codec/bounded_json.h"

namespace fk::cluster {

namespace {

using nlohmann::json;

json binary(std::string_view s) {
  return json::binary(std::vector<std::uint8_t>(s.begin(), s.end()));
}

std::string to_string(const json& j) {
  if (j.is_binary()) return std::string(j.get_binary().begin(), j.get_binary().end());
  if (j.is_string()) return j.get<std::string>();
  throw json::type_error::create(302, "expected bytes", &j);
}

std::string dump(const json& j) {
  auto bytes = json::to_cbor(j);
  return std::string(bytes.begin(), bytes.end());
}

std::optional<json> load(std::string_view bytes, std::size_t max_bytes) {
  auto doc = codec::parse_cbor(bytes, codec::JsonLimits{8, max_bytes});
  if (!doc.is_ok() || !doc->is_object()) return std::nullopt;
  return std::move(doc).value();
}

}  // namespace

std::string encode_envelope(const std::string& node, std::uint64_t id, const broker::Message& m) {
  json j = {{"n", node},  {"i", id},       {"t", m.topic},           {"p", binary(m.payload)},
            {"q", m.qos}, {"r", m.retain}, {"o", m.origin_client_id}};
  if (m.payload_format_indicator) j["pf"] = *m.payload_format_indicator;
  if (m.content_type) j["ct"] = *m.content_type;
  if (m.response_topic) j["rt"] = *m.response_topic;
  if (m.correlation_data) j["cd"] = binary(*m.correlation_data);
  if (!m.user_properties.empty()) j["up"] = m.user_properties;
  if (m.expires_at) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    *m.expires_at - std::chrono::steady_clock::now())
                    .count();
    j["ex"] = std::max<std::int64_t>(left, 0);
  }
  return dump(j);
}

std::optional<Envelope> decode_envelope(std::string_view bytes, std::size_t max_payload) {
  auto j = load(bytes, max_payload + 64 * 1024);
  if (!j) return std::nullopt;
  try {
    auto m = std::make_shared<broker::Message>();
    Envelope e;
    e.node = j->at("n").get<std::string>();
    e.id = j->at("i").get<std::uint64_t>();
    m->topic = j->at("t").get<std::string>();
    m->payload = to_string(j->at("p"));
    m->qos = j->at("q").get<std::uint8_t>();
    m->retain = j->at("r").get<bool>();
    m->origin_client_id = j->at("o").get<std::string>();
    if (m->topic.empty() || m->qos > 1) return std::nullopt;
    if (j->contains("pf")) m->payload_format_indicator = j->at("pf").get<std::uint8_t>();
    if (j->contains("ct")) m->content_type = j->at("ct").get<std::string>();
    if (j->contains("rt")) m->response_topic = j->at("rt").get<std::string>();
    if (j->contains("cd")) m->correlation_data = to_string(j->at("cd"));
    if (j->contains("up")) m->user_properties = j->at("up").get<mqtt::UserProperties>();
    if (j->contains("ex"))
      m->expires_at = std::chrono::steady_clock::now() +
                      std::chrono::milliseconds(j->at("ex").get<std::int64_t>());
    e.message = std::move(m);
    return e;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

std::string encode_session(const broker::StoredSession& s, std::uint64_t epoch,
                           const TakeoverCount& takeovers) {
  json subs = json::array();
  for (const auto& [filter, qos] : s.subscriptions) subs.push_back({filter, qos});
  json j = {{"node", s.node},
            {"cert", s.certificate_id},
            {"sid", s.session_id},
            {"on", s.connected},
            {"lc", s.lifecycle_events},
            {"exp", s.expiry_seconds},
            {"off", s.disconnected_at_ms},
            {"subs", subs},
            {"from", s.replay_from},
            {"epoch", epoch},
            {"tk", {takeovers.count, takeovers.window_start_ms, takeovers.blocked_until_ms}}};
  if (s.will)
    j["will"] = {{"t", s.will->topic},
                 {"p", binary(s.will->payload)},
                 {"q", s.will->qos},
                 {"r", s.will->retain}};
  return dump(j);
}

std::optional<SessionRecord> decode_session(std::string_view bytes) {
  auto j = load(bytes, 512 * 1024);
  if (!j) return std::nullopt;
  try {
    SessionRecord r;
    auto& s = r.session;
    s.node = j->at("node").get<std::string>();
    s.certificate_id = j->at("cert").get<std::string>();
    s.session_id = j->at("sid").get<std::string>();
    s.connected = j->at("on").get<bool>();
    s.lifecycle_events = j->at("lc").get<bool>();
    s.expiry_seconds = j->at("exp").get<std::uint32_t>();
    s.disconnected_at_ms = j->at("off").get<std::int64_t>();
    for (const auto& sub : j->at("subs"))
      s.subscriptions.emplace_back(sub.at(0).get<std::string>(), sub.at(1).get<std::uint8_t>());
    s.replay_from = j->at("from").get<std::uint64_t>();
    r.epoch = j->at("epoch").get<std::uint64_t>();
    if (j->contains("tk")) {
      const auto& t = j->at("tk");
      r.takeovers = TakeoverCount{t.at(0).get<std::uint32_t>(), t.at(1).get<std::int64_t>(),
                                  t.at(2).get<std::int64_t>()};
    }
    if (j->contains("will")) {
      const auto& w = j->at("will");
      s.will = broker::StoredWill{w.at("t").get<std::string>(), to_string(w.at("p")),
                                  w.at("q").get<std::uint8_t>(), w.at("r").get<bool>()};
    }
    return r;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

std::string encode_node(const NodeRecord& n) {
  return dump({{"alive", n.alive}, {"at", n.at_ms}, {"by", n.by}});
}

std::optional<NodeRecord> decode_node(std::string_view bytes) {
  auto j = load(bytes, 4096);
  if (!j) return std::nullopt;
  try {
    return NodeRecord{j->at("alive").get<bool>(), j->at("at").get<std::int64_t>(),
                      j->at("by").get<std::string>()};
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

}  // namespace fk::cluster
