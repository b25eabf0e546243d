#include "broker/broker.h"

#include <array>
#include <boost/asio.hpp>
#include <cstdio>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include "base/clock.h"
#include "base/log.h"
#include "base/metrics.h"
#include "broker/cluster_link.h"
#include "broker/subscription_trie.h"
#include "mqtt/codec.h"
#include "mqtt/topic.h"

namespace fk::broker {

namespace asio = boost::asio;
using SteadyClock = std::chrono::steady_clock;
// Timers on a shard's io_context: its own executor type is 8 bytes where asio::steady_timer's
// any_io_executor is 56 (kept in the timer and in each pending wait).
using Timer = asio::basic_waitable_timer<SteadyClock, asio::wait_traits<SteadyClock>,
                                         asio::io_context::executor_type>;
using mqtt::Version;

namespace {

constexpr std::size_t kPacketOverhead = 4096;  // topic, properties and headers

double seconds_since(SteadyClock::time_point t) {
  return std::chrono::duration<double>(SteadyClock::now() - t).count();
}

std::uint64_t random_word() {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  return rng();
}

std::string random_suffix() {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(random_word()));
  return buf;
}

// AWS counts the slashes of a topic without the `$aws/rules/<rule>/` prefix.
std::size_t counted_slashes(std::string_view topic) {
  constexpr std::string_view kRules = "$aws/rules/";
  if (topic.substr(0, kRules.size()) == kRules) {
    std::size_t end = topic.find('/', kRules.size());
    if (end != std::string_view::npos) topic = topic.substr(end + 1);
  }
  return mqtt::count_levels_separators(topic);
}

}  // namespace

struct PendingDelivery {
  MessagePtr message;
  std::uint8_t qos = 0;
  bool retain = false;
};

// What a waiting message counts against its session's byte budget (the message itself may be
// shared with other sessions; each is charged as if it held its own copy).
std::size_t held_size(const PendingDelivery& d) {
  const Message& m = *d.message;
  return m.topic.size() + m.payload.size() + 64;
}

// QoS 1 messages waiting for a session. Most sessions never queue one: an empty queue holds
// no memory (libstdc++'s std::deque allocates ~600 bytes when constructed), and a drained one
// gives it back.
class MessageQueue {
 public:
  bool empty() const { return !q_ || q_->empty(); }
  std::size_t size() const { return q_ ? q_->size() : 0; }
  PendingDelivery& front() { return q_->front(); }
  void pop_front() {
    q_->pop_front();
    if (q_->empty()) q_.reset();
  }
  void push_back(PendingDelivery d) { get().push_back(std::move(d)); }
  void push_front(PendingDelivery d) { get().push_front(std::move(d)); }
  void clear() { q_.reset(); }
  std::deque<PendingDelivery>::iterator begin() { return get().begin(); }
  std::deque<PendingDelivery>::iterator end() { return get().end(); }

 private:
  std::deque<PendingDelivery>& get() {
    if (!q_) q_ = std::make_unique<std::deque<PendingDelivery>>();
    return *q_;
  }
  std::unique_ptr<std::deque<PendingDelivery>> q_;
};

// Subscriptions and undelivered messages that outlive a connection (persistent sessions).
// held_bytes is the held_size() of every message in inflight and queue.
struct SessionState {
  Version version = Version::kV311;
  std::map<std::string, SubscriptionOptions> subscriptions;
  std::map<std::uint16_t, PendingDelivery> inflight;
  MessageQueue queue;
  std::size_t held_bytes = 0;
};

struct Shard {
  explicit Shard(asio::io_context& c) : io(c) {}
  asio::io_context& io;
  SubscriptionTrie trie;
  std::unordered_set<std::shared_ptr<Session>> sessions;  // active and offline persistent
  std::vector<std::weak_ptr<Session>> accepted;           // every session, for shutdown()
};

struct SessionEntry {
  std::weak_ptr<Session> session;
  Shard* shard = nullptr;
  std::uint64_t version_number = 0;
};

struct Broker::Impl : std::enable_shared_from_this<Broker::Impl>, ClusterLink::Node {
  Impl(net::IoPool& p, BrokerConfig c, Authorizer& a, ReservedTopicHandler* r)
      : pool(p), config(c), authorizer(a), reserved(r) {
    for (std::size_t i = 0; i < pool.size(); ++i) {
      shards.push_back(std::make_unique<Shard>(pool.at(i)));
      shard_of[&pool.at(i)] = shards.back().get();
    }
  }

  net::IoPool& pool;
  BrokerConfig config;
  Authorizer& authorizer;
  ReservedTopicHandler* reserved;
  std::vector<std::unique_ptr<Shard>> shards;
  std::unordered_map<const asio::io_context*, Shard*> shard_of;

  std::mutex sessions_mu;
  std::unordered_map<std::string, SessionEntry> sessions;
  // Cluster: the newest revision another node claimed per client id, kept a while so that a
  // claim of ours that was overtaken is refused even when its answer comes late.
  std::unordered_map<std::string, std::pair<std::uint64_t, SteadyClock::time_point>> superseded;
  std::mutex certs_mu;
  std::unordered_multimap<std::string, std::weak_ptr<Session>> by_certificate;
  std::mutex retained_mu;
  std::unordered_map<std::string, MessagePtr> retained;
  std::size_t retained_bytes = 0;  // topic + payload of every retained message
  // AWS: one retained message per topic; an empty payload deletes it. False when storing it
  // would pass the account's retained caps (count or bytes): the caller refuses the publish.
  bool retain(const MessagePtr& msg) {
    std::lock_guard<std::mutex> lock(retained_mu);
    auto size_of = [](const Message& m) { return m.topic.size() + m.payload.size(); };
    auto it = retained.find(msg->topic);
    const std::size_t old_size = it == retained.end() ? 0 : size_of(*it->second);
    if (msg->payload.empty()) {
      if (it != retained.end()) {
        retained_bytes -= old_size;
        retained.erase(it);
      }
      return true;
    }
    const std::size_t size = size_of(*msg);
    const bool new_topic = it == retained.end();
    if ((new_topic && retained.size() >= config.max_retained_messages) ||
        retained_bytes - old_size + size > config.max_retained_bytes) {
      if (++retained_refused % 1000 == 1)
        log::warn("broker.retained_full", {{"topic", msg->topic},
                                           {"retained_messages", std::to_string(retained.size())},
                                           {"retained_bytes", std::to_string(retained_bytes)},
                                           {"refused", std::to_string(retained_refused.load())}});
      return false;
    }
    retained_bytes = retained_bytes - old_size + size;
    if (new_topic) {
      retained.emplace(msg->topic, msg);
    } else {
      it->second = msg;
    }
    return true;
  }

  // Shared subscriptions ($share/<group>/<filter>): each message goes to one online member,
  // round robin. Members live on any shard, so the groups have their own lock, taken on the
  // publish path only while at least one shared subscription exists.
  struct SharedMember {
    std::weak_ptr<Session> session;
    Shard* shard;
    std::uint8_t qos;
  };
  struct SharedGroup {
    std::string filter;  // the inner filter
    std::vector<SharedMember> members;
    std::size_t next = 0;
  };
  std::mutex shared_mu;
  std::map<std::string, SharedGroup> shared_groups;  // key: the full $share/... filter
  std::atomic<std::size_t> shared_count{0};
  void add_shared(const std::string& full, const std::string& inner,
                  const std::shared_ptr<Session>& s, Shard* shard, std::uint8_t qos);
  void remove_shared(const std::string& full, const Session* s);
  void route_shared(const MessagePtr& msg);

  std::atomic<std::uint64_t> connections{0};
  std::atomic<std::uint64_t> session_count{0};
  std::atomic<std::uint64_t> messages_in{0};
  std::atomic<std::uint64_t> messages_out{0};
  std::atomic<std::uint64_t> connects_refused{0};
  // For GET /metrics: CONNECT -> CONNACK time of accepted connects, connects by result and
  // MQTT reason, and how long a certificate event took to close its sessions.
  metrics::Histogram connect_seconds;
  metrics::LabeledCounter connects{{"result", "reason"}};
  metrics::Histogram revocation_cut_seconds;
  std::atomic<std::uint64_t> dropped_qos0{0};
  std::atomic<std::uint64_t> dropped_qos1{0};
  std::atomic<std::uint64_t> retained_refused{0};
  std::atomic<bool> shut_down{false};

  // The other nodes (nullptr: a single node). Set before the first connection.
  ClusterLink* cluster = nullptr;
  // Local subscriptions per exact filter: the link subscribes to a filter's subjects while at
  // least one session here needs it.
  std::mutex interest_mu;
  std::unordered_map<std::string, std::size_t> interest;
  void change_interest(const std::string& filter, bool add) {
    if (cluster == nullptr) return;
    std::lock_guard<std::mutex> lock(interest_mu);
    if (add) {
      if (interest[filter]++ == 0) cluster->add_interest(filter);
      return;
    }
    auto it = interest.find(filter);
    if (it == interest.end()) return;
    if (--it->second == 0) {
      interest.erase(it);
      cluster->remove_interest(filter);
    }
  }

  // ClusterLink::Node (called on the link's threads).
  void deliver_remote(MessagePtr msg) override;
  void deliver_shared(const std::string& share_filter, MessagePtr msg) override;
  void owner_changed(const std::string& client_id, std::uint64_t revision,
                     std::function<void()> done) override;
  void fence(const std::string& why) override;

  // Routes a message to every shard's subscribers (the origin shard synchronously) and, in a
  // cluster, to the other nodes; `stored` runs once it is stored where the publisher's PUBACK
  // may promise it (at once on a single node).
  void route(const MessagePtr& msg, Shard* origin_shard, const Session* origin,
             std::function<void(bool)> stored = {});
  void route_here(const MessagePtr& msg, Shard* origin_shard, const Session* origin);
  void dispatch(Shard& shard, const MessagePtr& msg, const Session* origin);
  void lifecycle(const std::string& topic, nlohmann::json event, Shard* shard);
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<Broker::Impl> broker, Shard& shard,
          std::shared_ptr<net::TlsConnection> conn)
      : b_(std::move(broker)),
        shard_(shard),
        conn_(std::move(conn)),
        reader_(b_->config.max_payload_bytes + kPacketOverhead),
        timer_(shard.io.get_executor()),
        expiry_timer_(nullptr) {
    identity_.peer = conn_->peer();
    identity_.remote_address = conn_->remote_address();
  }

  void start() {
    auto self = shared_from_this();
    conn_->start([self](std::string_view bytes) { self->on_bytes(bytes); },
                 [self](const std::string& reason) { self->on_closed(reason); });
    timer_.expires_after(std::chrono::seconds(b_->config.connect_timeout_seconds));
    timer_.async_wait([self](const boost::system::error_code& ec) {
      if (!ec && !self->connect_received_) self->drop("no CONNECT within the connect timeout");
    });
  }

  const ClientIdentity& identity() const { return identity_; }
  // Valid once the session is active (it is found by publishers only then).
  const Permissions& permissions() const { return *permissions_; }
  asio::io_context& io() { return shard_.io; }
  bool online() const { return conn_ && conn_->is_open() && active_; }
  // Readable from any thread (shared-subscription member choice).
  bool maybe_online() const { return online_flag_.load(std::memory_order_relaxed); }

  // A message routed to this session with the subscription's granted QoS.
  void deliver(const MessagePtr& msg, std::uint8_t qos, bool retain) {
    if (msg->expires_at && SteadyClock::now() >= *msg->expires_at) return;
    PendingDelivery d{msg, std::min(qos, msg->qos), retain};
    if (!online()) {
      if (d.qos == 1) enqueue(std::move(d));
      return;
    }
    if (d.qos == 0) {
      // A slow reader loses QoS 0 past its write backlog (AWS: QoS 0 is at most once).
      if (conn_->queued_bytes() > b_->config.max_write_backlog_bytes) {
        b_->dropped_qos0++;
        if (++dropped_qos0_ % 1000 == 1)
          log::warn("broker.qos0_dropped",
                    {{"client", identity_.client_id},
                     {"reason", "write backlog over " +
                                    std::to_string(b_->config.max_write_backlog_bytes) +
                                    " bytes (the device does not read)"}});
        return;
      }
      send_publish(d, 0);
      return;
    }
    // QoS 1 keeps its order: behind whatever already waits.
    enqueue(std::move(d));
    drain_queue();
  }

  // The window is open when the device has room for another unacknowledged message and its
  // write backlog is below the budget (one message always goes out when none is in flight, so
  // the PUBACK that drains the rest can come).
  bool can_send_qos1() const {
    if (state_.inflight.size() >=
        std::min<std::size_t>(b_->config.max_inflight, client_receive_maximum_))
      return false;
    return state_.inflight.empty() || conn_->queued_bytes() <= b_->config.max_write_backlog_bytes;
  }

  void drain_queue() {
    while (online() && !state_.queue.empty() && can_send_qos1()) {
      PendingDelivery d = std::move(state_.queue.front());
      state_.queue.pop_front();
      if (d.message->expires_at && SteadyClock::now() >= *d.message->expires_at) {
        state_.held_bytes -= held_size(d);
        continue;
      }
      std::uint16_t id = next_packet_id();
      send_publish(d, id);
      state_.inflight.emplace(id, std::move(d));  // still held: counted until its PUBACK
    }
  }

  // Queues a QoS 1 message within the session's budgets (count and bytes); the oldest waiting
  // message makes room, and a message larger than what is left is dropped itself.
  void enqueue(PendingDelivery d) {
    const std::size_t size = held_size(d);
    const auto& c = b_->config;
    auto full = [&] {
      return state_.queue.size() >= c.max_queued_messages ||
             state_.held_bytes + size > c.max_queued_bytes;
    };
    while (!state_.queue.empty() && full()) {
      state_.held_bytes -= held_size(state_.queue.front());
      state_.queue.pop_front();
      note_qos1_dropped();
    }
    if (full()) {
      note_qos1_dropped();
      return;
    }
    state_.held_bytes += size;
    state_.queue.push_back(std::move(d));
  }

  void note_qos1_dropped() {
    b_->dropped_qos1++;
    if (++dropped_ % 1000 == 1)
      log::warn("broker.queue_full",
                {{"client", identity_.client_id},
                 {"queued", std::to_string(state_.queue.size())},
                 {"queued_bytes", std::to_string(state_.held_bytes)},
                 {"limits", std::to_string(b_->config.max_queued_messages) + " messages, " +
                                std::to_string(b_->config.max_queued_bytes) + " bytes"},
                 {"dropped", std::to_string(dropped_)}});
  }

  // A live message routed to this session. It counts against the per-connection publish rate
  // with the connection's own publishes (AWS: "inbound and outbound publish requests", the
  // excess discarded); offline queueing and redelivery on resume do not count.
  void deliver_live(const MessagePtr& msg, std::uint8_t qos, bool retain) {
    if (online() && !within_rate()) {
      if (++throttled_out_ % 1000 == 1)
        log::warn("broker.delivery_throttled",
                  {{"client", identity_.client_id},
                   {"limit_per_s", std::to_string(b_->config.max_publishes_per_second)},
                   {"discarded", std::to_string(throttled_out_)}});
      return;
    }
    deliver(msg, qos, retain);
  }

  // Server-initiated end (revoked certificate, takeover, ...).
  void kick(std::uint8_t reason_v5, const std::string& why, const char* lifecycle_reason) {
    if (!conn_ || !conn_->is_open()) return;
    lifecycle_reason_ = lifecycle_reason;
    FK_LOG_INFO("broker.disconnect", {{"client", identity_.client_id},
                                      {"certificate", identity_.certificate().certificate_id},
                                      {"reason", why}});
    if (active_ && version_ == Version::kV5) {
      mqtt::Disconnect d;
      d.reason_code = reason_v5;
      conn_->write(mqtt::encode(version_, d));
    }
    conn_->close_after_write(why);
  }

  void close_for_shutdown() {
    // A single node keeps sessions in memory only; a cluster keeps persistent ones stored.
    if (b_->cluster == nullptr) session_expiry_ = 0;
    if (conn_ && conn_->is_open()) {
      if (active_ && version_ == Version::kV5) {
        mqtt::Disconnect d;
        d.reason_code = mqtt::reason::kServerShuttingDown;
        conn_->write(mqtt::encode(version_, d));
      }
      lifecycle_reason_ = "SERVER_INITIATED_DISCONNECT";
      conn_->close("server shutting down");
    }
  }

  // Hands this session's state to a new connection with the same client id (on this thread).
  std::optional<SessionState> surrender(bool resume) {
    surrendered_ = true;
    if (expiry_timer_) expiry_timer_->cancel();
    if (conn_ && conn_->is_open())
      kick(mqtt::reason::kSessionTakenOver, "client id taken over", "DUPLICATE_CLIENTID");
    for (const auto& [filter, o] : state_.subscriptions) uninstall(filter);
    shard_.sessions.erase(shared_from_this());
    if (!resume || session_expiry_ == 0) {
      b_->session_count--;
      return std::nullopt;
    }
    b_->session_count--;
    return std::move(state_);
  }

  void activate(std::optional<SessionState> previous) {
    if (!conn_ || !conn_->is_open()) return;  // gone while waiting
    const bool present = previous.has_value() && previous->version == version_ && !clean_start_;
    if (present) {
      state_ = std::move(*previous);
    }
    state_.version = version_;
    for (const auto& [filter, o] : state_.subscriptions) install(filter, o);
    shard_.sessions.insert(shared_from_this());
    b_->session_count++;
    active_ = true;
    online_flag_ = true;
    b_->connections++;
    b_->connect_seconds.observe(seconds_since(connect_at_));
    b_->connects.with({"accepted", "success"}).add();
    connected_at_ms_.store(epoch_ms(), std::memory_order_relaxed);
    record("connected", version_ == Version::kV5 ? "MQTT 5" : "MQTT 3.1.1",
           present ? "session resumed" : "");
    mqtt::Connack ack;
    ack.session_present = present;
    ack.reason_code = 0;
    if (version_ == Version::kV5) {
      auto& p = ack.properties;
      p.receive_maximum = b_->config.max_inflight;
      p.maximum_qos = 1;
      p.retain_available = 1;
      p.topic_alias_maximum = b_->config.topic_alias_maximum;
      p.wildcard_subscription_available = 1;
      p.subscription_identifier_available = 0;
      p.shared_subscription_available = 1;
      p.maximum_packet_size =
          static_cast<std::uint32_t>(b_->config.max_payload_bytes + kPacketOverhead);
      if (keep_alive_ != requested_keep_alive_) p.server_keep_alive = keep_alive_;
      if (session_expiry_lowered_) p.session_expiry_interval = session_expiry_;
      if (assigned_id_) p.assigned_client_identifier = identity_.client_id;
    }
    conn_->write(mqtt::encode(version_, ack));
    FK_LOG_INFO("broker.connected", {{"client", identity_.client_id},
                                     {"certificate", identity_.certificate().certificate_id},
                                     {"peer", identity_.remote_address},
                                     {"version", version_ == Version::kV5 ? "5" : "3.1.1"},
                                     {"session_present", present ? "true" : "false"}});
    touch();
    arm_keep_alive();
    // Unacknowledged and queued QoS 1 messages go out again with fresh packet identifiers.
    std::deque<PendingDelivery> pending;
    for (auto& [id, d] : state_.inflight) pending.push_back(std::move(d));
    state_.inflight.clear();
    if (!state_.queue.empty())
      for (auto& d : state_.queue) pending.push_back(std::move(d));
    state_.queue.clear();
    state_.held_bytes = 0;
    for (auto& d : pending) deliver(d.message, d.qos, d.retain);
    if (lifecycle_allowed()) {
      b_->lifecycle("$aws/events/presence/connected/" + identity_.client_id,
                    {{"clientId", identity_.client_id},
                     {"timestamp", epoch_ms()},
                     {"eventType", "connected"},
                     {"sessionIdentifier", session_id()},
                     {"principalIdentifier", identity_.certificate().certificate_id},
                     {"ipAddress", identity_.remote_address},
                     {"versionNumber", version_number_}},
                    &shard_);
    }
  }

  void set_version_number(std::uint64_t v) { version_number_ = v; }

  // For Broker::connections_of (any thread): set while connected.
  std::optional<LiveConnection> live() const {
    if (!online_flag_.load(std::memory_order_acquire)) return std::nullopt;
    return LiveConnection{identity_.client_id, identity_.certificate().certificate_id,
                          identity_.remote_address,
                          connected_at_ms_.load(std::memory_order_relaxed)};
  }

  // One entry of the device timeline (the reason a fixed word, the detail a sentence).
  void record(const char* event, std::string reason, std::string detail) {
    if (b_->config.device_events == nullptr) return;
    DeviceEvent e;
    e.certificate_id = identity_.certificate().certificate_id;
    e.client_id = identity_.client_id;
    e.source = identity_.remote_address;
    e.event = event;
    e.reason = std::move(reason);
    e.detail = std::move(detail);
    b_->config.device_events->record(std::move(e));
  }

  // new_filter: the session did not hold this filter before (counts towards the node's
  // cluster interest).
  void install(const std::string& filter, const SubscriptionOptions& o, bool new_filter = true) {
    if (new_filter) b_->change_interest(filter, true);
    if (auto shared = mqtt::parse_shared_filter(filter)) {
      b_->add_shared(filter, shared->filter, shared_from_this(), &shard_, o.qos);
    } else {
      shard_.trie.add(filter, this, o);
    }
  }
  void uninstall(const std::string& filter) {
    b_->change_interest(filter, false);
    if (mqtt::parse_shared_filter(filter)) {
      b_->remove_shared(filter, this);
    } else {
      shard_.trie.remove(filter, this);
    }
  }

 private:
  bool lifecycle_allowed() const {
    return b_->config.lifecycle_events &&
           identity_.client_id.find_first_of("+#") == std::string::npos;
  }

  void touch() { last_activity_ = SteadyClock::now(); }

  // A one-second window of at most max_publishes_per_second publishes, in and out together.
  bool within_rate() {
    const std::uint32_t limit = b_->config.max_publishes_per_second;
    return limit == 0 || publishes_.add(SteadyClock::now(), 1) <= limit;
  }

  // Inbound bytes per one-second window; past max_bytes_per_second the socket is not read
  // until the window ends (what has been read is still handled: delayed, not dropped).
  void throttle_bytes(std::size_t n) {
    const std::uint32_t limit = b_->config.max_bytes_per_second;
    if (limit == 0) return;
    const auto now = SteadyClock::now();
    if (bytes_.add(now, n) <= limit || !conn_) return;
    if (++bytes_throttled_ % 100 == 1)
      log::warn("broker.bytes_throttled", {{"client", identity_.client_id},
                                           {"limit_bytes_per_s", std::to_string(limit)},
                                           {"times", std::to_string(bytes_throttled_)}});
    conn_->pause_reading_for(std::chrono::duration_cast<std::chrono::milliseconds>(
                                 bytes_.start + std::chrono::seconds(1) - now) +
                             std::chrono::milliseconds(1));
  }

  void arm_keep_alive() {
    auto limit = std::chrono::milliseconds(static_cast<std::int64_t>(keep_alive_) * 1500);
    auto deadline = last_activity_ + limit;
    timer_.expires_at(deadline);
    std::weak_ptr<Session> weak = shared_from_this();
    timer_.async_wait([weak, limit](const boost::system::error_code& ec) {
      auto self = weak.lock();
      if (ec || !self || !self->online()) return;
      if (SteadyClock::now() - self->last_activity_ >= limit) {
        self->kick(mqtt::reason::kKeepAliveTimeout, "keep-alive timeout",
                   "MQTT_KEEP_ALIVE_TIMEOUT");
        return;
      }
      self->arm_keep_alive();
    });
  }

  std::uint16_t next_packet_id() {
    for (;;) {
      std::uint16_t id = next_id_++;
      if (next_id_ == 0) next_id_ = 1;
      if (id != 0 && !state_.inflight.count(id)) return id;
    }
  }

  void send_publish(const PendingDelivery& d, std::uint16_t packet_id) {
    const Message& m = *d.message;
    mqtt::Publish p;
    p.topic = m.topic;
    p.payload = m.payload;
    p.qos = d.qos;
    p.retain = d.retain;
    p.packet_id = packet_id;
    if (version_ == Version::kV5) {
      p.properties.payload_format_indicator = m.payload_format_indicator;
      p.properties.content_type = m.content_type;
      p.properties.response_topic = m.response_topic;
      p.properties.correlation_data = m.correlation_data;
      p.properties.user_properties = m.user_properties;
      if (m.expires_at) {
        auto left =
            std::chrono::duration_cast<std::chrono::seconds>(*m.expires_at - SteadyClock::now());
        p.properties.message_expiry_interval =
            static_cast<std::uint32_t>(std::max<std::int64_t>(1, left.count()));
      }
    }
    conn_->write(mqtt::encode(version_, p));
    b_->messages_out++;
  }

  void drop(const std::string& why) {
    log::warn("broker.connection_refused", {{"peer", identity_.remote_address},
                                            {"client", identity_.client_id},
                                            {"certificate", identity_.certificate().certificate_id},
                                            {"reason", why}});
    if (!active_) record("connect_refused", "protocol_error", why);
    if (conn_) conn_->close(why);
  }

  // A protocol violation after CONNECT: MQTT 5 gets a DISCONNECT with the reason first.
  void violation(std::uint8_t reason, const std::string& why) {
    log::warn(
        "broker.protocol_error",
        {{"client", identity_.client_id}, {"peer", identity_.remote_address}, {"reason", why}});
    lifecycle_reason_ = "CLIENT_ERROR";
    if (version_ == Version::kV5 && active_) {
      mqtt::Disconnect d;
      d.reason_code = reason;
      d.properties.reason_string = why;
      conn_->write(mqtt::encode(version_, d));
    }
    conn_->close_after_write(why);
  }

  void on_bytes(std::string_view bytes) {
    throttle_bytes(bytes.size());
    reader_.feed(bytes);
    while (conn_ && conn_->is_open()) {
      auto next = reader_.next();
      if (auto* e = std::get_if<mqtt::DecodeError>(&next)) {
        if (!connect_received_) {
          drop(e->message);
        } else {
          violation(e->reason, e->message);
        }
        return;
      }
      auto frame = std::get<std::optional<mqtt::Frame>>(next);
      if (!frame) return;
      if (!connect_received_) {
        on_connect_frame(*frame);
        continue;
      }
      if (!active_) {
        // Packets after CONNECT but before CONNACK wait: authorization is in flight.
        early_bytes_ += frame->body.size() + 2;
        if (early_bytes_ > b_->config.max_early_bytes) {
          drop("more than " + std::to_string(b_->config.max_early_bytes) +
               " bytes of packets before CONNACK");
          return;
        }
        early_.emplace_back(frame->header, std::string(frame->body));
        continue;
      }
      handle_frame(*frame);
    }
  }

  void on_connect_frame(const mqtt::Frame& frame) {
    connect_received_ = true;
    connect_at_ = SteadyClock::now();
    timer_.cancel();
    auto decoded = mqtt::decode_connect(frame);
    if (auto* e = std::get_if<mqtt::DecodeError>(&decoded)) {
      if (e->reason == mqtt::reason::kUnsupportedProtocolVersion) {
        // Answer in 3.1.1, the newest version such a client may understand.
        conn_->write(
            mqtt::encode(Version::kV311,
                         mqtt::Connack{false, mqtt::connack311::kUnacceptableProtocolVersion, {}}));
        log::warn("broker.connection_refused",
                  {{"peer", identity_.remote_address}, {"reason", e->message}});
        conn_->close_after_write(e->message);
        return;
      }
      drop(e->message);
      return;
    }
    mqtt::Connect& c = std::get<mqtt::Connect>(decoded);
    version_ = c.version;
    identity_.version = c.version;
    clean_start_ = c.clean_start;
    requested_keep_alive_ = c.keep_alive;
    keep_alive_ = c.keep_alive;
    if (keep_alive_ == 0 || keep_alive_ > b_->config.max_keep_alive)
      keep_alive_ = b_->config.max_keep_alive;
    if (keep_alive_ < b_->config.min_keep_alive) keep_alive_ = b_->config.min_keep_alive;
    if (c.version == Version::kV5) {
      session_expiry_ = c.properties.session_expiry_interval.value_or(0);
      if (c.properties.receive_maximum) client_receive_maximum_ = *c.properties.receive_maximum;
      if (c.properties.authentication_method) {
        refuse_connect(mqtt::reason::kBadUserNameOrPassword,
                       mqtt::connack311::kBadUserNameOrPassword,
                       "enhanced authentication (AUTH) is not supported");
        return;
      }
    } else {
      session_expiry_ = c.clean_start ? 0 : b_->config.default_session_expiry;
    }
    if (session_expiry_ > b_->config.max_session_expiry) {
      session_expiry_ = b_->config.max_session_expiry;
      session_expiry_lowered_ = true;
    }
    // The user name carries SDK metrics for mTLS clients (AWS ignores it): ignored.
    if (c.client_id.size() > b_->config.max_client_id_bytes) {
      refuse_connect(
          mqtt::reason::kClientIdentifierNotValid, mqtt::connack311::kIdentifierRejected,
          "client id longer than " + std::to_string(b_->config.max_client_id_bytes) + " bytes");
      return;
    }
    if (!c.client_id.empty() && c.client_id[0] == '$') {
      refuse_connect(mqtt::reason::kClientIdentifierNotValid, mqtt::connack311::kIdentifierRejected,
                     "client ids starting with '$' are reserved");
      return;
    }
    if (c.client_id.empty()) {
      if (c.version == Version::kV311 && !c.clean_start) {
        refuse_connect(0, mqtt::connack311::kIdentifierRejected,
                       "an empty client id needs clean session");
        return;
      }
      c.client_id = "$fk-" + random_suffix();
      assigned_id_ = true;
    }
    identity_.client_id = c.client_id;
    if (c.will) {
      std::string why;
      if (!topic_allowed_for_publish(c.will->topic, why)) {
        refuse_connect(mqtt::reason::kTopicNameInvalid, mqtt::connack311::kNotAuthorized,
                       "will topic: " + why);
        return;
      }
      if (c.will->payload.size() > b_->config.max_payload_bytes) {
        refuse_connect(mqtt::reason::kPacketTooLarge, mqtt::connack311::kNotAuthorized,
                       "will payload larger than the maximum");
        return;
      }
      if (c.will->qos > 1) c.will->qos = 1;  // QoS 2 is not supported; AWS treats it as 1
      will_ = std::make_unique<mqtt::Will>(std::move(*c.will));
    }
    session_id_ = {random_word(), random_word()};
    // Indexed by certificate before the connect decision, so a revocation that commits while
    // the decision is being made still finds (and cuts) this connection.
    {
      std::lock_guard<std::mutex> lock(b_->certs_mu);
      b_->by_certificate.emplace(identity_.certificate().certificate_id, weak_from_this());
      indexed_ = true;
    }
    identity_.persistent_connect = session_expiry_ > 0;
    identity_.last_will = will_ != nullptr;
    ask_authorizer();
  }

  void ask_authorizer() {
    std::weak_ptr<Session> weak = shared_from_this();
    auto conn = conn_;
    b_->authorizer.authorize_connect(identity_, [weak, conn](ConnectDecision decision) {
      conn->post([weak, decision = std::move(decision)] {
        if (auto self = weak.lock()) self->on_authorized(decision);
      });
    });
    identity_.certificate_der = std::string();  // the authorizer copied what it needs
  }

  void refuse_connect(std::uint8_t reason_v5, std::uint8_t code311, const std::string& why,
                      const char* cause = nullptr) {
    b_->connects_refused++;
    b_->connects
        .with({"refused",
               cause != nullptr
                   ? cause
                   : mqtt::reason_name(reason_v5 != 0 ? reason_v5
                                                      : mqtt::reason::kClientIdentifierNotValid)})
        .add();
    log::warn("broker.connection_refused", {{"peer", identity_.remote_address},
                                            {"client", identity_.client_id},
                                            {"certificate", identity_.certificate().certificate_id},
                                            {"reason", why}});
    record("connect_refused",
           cause != nullptr
               ? cause
               : mqtt::reason_name(reason_v5 != 0 ? reason_v5
                                                  : mqtt::reason::kClientIdentifierNotValid),
           why);
    mqtt::Connack ack;
    ack.reason_code = version_ == Version::kV5 ? reason_v5 : code311;
    if (version_ == Version::kV5) ack.properties.reason_string = why;
    conn_->write(mqtt::encode(version_, ack));
    conn_->close_after_write(why);
  }

  void on_authorized(const ConnectDecision& connect) {
    if (!conn_ || !conn_->is_open()) return;
    if (connect.wants_certificate_der && !der_given_) {
      der_given_ = true;  // once: an authorizer that asks again is answered with a refusal
      identity_.certificate_der = conn_->peer_certificate_der();
      ask_authorizer();
      return;
    }
    const AuthDecision& decision = connect.decision;
    if (!decision.allowed || !connect.permissions) {
      refuse_connect(mqtt::reason::kNotAuthorized, mqtt::connack311::kNotAuthorized,
                     decision.reason.empty() ? "not authorized" : decision.reason, decision.cause);
      return;
    }
    // Set once, before the session can be found by a publisher on another thread.
    permissions_ = connect.permissions;
    if (b_->cluster != nullptr) {
      claim_in_cluster();
      return;
    }
    register_here({});
  }

  // A cluster: the client id is claimed cluster-wide first (compare-and-set; the previous
  // owner's connection, on whatever node, is closed before this one is accepted).
  void claim_in_cluster() {
    if (auto why = b_->cluster->unavailable()) {
      refuse_connect(mqtt::reason::kServerUnavailable, mqtt::connack311::kServerUnavailable, *why);
      return;
    }
    std::weak_ptr<Session> weak = weak_from_this();
    auto conn = conn_;
    b_->cluster->claim(identity_.client_id, stored(true), [weak, conn](ClusterLink::Claim c) {
      conn->post([weak, c = std::move(c)]() mutable {
        if (auto self = weak.lock()) self->on_claimed(std::move(c));
      });
    });
  }

  void on_claimed(ClusterLink::Claim c) {
    if (!c.ok) {
      if (conn_ && conn_->is_open())
        refuse_connect(
            c.throttled ? mqtt::reason::kConnectionRateExceeded : mqtt::reason::kServerUnavailable,
            mqtt::connack311::kServerUnavailable, c.reason);
      return;
    }
    cluster_revision_ = c.revision;
    if (!conn_ || !conn_->is_open()) {
      // Closed while claiming: the record is given back.
      b_->cluster->forget(identity_.client_id, c.revision);
      return;
    }
    register_here(std::move(c));
  }

  // A newer connection elsewhere won the client id while our claim was answered: refused.
  void refuse_superseded() {
    surrendered_ = true;
    // MQTT 3.1.1: "server unavailable", which devices retry (not "identifier rejected").
    refuse_connect(mqtt::reason::kSessionTakenOver, mqtt::connack311::kServerUnavailable,
                   "client id taken over by a newer connection on another node");
  }

  // The session as the cluster stores it.
  StoredSession stored(bool connected) const {
    StoredSession s;
    s.certificate_id = identity_.certificate().certificate_id;
    s.session_id = session_id();
    s.connected = connected;
    s.lifecycle_events = lifecycle_allowed();
    s.expiry_seconds = session_expiry_;
    if (!connected) s.disconnected_at_ms = epoch_ms();
    for (const auto& [filter, o] : state_.subscriptions)
      s.subscriptions.emplace_back(filter, o.qos);
    if (connected && will_ && permissions_ &&
        permissions_->publish(will_->topic, will_->retain).allowed)
      s.will = StoredWill{will_->topic, will_->payload, will_->qos, will_->retain};
    return s;
  }

  // A persistent session's subscriptions changed: written again while this connection still
  // owns the client id; a node that lost the record closes the connection.
  void save_in_cluster() {
    if (b_->cluster == nullptr || session_expiry_ == 0) return;
    std::weak_ptr<Session> weak = weak_from_this();
    auto conn = conn_;
    b_->cluster->save(
        identity_.client_id, cluster_revision_, stored(true), [weak, conn](bool owned) {
          if (owned) return;
          conn->post([weak] {
            if (auto self = weak.lock())
              self->drop_for_cluster(mqtt::reason::kSessionTakenOver,
                                     "client id owned by a newer connection", "DUPLICATE_CLIENTID");
          });
        });
  }

  // This node no longer owns the session (taken over elsewhere, or the node is fenced): the
  // connection closes (its will and lifecycle event as for any close) and nothing of the
  // session is kept or written here.
  // `closed` runs once the connection is closed (its will and disconnect event published).
  void drop_for_cluster(std::uint8_t reason_v5, const std::string& why, const char* lifecycle,
                        std::function<void()> closed = {}) {
    if (surrendered_) {
      if (closed) closed();
      return;
    }
    surrendered_ = true;
    if (expiry_timer_) expiry_timer_->cancel();
    if (conn_ && conn_->is_open() && active_) {
      if (closed) closed_waiters_.push_back(std::move(closed));
      kick(reason_v5, why, lifecycle);
    } else {
      if (conn_ && conn_->is_open()) kick(reason_v5, why, lifecycle);
      if (closed) closed();
    }
    leave_here();
    if (shard_.sessions.erase(shared_from_this()) > 0) b_->session_count--;
  }

  // This node forgets the session: its subscriptions, and its client id if still ours.
  void leave_here() {
    for (const auto& [filter, o] : state_.subscriptions) uninstall(filter);
    state_.subscriptions.clear();
    std::lock_guard<std::mutex> lock(b_->sessions_mu);
    auto it = b_->sessions.find(identity_.client_id);
    if (it != b_->sessions.end() && it->second.session.lock().get() == this) b_->sessions.erase(it);
  }

  std::uint64_t cluster_revision() const { return cluster_revision_; }

  // Registers the client id on this node; takes over an older session here with the same id.
  void register_here(std::optional<ClusterLink::Claim> claim) {
    std::shared_ptr<Session> old;
    Shard* old_shard = nullptr;
    {
      std::lock_guard<std::mutex> lock(b_->sessions_mu);
      // Checked with the registration under one lock: a takeover that another node announces
      // either finds this session registered (and closes it) or is seen here.
      if (claim) {
        auto it = b_->superseded.find(identity_.client_id);
        if (it != b_->superseded.end() && it->second.first > claim->revision) {
          refuse_superseded();
          return;
        }
      }
      SessionEntry& e = b_->sessions[identity_.client_id];
      old = e.session.lock();
      old_shard = e.shard;
      e.session = weak_from_this();
      e.shard = &shard_;
      ++e.version_number;
      // AWS's versionNumber; in a cluster the record's revision (cluster-wide order).
      version_number_ = claim ? claim->revision : e.version_number;
    }
    auto self = shared_from_this();
    if (!old) {
      activate(claim ? from_cluster(std::move(*claim)) : std::nullopt);
    } else {
      const bool resume = !clean_start_;
      asio::post(old_shard->io, [old, self, resume] {
        auto state = old->surrender(resume);
        asio::post(self->shard_.io, [self, state = std::move(state)]() mutable {
          self->activate(std::move(state));
          self->replay_early();
        });
      });
      return;
    }
    replay_early();
  }

  void replay_early() {
    auto early = std::move(early_);
    early_.clear();
    for (auto& [header, body] : early) {
      if (!online()) return;
      mqtt::Frame f;
      f.header = header;
      f.body = body;
      f.size = body.size() + 2;
      handle_frame(f);
    }
  }

  bool topic_allowed_for_publish(std::string_view topic, std::string& why) const {
    if (topic.size() > b_->config.max_topic_bytes) {
      why = "topic longer than " + std::to_string(b_->config.max_topic_bytes) + " bytes";
      return false;
    }
    if (counted_slashes(topic) > b_->config.max_topic_slashes) {
      why = "topic has more than " + std::to_string(b_->config.max_topic_slashes) + " slashes";
      return false;
    }
    return true;
  }

  void handle_frame(const mqtt::Frame& frame) {
    auto decoded = mqtt::decode(version_, frame);
    if (auto* e = std::get_if<mqtt::DecodeError>(&decoded)) {
      violation(e->reason, e->message);
      return;
    }
    mqtt::Packet& packet = std::get<mqtt::Packet>(decoded);
    switch (mqtt::type_of(packet)) {
      case mqtt::PacketType::kPublish:
        touch();
        on_publish(std::get<mqtt::Publish>(packet));
        break;
      case mqtt::PacketType::kPuback: {
        touch();
        const auto& a = std::get<mqtt::Ack>(packet);
        if (auto it = state_.inflight.find(a.packet_id); it != state_.inflight.end()) {
          state_.held_bytes -= held_size(it->second);
          state_.inflight.erase(it);
        } else if (version_ == Version::kV5) {
          FK_LOG_DEBUG("broker.unknown_puback", {{"client", identity_.client_id}});
        }
        drain_queue();
        break;
      }
      case mqtt::PacketType::kSubscribe:
        touch();
        on_subscribe(std::get<mqtt::Subscribe>(packet));
        break;
      case mqtt::PacketType::kUnsubscribe:
        on_unsubscribe(std::get<mqtt::Unsubscribe>(packet));
        break;
      case mqtt::PacketType::kPingreq:
        touch();
        conn_->write(mqtt::encode(version_, mqtt::Pingresp{}));
        break;
      case mqtt::PacketType::kDisconnect: {
        const auto& d = std::get<mqtt::Disconnect>(packet);
        if (version_ == Version::kV5 && d.properties.session_expiry_interval) {
          if (session_expiry_ == 0 && *d.properties.session_expiry_interval > 0) {
            violation(mqtt::reason::kProtocolError,
                      "session expiry cannot be raised from 0 at DISCONNECT");
            return;
          }
          session_expiry_ =
              std::min(*d.properties.session_expiry_interval, b_->config.max_session_expiry);
        }
        client_disconnect_ = d.reason_code != mqtt::reason::kDisconnectWithWill;
        lifecycle_reason_ = "CLIENT_INITIATED_DISCONNECT";
        conn_->close("client DISCONNECT");
        break;
      }
      case mqtt::PacketType::kPubrec:
      case mqtt::PacketType::kPubrel:
      case mqtt::PacketType::kPubcomp:
        violation(mqtt::reason::kProtocolError, "QoS 2 flows are not supported");
        break;
      case mqtt::PacketType::kAuth:
        violation(mqtt::reason::kProtocolError, "AUTH is not supported");
        break;
      default:
        violation(mqtt::reason::kProtocolError,
                  std::string("a client may not send ") + mqtt::to_string(mqtt::type_of(packet)));
        break;
    }
  }

  void puback(std::uint16_t id, std::uint8_t reason, const std::string& why = {}) {
    mqtt::Ack a;
    a.type = mqtt::PacketType::kPuback;
    a.packet_id = id;
    if (version_ == Version::kV5) {
      a.reason_code = reason;
      if (!why.empty()) a.properties.reason_string = why;
    }
    conn_->write(mqtt::encode(version_, a));
  }

  void on_publish(mqtt::Publish& p) {
    if (p.qos == 2) {
      if (version_ == Version::kV5) {
        violation(mqtt::reason::kQosNotSupported, "QoS 2 is not supported (Maximum QoS is 1)");
      } else {
        log::warn("broker.qos2_ignored", {{"client", identity_.client_id}, {"topic", p.topic}});
      }
      return;
    }
    if (version_ == Version::kV5 && p.properties.topic_alias) {
      const std::uint16_t alias = *p.properties.topic_alias;
      if (alias == 0 || alias > b_->config.topic_alias_maximum) {
        violation(mqtt::reason::kTopicAliasInvalid, "topic alias out of range");
        return;
      }
      if (p.topic.empty()) {
        const std::string* known = nullptr;
        if (aliases_) {
          if (auto it = aliases_->find(alias); it != aliases_->end()) known = &it->second;
        }
        if (known == nullptr) {
          violation(mqtt::reason::kProtocolError, "unknown topic alias");
          return;
        }
        p.topic = *known;
      } else {
        if (!aliases_)
          aliases_ = std::make_unique<std::unordered_map<std::uint16_t, std::string>>();
        (*aliases_)[alias] = p.topic;
      }
    }
    if (!p.properties.subscription_identifiers.empty()) {
      violation(mqtt::reason::kProtocolError,
                "a client PUBLISH may not carry subscription identifiers");
      return;
    }
    std::string why;
    if (!topic_allowed_for_publish(p.topic, why)) {
      violation(mqtt::reason::kTopicNameInvalid, why);
      return;
    }
    if (p.payload.size() > b_->config.max_payload_bytes) {
      violation(mqtt::reason::kPacketTooLarge,
                "payload larger than " + std::to_string(b_->config.max_payload_bytes) + " bytes");
      return;
    }
    if (!within_rate()) {
      if (++throttled_ % 1000 == 1)
        log::warn("broker.publish_throttled",
                  {{"client", identity_.client_id},
                   {"limit_per_s", std::to_string(b_->config.max_publishes_per_second)},
                   {"discarded", std::to_string(throttled_)}});
      // Acknowledged so the client does not resend it; MQTT 5 says why.
      if (p.qos == 1) puback(p.packet_id, mqtt::reason::kMessageRateTooHigh);
      return;
    }
    b_->messages_in++;
    auto msg = std::make_shared<Message>();
    msg->topic = std::move(p.topic);
    msg->payload = std::move(p.payload);
    msg->qos = p.qos;
    msg->retain = p.retain;
    msg->origin_client_id = identity_.client_id;
    if (version_ == Version::kV5) {
      msg->payload_format_indicator = p.properties.payload_format_indicator;
      msg->content_type = std::move(p.properties.content_type);
      msg->response_topic = std::move(p.properties.response_topic);
      msg->correlation_data = std::move(p.properties.correlation_data);
      msg->user_properties = std::move(p.properties.user_properties);
      if (p.properties.message_expiry_interval) {
        std::uint32_t s = std::min<std::uint32_t>(*p.properties.message_expiry_interval, 604800);
        msg->expires_at = SteadyClock::now() + std::chrono::seconds(s);
      }
    }
    // Reserved request topics go to their handler; replies come back to this session only.
    if (msg->topic[0] == '$') {
      if (b_->reserved && b_->reserved->handles(msg->topic)) {
        if (msg->retain) {
          refuse_publish(p.packet_id, "retained messages are not allowed on reserved topics");
          return;
        }
        AuthDecision d = permissions_->publish(msg->topic, false);
        if (!d.allowed) {
          refuse_publish(p.packet_id, d.reason);
          return;
        }
        if (p.qos == 1) puback(p.packet_id, 0);
        std::weak_ptr<Session> weak = weak_from_this();
        auto conn = conn_;
        b_->reserved->on_request(identity_, *msg, [weak, conn](Message reply) {
          auto shared = std::make_shared<const Message>(std::move(reply));
          conn->post([weak, shared] {
            if (auto self = weak.lock()) self->deliver_reply(shared);
          });
        });
        return;
      }
      refuse_publish(p.packet_id, "publishing to reserved topic " + msg->topic + " is not allowed");
      return;
    }
    AuthDecision d = permissions_->publish(msg->topic, msg->retain);
    if (!d.allowed) {
      refuse_publish(p.packet_id, d.reason);
      return;
    }
    MessagePtr shared = msg;
    if (shared->retain && !b_->retain(shared)) {
      // AWS: the account's retained-message cap answers as throttled; the message is neither
      // stored nor forwarded, and the connection stays.
      if (p.qos == 1) puback(p.packet_id, mqtt::reason::kQuotaExceeded, "retained message quota");
      return;
    }
    if (p.qos == 0 || b_->cluster == nullptr) {
      // A single node: handed to its subscribers here, acknowledged at once.
      b_->route(shared, &shard_, this);
      if (p.qos == 1) puback(p.packet_id, 0);
      return;
    }
    // A cluster: PUBACK once the message is stored where a node's death cannot lose it.
    std::weak_ptr<Session> weak = weak_from_this();
    auto conn = conn_;
    b_->route(shared, &shard_, this, [weak, conn, id = p.packet_id](bool stored) {
      conn->post([weak, id, stored] {
        auto self = weak.lock();
        if (!self || !self->online()) return;
        if (stored) {
          self->puback(id, 0);
          return;
        }
        // Not stored: MQTT 5 says so; MQTT 3.1.1 has no failed PUBACK, so the connection
        // closes and the device sends the message again after reconnecting.
        const std::string not_stored = "the message could not be stored (cluster unavailable)";
        if (self->version_ == Version::kV5) {
          self->puback(id, mqtt::reason::kUnspecifiedError, not_stored);
        } else {
          self->lifecycle_reason_ = "SERVER_INITIATED_DISCONNECT";
          self->conn_->close(not_stored);
        }
      });
    });
  }

  // Not authorized: MQTT 5 answers 0x87 (QoS 1) or drops (QoS 0); MQTT 3.1.1 closes, as AWS.
  void refuse_publish(std::uint16_t packet_id, const std::string& why) {
    log::warn("broker.publish_refused", {{"client", identity_.client_id}, {"reason", why}});
    if (version_ == Version::kV5) {
      if (packet_id != 0) puback(packet_id, mqtt::reason::kNotAuthorized, why);
      return;
    }
    lifecycle_reason_ = "FORBIDDEN_ACCESS";
    conn_->close(why);
  }

  void deliver_reply(const MessagePtr& reply) {
    if (!online()) return;
    if (AuthDecision d = permissions_->receive(reply->topic); !d.allowed) {
      log::warn("broker.reply_refused", {{"client", identity_.client_id}, {"reason", d.reason}});
      return;
    }
    for (const auto& [filter, o] : state_.subscriptions) {
      if (mqtt::topic_matches(filter, reply->topic, false)) {
        deliver(reply, o.qos, false);
        return;
      }
    }
    FK_LOG_INFO("broker.reply_dropped", {{"client", identity_.client_id},
                                         {"topic", reply->topic},
                                         {"reason", "no matching subscription"}});
  }

  void on_subscribe(mqtt::Subscribe& s) {
    if (version_ == Version::kV5 && !s.properties.subscription_identifiers.empty()) {
      violation(mqtt::reason::kSubscriptionIdentifiersNotSupported,
                "subscription identifiers are not supported");
      return;
    }
    const bool v5 = version_ == Version::kV5;
    for (const auto& sub : s.subscriptions) {
      if (sub.qos == 2 && !v5) {
        // AWS: a QoS 2 SUBSCRIBE on MQTT 3.1.1 gets no SUBACK.
        log::warn("broker.qos2_subscribe_ignored",
                  {{"client", identity_.client_id}, {"filter", sub.filter}});
        return;
      }
    }
    mqtt::Suback ack;
    ack.packet_id = s.packet_id;
    std::vector<std::string> subscribed;
    std::vector<std::pair<std::string, std::uint8_t>> retained_to_send;
    for (std::size_t i = 0; i < s.subscriptions.size(); ++i) {
      const auto& sub = s.subscriptions[i];
      auto fail = [&](std::uint8_t v5_reason, const std::string& why) {
        log::warn("broker.subscribe_refused",
                  {{"client", identity_.client_id}, {"filter", sub.filter}, {"reason", why}});
        ack.reason_codes.push_back(v5 ? v5_reason : 0x80);
      };
      if (i >= b_->config.max_filters_per_subscribe) {
        fail(mqtt::reason::kQuotaExceeded,
             "more than " + std::to_string(b_->config.max_filters_per_subscribe) +
                 " filters in one SUBSCRIBE");
        continue;
      }
      if (!mqtt::valid_topic_filter(sub.filter)) {
        fail(mqtt::reason::kTopicFilterInvalid, "invalid topic filter");
        continue;
      }
      auto shared = mqtt::parse_shared_filter(sub.filter);
      if (shared && (shared->group.empty() || shared->group.size() > 128)) {
        fail(mqtt::reason::kTopicFilterInvalid,
             "invalid shared subscription ($share/<name>/<filter>)");
        continue;
      }
      // AWS does not count the $share/<name>/ prefix against its limits.
      const std::string& limited = shared ? shared->filter : sub.filter;
      if (limited.size() > b_->config.max_topic_bytes ||
          counted_slashes(limited) > b_->config.max_topic_slashes) {
        fail(mqtt::reason::kTopicFilterInvalid, "topic filter longer than AWS's limits");
        continue;
      }
      if (!shared && sub.filter[0] == '$' && sub.filter.rfind("$aws/", 0) != 0 &&
          sub.filter.rfind("$fleetkey/", 0) != 0) {
        fail(mqtt::reason::kTopicFilterInvalid, "only $aws/ and $fleetkey/ reserved topics exist");
        continue;
      }
      AuthDecision d = permissions_->subscribe(sub.filter);
      if (!d.allowed) {
        if (!v5) {
          log::warn(
              "broker.subscribe_refused",
              {{"client", identity_.client_id}, {"filter", sub.filter}, {"reason", d.reason}});
          lifecycle_reason_ = "FORBIDDEN_ACCESS";
          conn_->close(d.reason);  // AWS closes a 3.1.1 connection on an unauthorized SUBSCRIBE
          return;
        }
        fail(mqtt::reason::kNotAuthorized, d.reason);
        continue;
      }
      const bool existed = state_.subscriptions.count(sub.filter) > 0;
      if (!existed && state_.subscriptions.size() >= b_->config.max_subscriptions_per_connection) {
        fail(mqtt::reason::kQuotaExceeded,
             "more than " + std::to_string(b_->config.max_subscriptions_per_connection) +
                 " subscriptions");
        continue;
      }
      SubscriptionOptions o{std::min<std::uint8_t>(sub.qos, 1), v5 && sub.no_local,
                            v5 && sub.retain_as_published};
      state_.subscriptions[sub.filter] = o;
      install(sub.filter, o, !existed);
      ack.reason_codes.push_back(o.qos);
      subscribed.push_back(sub.filter);
      const bool wildcard = sub.filter.find_first_of("+#") != std::string::npos;
      const bool send_retained =
          v5 ? (sub.retain_handling == 0 || (sub.retain_handling == 1 && !existed)) : true;
      // AWS: no retained delivery to wildcard or shared subscriptions.
      if (!wildcard && !shared && send_retained) retained_to_send.emplace_back(sub.filter, o.qos);
    }
    conn_->write(mqtt::encode(version_, ack));
    if (!subscribed.empty()) save_in_cluster();
    // AWS sends a retained message only to a filter equal to its topic, with RETAIN=1.
    for (const auto& [topic, qos] : retained_to_send) {
      if (b_->cluster != nullptr) {
        // Replicated: a retained PUBLISH acknowledged on any node is seen here.
        std::weak_ptr<Session> weak = weak_from_this();
        auto conn = conn_;
        b_->cluster->retained(topic, [weak, conn, topic = topic, qos = qos](MessagePtr m) {
          if (!m) return;
          conn->post([weak, m, topic, qos] {
            auto self = weak.lock();
            if (self && self->online() && self->permissions_->receive(topic).allowed)
              self->deliver(m, qos, true);
          });
        });
        continue;
      }
      MessagePtr m;
      {
        std::lock_guard<std::mutex> lock(b_->retained_mu);
        auto it = b_->retained.find(topic);
        if (it != b_->retained.end()) m = it->second;
      }
      if (m && permissions_->receive(topic).allowed) deliver(m, qos, true);
    }
    if (!subscribed.empty() && lifecycle_allowed()) {
      b_->lifecycle("$aws/events/subscriptions/subscribed/" + identity_.client_id,
                    {{"clientId", identity_.client_id},
                     {"timestamp", epoch_ms()},
                     {"eventType", "subscribed"},
                     {"sessionIdentifier", session_id()},
                     {"principalIdentifier", identity_.certificate().certificate_id},
                     {"topics", subscribed}},
                    &shard_);
    }
  }

  void on_unsubscribe(const mqtt::Unsubscribe& u) {
    mqtt::Unsuback ack;
    ack.packet_id = u.packet_id;
    std::vector<std::string> removed;
    for (const auto& f : u.filters) {
      if (state_.subscriptions.erase(f) > 0) {
        uninstall(f);
        ack.reason_codes.push_back(mqtt::reason::kSuccess);
        removed.push_back(f);
      } else {
        ack.reason_codes.push_back(mqtt::reason::kNoSubscriptionExisted);
      }
    }
    conn_->write(mqtt::encode(version_, ack));
    if (!removed.empty()) save_in_cluster();
    if (!removed.empty() && lifecycle_allowed()) {
      b_->lifecycle("$aws/events/subscriptions/unsubscribed/" + identity_.client_id,
                    {{"clientId", identity_.client_id},
                     {"timestamp", epoch_ms()},
                     {"eventType", "unsubscribed"},
                     {"sessionIdentifier", session_id()},
                     {"principalIdentifier", identity_.certificate().certificate_id},
                     {"topics", removed}},
                    &shard_);
    }
  }

  void on_closed(const std::string& reason) {
    timer_.cancel();
    // Whoever waits for this connection's end (a takeover on another node) hears of it last.
    struct RunWaiters {
      std::vector<std::function<void()>>& waiters;
      ~RunWaiters() {
        auto w = std::move(waiters);
        for (auto& f : w) f();
      }
    } run_waiters{closed_waiters_};
    if (indexed_) {
      indexed_ = false;
      std::lock_guard<std::mutex> lock(b_->certs_mu);
      auto [it, end] = b_->by_certificate.equal_range(identity_.certificate().certificate_id);
      while (it != end) {
        auto other = it->second.lock();
        it = (!other || other.get() == this) ? b_->by_certificate.erase(it) : std::next(it);
      }
    }
    if (!active_) return;  // never connected: nothing more to undo
    active_ = false;
    online_flag_ = false;
    b_->connections--;
    FK_LOG_INFO("broker.disconnected", {{"client", identity_.client_id}, {"reason", reason}});
    record("disconnected", lifecycle_reason_ != nullptr ? lifecycle_reason_ : "CONNECTION_LOST",
           reason);
    if (will_ && !client_disconnect_) publish_will();
    if (lifecycle_allowed()) {
      const std::string_view reason_text =
          lifecycle_reason_ != nullptr ? lifecycle_reason_ : "CONNECTION_LOST";
      const bool by_client = reason_text == "CLIENT_INITIATED_DISCONNECT";
      b_->lifecycle("$aws/events/presence/disconnected/" + identity_.client_id,
                    {{"clientId", identity_.client_id},
                     {"timestamp", epoch_ms()},
                     {"eventType", "disconnected"},
                     {"sessionIdentifier", session_id()},
                     {"principalIdentifier", identity_.certificate().certificate_id},
                     {"clientInitiatedDisconnect", by_client},
                     {"disconnectReason", reason_text},
                     {"versionNumber", version_number_}},
                    &shard_);
    }
    if (surrendered_) return;  // a newer connection owns the client id now
    if (session_expiry_ == 0) {
      end_session();
      return;
    }
    // Offline persistent session: keep subscriptions and queue QoS 1 messages until expiry.
    if (b_->cluster != nullptr)
      b_->cluster->save(identity_.client_id, cluster_revision_, stored(false), [](bool) {});
    for (auto& [id, d] : state_.inflight) state_.queue.push_front(std::move(d));
    state_.inflight.clear();
    if (!expiry_timer_) expiry_timer_ = std::make_unique<Timer>(shard_.io.get_executor());
    expiry_timer_->expires_after(std::chrono::seconds(session_expiry_));
    std::weak_ptr<Session> weak = shared_from_this();
    expiry_timer_->async_wait([weak](const boost::system::error_code& ec) {
      if (auto self = weak.lock(); self && !ec && !self->surrendered_) self->end_session();
    });
  }

  void end_session() {
    if (b_->cluster != nullptr && cluster_revision_ != 0)
      b_->cluster->forget(identity_.client_id, cluster_revision_);
    leave_here();
    surrendered_ = true;
    b_->session_count--;
    shard_.sessions.erase(shared_from_this());
  }

  void publish_will() {
    auto msg = std::make_shared<Message>();
    msg->topic = will_->topic;
    msg->payload = will_->payload;
    msg->qos = will_->qos;
    msg->retain = will_->retain;
    msg->origin_client_id = identity_.client_id;
    msg->content_type = will_->properties.content_type;
    msg->response_topic = will_->properties.response_topic;
    msg->correlation_data = will_->properties.correlation_data;
    msg->user_properties = will_->properties.user_properties;
    msg->payload_format_indicator = will_->properties.payload_format_indicator;
    if (will_->properties.message_expiry_interval)
      msg->expires_at =
          SteadyClock::now() + std::chrono::seconds(*will_->properties.message_expiry_interval);
    if (!permissions_ || !permissions_->publish(msg->topic, msg->retain).allowed) return;
    const std::uint32_t delay = will_->properties.will_delay_interval.value_or(0);
    will_.reset();
    auto b = b_;
    Shard* shard = &shard_;
    auto fire = [b, shard, msg] {
      if (msg->retain && !b->retain(msg)) return;  // past the retained caps (logged)
      b->route(msg, shard, nullptr);
    };
    if (delay == 0) {
      fire();
      return;
    }
    auto t = std::make_shared<asio::steady_timer>(shard_.io, std::chrono::seconds(delay));
    t->async_wait([t, fire](const boost::system::error_code& ec) {
      if (!ec) fire();
    });
  }

  // A session stored by the cluster (its node died or it was taken over from another node):
  // its subscriptions, and the QoS 1 messages it may have missed queued again.
  std::optional<SessionState> from_cluster(ClusterLink::Claim claim) {
    if (!claim.previous || clean_start_ || claim.previous->expiry_seconds == 0) return std::nullopt;
    SessionState st;
    st.version = version_;
    for (const auto& [filter, qos] : claim.previous->subscriptions)
      st.subscriptions[filter] = SubscriptionOptions{qos, false, false};
    for (auto& m : claim.replay) {
      std::uint8_t qos = 0;
      for (const auto& [filter, o] : st.subscriptions)
        if (mqtt::topic_matches(filter, m->topic, false)) qos = std::max(qos, o.qos);
      if (qos > 0) st.queue.push_back(PendingDelivery{std::move(m), qos, false});
    }
    return st;
  }

  std::shared_ptr<Broker::Impl> b_;
  Shard& shard_;
  std::shared_ptr<net::TlsConnection> conn_;
  mqtt::FrameReader reader_;
  Timer timer_;
  std::unique_ptr<Timer> expiry_timer_;  // only once a persistent session is offline
  ClientIdentity identity_;
  PermissionsPtr permissions_;            // set when the connect is allowed; never changed after
  SteadyClock::time_point connect_at_{};  // when CONNECT arrived (the connect latency metric)
  Version version_ = Version::kV311;
  bool connect_received_ = false;
  bool der_given_ = false;  // the authorizer asked for the certificate's DER and got it
  bool active_ = false;
  std::atomic<bool> online_flag_{false};
  std::atomic<std::int64_t> connected_at_ms_{0};
  bool surrendered_ = false;
  bool indexed_ = false;  // listed in by_certificate
  bool clean_start_ = true;
  bool assigned_id_ = false;
  bool client_disconnect_ = false;
  bool session_expiry_lowered_ = false;
  const char* lifecycle_reason_ =
      nullptr;  // AWS's disconnectReason (a literal); null = CONNECTION_LOST
  std::uint16_t keep_alive_ = 0;
  std::uint16_t requested_keep_alive_ = 0;
  std::uint32_t session_expiry_ = 0;
  std::uint16_t client_receive_maximum_ = 65535;
  std::uint16_t next_id_ = 1;
  std::uint64_t version_number_ = 0;
  std::uint64_t cluster_revision_ = 0;  // the fencing token of this session's cluster record
  std::vector<std::function<void()>> closed_waiters_;
  std::uint64_t dropped_ = 0;  // QoS 1 messages this session's budgets dropped
  std::uint64_t dropped_qos0_ = 0;
  std::uint64_t throttled_ = 0;
  std::uint64_t throttled_out_ = 0;
  // Per-connection limits count in fixed one-second windows (AWS's "per second").
  struct Window {
    SteadyClock::time_point start{};
    std::uint64_t total = 0;
    // Adds n and returns the window's total so far (a new window once a second has passed).
    std::uint64_t add(SteadyClock::time_point now, std::uint64_t n) {
      if (now - start >= std::chrono::seconds(1)) {
        start = now;
        total = 0;
      }
      return total += n;
    }
  };
  Window publishes_, bytes_;
  std::uint64_t bytes_throttled_ = 0;
  // AWS's sessionIdentifier: 128 random bits, printed as 32 hex digits when an event needs it.
  std::array<std::uint64_t, 2> session_id_{};
  std::string session_id() const {
    char buf[33];
    std::snprintf(buf, sizeof buf, "%016llx%016llx",
                  static_cast<unsigned long long>(session_id_[0]),
                  static_cast<unsigned long long>(session_id_[1]));
    return buf;
  }
  SteadyClock::time_point last_activity_;
  std::unique_ptr<mqtt::Will> will_;  // most devices have none: not 568 bytes each
  SessionState state_;
  // MQTT 5 topic aliases, made at the first one (most devices never send one).
  std::unique_ptr<std::unordered_map<std::uint16_t, std::string>> aliases_;
  std::vector<std::pair<std::uint8_t, std::string>> early_;
  std::size_t early_bytes_ = 0;

  friend struct Broker::Impl;
};

void Broker::Impl::dispatch(Shard& shard, const MessagePtr& msg, const Session* origin) {
  // One delivery per session, at the highest QoS of its matching subscriptions.
  std::unordered_map<Session*, SubscriptionOptions> targets;
  shard.trie.match(msg->topic, [&](Session* s, const SubscriptionOptions& o) {
    if (o.no_local && s == origin) return;
    auto [it, inserted] = targets.emplace(s, o);
    if (!inserted) {
      it->second.qos = std::max(it->second.qos, o.qos);
      it->second.retain_as_published = it->second.retain_as_published || o.retain_as_published;
    }
  });
  for (auto& [s, o] : targets) {
    if (!s->permissions().receive(msg->topic).allowed) continue;
    s->deliver_live(msg, o.qos, o.retain_as_published && msg->retain);
  }
}

void Broker::Impl::add_shared(const std::string& full, const std::string& inner,
                              const std::shared_ptr<Session>& s, Shard* shard, std::uint8_t qos) {
  std::lock_guard<std::mutex> lock(shared_mu);
  SharedGroup& g = shared_groups[full];
  g.filter = inner;
  for (auto& m : g.members) {
    if (m.session.lock() == s) {
      m.qos = qos;
      return;
    }
  }
  g.members.push_back({s, shard, qos});
  ++shared_count;
}

void Broker::Impl::remove_shared(const std::string& full, const Session* s) {
  std::lock_guard<std::mutex> lock(shared_mu);
  auto it = shared_groups.find(full);
  if (it == shared_groups.end()) return;
  auto& members = it->second.members;
  for (auto m = members.begin(); m != members.end();) {
    auto live = m->session.lock();
    if (!live || live.get() == s) {
      m = members.erase(m);
      --shared_count;
    } else {
      ++m;
    }
  }
  if (members.empty()) shared_groups.erase(it);
}

void Broker::Impl::route_shared(const MessagePtr& msg) {
  std::vector<std::pair<std::shared_ptr<Session>, SharedMember>> picks;
  {
    std::lock_guard<std::mutex> lock(shared_mu);
    for (auto& [full, g] : shared_groups) {
      if (!mqtt::topic_matches(g.filter, msg->topic, /*hash_matches_parent=*/false)) continue;
      // Round robin over the members that are online now.
      for (std::size_t tried = 0; tried < g.members.size(); ++tried) {
        SharedMember& m = g.members[g.next++ % g.members.size()];
        auto s = m.session.lock();
        if (s && s->maybe_online()) {
          picks.emplace_back(std::move(s), m);
          break;
        }
      }
    }
  }
  for (auto& [s, m] : picks) {
    auto self = shared_from_this();
    asio::post(m.shard->io, [self, s = s, msg, qos = m.qos] {
      if (!s->permissions().receive(msg->topic).allowed) return;
      s->deliver_live(msg, qos, false);
    });
  }
}

void Broker::Impl::route(const MessagePtr& msg, Shard* origin_shard, const Session* origin,
                         std::function<void(bool)> stored) {
  if (cluster == nullptr) {
    if (shared_count.load(std::memory_order_relaxed) > 0) route_shared(msg);
    route_here(msg, origin_shard, origin);
    if (stored) stored(true);
    return;
  }
  // Shared subscriptions are cluster-wide: the link picks the node (this one included).
  route_here(msg, origin_shard, origin);
  cluster->publish(
      msg, stored ? std::move(stored) : [](bool) {});
}

void Broker::Impl::route_here(const MessagePtr& msg, Shard* origin_shard, const Session* origin) {
  // A fenced node delivers nothing: its sessions may be owned elsewhere now.
  if (cluster != nullptr && !cluster->owns_sessions()) return;
  auto self = shared_from_this();
  for (auto& shard : shards) {
    if (shard.get() == origin_shard) continue;
    Shard* s = shard.get();
    // A shard with no subscription that could match is not woken (lifecycle events of every
    // connect and disconnect, most of all).
    if (!s->trie.may_match(msg->topic)) continue;
    asio::post(s->io, [self, s, msg] { self->dispatch(*s, msg, nullptr); });
  }
  if (origin_shard != nullptr) dispatch(*origin_shard, msg, origin);
}

void Broker::Impl::deliver_remote(MessagePtr msg) {
  route_here(msg, nullptr, nullptr);
}

void Broker::Impl::deliver_shared(const std::string& share_filter, MessagePtr msg) {
  std::shared_ptr<Session> pick;
  SharedMember member{};
  {
    std::lock_guard<std::mutex> lock(shared_mu);
    auto it = shared_groups.find(share_filter);
    if (it == shared_groups.end()) return;
    SharedGroup& g = it->second;
    if (!mqtt::topic_matches(g.filter, msg->topic, /*hash_matches_parent=*/false)) return;
    for (std::size_t tried = 0; tried < g.members.size() && !pick; ++tried) {
      SharedMember& m = g.members[g.next++ % g.members.size()];
      if (auto s = m.session.lock(); s && s->maybe_online()) {
        pick = std::move(s);
        member = m;
      }
    }
  }
  if (!pick) return;
  asio::post(member.shard->io, [s = pick, msg, qos = member.qos] {
    if (!s->online() || !s->permissions().receive(msg->topic).allowed) return;
    s->deliver_live(msg, qos, false);
  });
}

void Broker::Impl::owner_changed(const std::string& client_id, std::uint64_t revision,
                                 std::function<void()> done) {
  std::shared_ptr<Session> s;
  Shard* shard = nullptr;
  {
    std::lock_guard<std::mutex> lock(sessions_mu);
    const auto now = SteadyClock::now();
    if (superseded.size() > 4096)
      std::erase_if(superseded, [&](const auto& e) {
        return now - e.second.second > std::chrono::seconds(60);
      });
    auto& mark = superseded[client_id];
    mark = {std::max(mark.first, revision), now};
    if (auto it = sessions.find(client_id); it != sessions.end()) {
      s = it->second.session.lock();
      shard = it->second.shard;
    }
  }
  if (!s) {
    done();
    return;
  }
  asio::post(shard->io, [s, revision, done = std::move(done)]() mutable {
    if (s->cluster_revision() >= revision) {
      done();
      return;
    }
    s->drop_for_cluster(mqtt::reason::kSessionTakenOver,
                        "client id taken over by a connection on another node",
                        "DUPLICATE_CLIENTID", std::move(done));
  });
}

void Broker::Impl::fence(const std::string& why) {
  log::warn("broker.fenced", {{"reason", why}});
  for (auto& shard : shards) {
    Shard* s = shard.get();
    asio::post(s->io, [s, why] {
      for (auto& weak : s->accepted) {
        if (auto session = weak.lock())
          session->drop_for_cluster(mqtt::reason::kServerUnavailable, why,
                                    "SERVER_INITIATED_DISCONNECT");
      }
    });
  }
}

void Broker::Impl::lifecycle(const std::string& topic, nlohmann::json event, Shard* shard) {
  auto msg = std::make_shared<Message>();
  msg->topic = topic;
  msg->payload = event.dump();
  msg->qos = 0;
  route(msg, shard, nullptr);
}

Broker::Broker(net::IoPool& pool, BrokerConfig config, Authorizer& authorizer,
               ReservedTopicHandler* reserved)
    : impl_(std::make_shared<Impl>(pool, config, authorizer, reserved)) {}

Broker::~Broker() = default;

void Broker::write_metrics(metrics::Exposition& out) const {
  const BrokerStats s = stats();
  out.gauge("fleetkey_mqtt_connections", "Live MQTT connections on this node.",
            static_cast<double>(s.connections));
  out.gauge("fleetkey_mqtt_sessions", "Sessions on this node, connected or offline persistent.",
            static_cast<double>(s.sessions));
  out.counters("fleetkey_mqtt_connects_total",
               "MQTT CONNECTs answered, by result and MQTT reason code name.", impl_->connects);
  out.histogram("fleetkey_mqtt_connect_duration_seconds",
                "CONNECT received to CONNACK sent, accepted connects (authorization included).",
                impl_->connect_seconds);
  out.counter("fleetkey_mqtt_messages_received_total", "PUBLISH packets received from clients.",
              static_cast<double>(s.messages_in));
  out.counter("fleetkey_mqtt_messages_sent_total", "PUBLISH packets delivered to clients.",
              static_cast<double>(s.messages_out));
  out.counter("fleetkey_mqtt_messages_dropped_total", "Messages not delivered, by reason.",
              static_cast<double>(s.dropped_qos0), {{"reason", "write_backlog_full"}});
  out.counter("fleetkey_mqtt_messages_dropped_total", "Messages not delivered, by reason.",
              static_cast<double>(s.dropped_qos1), {{"reason", "session_queue_full"}});
  out.counter("fleetkey_mqtt_messages_dropped_total", "Messages not delivered, by reason.",
              static_cast<double>(s.retained_refused), {{"reason", "retained_limit"}});
  out.gauge("fleetkey_mqtt_retained_messages", "Retained messages held.",
            static_cast<double>(s.retained_messages));
  out.histogram("fleetkey_revocation_cut_duration_seconds",
                "A certificate leaving ACTIVE (registry event) to each of its sessions closed.",
                impl_->revocation_cut_seconds);
}

void Broker::publish_event(const std::string& topic, std::string payload) {
  auto msg = std::make_shared<Message>();
  msg->topic = topic;
  msg->payload = std::move(payload);
  impl_->route(msg, nullptr, nullptr);
}

void Broker::set_cluster(ClusterLink* link) {
  impl_->cluster = link;
  if (link != nullptr) link->attach(impl_.get());
}

void Broker::accept(std::shared_ptr<net::TlsConnection> connection) {
  auto it = impl_->shard_of.find(&connection->context());
  if (it == impl_->shard_of.end()) {
    connection->close("connection is not on a broker thread");
    return;
  }
  auto session = std::make_shared<Session>(impl_, *it->second, std::move(connection));
  auto& accepted = it->second->accepted;
  if (accepted.size() > 1024 && accepted.size() % 1024 == 0) {
    std::erase_if(accepted, [](const std::weak_ptr<Session>& w) { return w.expired(); });
  }
  accepted.push_back(session);
  session->start();
}

void Broker::disconnect_certificate(const std::string& certificate_id, const std::string& reason) {
  std::vector<std::shared_ptr<Session>> hit;
  {
    std::lock_guard<std::mutex> lock(impl_->certs_mu);
    auto range = impl_->by_certificate.equal_range(certificate_id);
    for (auto i = range.first; i != range.second; ++i) {
      if (auto s = i->second.lock()) hit.push_back(std::move(s));
    }
  }
  const auto started = SteadyClock::now();
  for (auto& s : hit) {
    asio::post(s->io(), [s, reason, started, impl = impl_] {
      s->kick(mqtt::reason::kNotAuthorized, reason, "AUTH_ERROR");
      impl->revocation_cut_seconds.observe(seconds_since(started));
    });
  }
}

std::vector<LiveConnection> Broker::connections_of(const std::string& certificate_id) const {
  std::vector<std::shared_ptr<Session>> hit;
  {
    std::lock_guard<std::mutex> lock(impl_->certs_mu);
    auto range = impl_->by_certificate.equal_range(certificate_id);
    for (auto i = range.first; i != range.second; ++i)
      if (auto s = i->second.lock()) hit.push_back(std::move(s));
  }
  std::vector<LiveConnection> out;
  for (const auto& s : hit)
    if (auto l = s->live()) out.push_back(std::move(*l));
  return out;
}

void Broker::shutdown() {
  if (impl_->shut_down.exchange(true)) return;
  std::vector<std::future<void>> done;
  for (auto& shard : impl_->shards) {
    auto p = std::make_shared<std::promise<void>>();
    done.push_back(p->get_future());
    Shard* s = shard.get();
    asio::post(s->io, [s, p] {
      for (auto& weak : s->accepted) {
        if (auto session = weak.lock()) session->close_for_shutdown();
      }
      s->accepted.clear();
      s->sessions.clear();
      p->set_value();
    });
  }
  for (auto& f : done) f.wait();
}

BrokerStats Broker::stats() const {
  BrokerStats s;
  s.connections = impl_->connections.load();
  s.sessions = impl_->session_count.load();
  s.messages_in = impl_->messages_in.load();
  s.messages_out = impl_->messages_out.load();
  s.connects_refused = impl_->connects_refused.load();
  s.dropped_qos0 = impl_->dropped_qos0.load();
  s.dropped_qos1 = impl_->dropped_qos1.load();
  s.retained_refused = impl_->retained_refused.load();
  {
    std::lock_guard<std::mutex> lock(impl_->retained_mu);
    s.retained_messages = impl_->retained.size();
    s.retained_bytes = impl_->retained_bytes;
  }
  return s;
}

}  // namespace fk::broker
