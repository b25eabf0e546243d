#include "cluster/nats_link.h"

#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "base/log.h"
#include "cluster/records.h"
#include "cluster/subjects.h"
#include "codec/bounded_json.h"
#include "crypto/hash.h"

namespace fk::cluster {

namespace {

using broker::Message;
using broker::MessagePtr;
using broker::StoredSession;
using SteadyClock = std::chrono::steady_clock;

constexpr const char* kStream = "FLEETKEY_MSGS";
constexpr const char* kClients = "fleetkey_clients";
constexpr const char* kRetained = "fleetkey_retained";
constexpr const char* kNodes = "fleetkey_nodes";
// Takeovers of a live connection allowed per client id within the window before connects are
// refused (2 s, 4 s, ... at most 60 s).
constexpr std::uint32_t kTakeoversAllowed = 5;
constexpr std::int64_t kTakeoverWindowMs = 10000;

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string nats_error(natsStatus s) {
  std::string text = natsStatus_GetText(s);
  if (const char* last = nats_GetLastError(nullptr); last != nullptr && *last != '\0')
    text += std::string(": ") + last;
  return text;
}

// The bytes of a key-value entry and of a message, as views (valid while they live).
std::string_view value_of(kvEntry* e) {
  return {static_cast<const char*>(kvEntry_Value(e)),
          static_cast<std::size_t>(kvEntry_ValueLen(e))};
}
std::string_view data_of(natsMsg* m) {
  return {natsMsg_GetData(m), static_cast<std::size_t>(natsMsg_GetDataLength(m))};
}

// Threads for the blocking JetStream calls. A job has a key: jobs with the same key run in
// order on one thread (the writes of one client id never overtake each other).
class Workers {
 public:
  explicit Workers(int n) : queues_(static_cast<std::size_t>(std::max(n, 1))) {
    for (std::size_t i = 0; i < queues_.size(); ++i)
      threads_.emplace_back([this, i] { run(queues_[i]); });
  }
  ~Workers() { stop(); }
  void stop() {
    for (auto& q : queues_) {
      std::lock_guard<std::mutex> lock(q.mu);
      q.stopping = true;
      q.cv.notify_all();
    }
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }
  void post(std::string_view key, std::function<void()> job) {
    Queue& q = queues_[std::hash<std::string_view>{}(key) % queues_.size()];
    std::lock_guard<std::mutex> lock(q.mu);
    if (q.stopping) return;
    q.jobs.push_back(std::move(job));
    q.cv.notify_one();
  }

 private:
  struct Queue {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::function<void()>> jobs;
    bool stopping = false;
  };
  static void run(Queue& q) {
    while (true) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(q.mu);
        q.cv.wait(lock, [&] { return q.stopping || !q.jobs.empty(); });
        if (q.jobs.empty()) return;  // stopping, and what was posted is done
        job = std::move(q.jobs.front());
        q.jobs.pop_front();
      }
      job();
    }
  }
  std::vector<Queue> queues_;
  std::vector<std::thread> threads_;
};

// Adds a stream (an existing one is fine). Right after the servers start, or on a loaded
// machine, JetStream may still be electing its leaders or placing peers ("no suitable peers for
// placement") and the connection may still be settling: tried again for up to 30 s.
natsStatus add_stream(jsCtx* js, jsStreamConfig& cfg, jsErrCode* code) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    jsStreamInfo* si = nullptr;
    *code = static_cast<jsErrCode>(0);
    natsStatus s = js_AddStream(&si, js, &cfg, nullptr, code);
    if (si != nullptr) jsStreamInfo_Destroy(si);
    if (s == NATS_OK || *code == JSStreamNameExistErr) return NATS_OK;
    if (std::chrono::steady_clock::now() >= deadline) return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

// Creates a key-value bucket's stream ourselves, without direct gets: reads then go to the
// stream's leader and see every acknowledged write (read-your-writes across nodes).
Status ensure_bucket(jsCtx* js, const char* bucket, int replicas, kvStore** kv) {
  std::string name = std::string("KV_") + bucket;
  std::string subject = std::string("$KV.") + bucket + ".>";
  const char* subjects[] = {subject.c_str()};
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = name.c_str();
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 1;
  // A few revisions per key, so that a write can read what it really replaced (see
  // replaced_between).
  cfg.MaxMsgsPerSubject = 8;
  cfg.Storage = js_FileStorage;
  cfg.Replicas = replicas;
  cfg.AllowRollup = true;
  cfg.DenyDelete = true;
  cfg.Discard = js_DiscardNew;
  cfg.AllowDirect = false;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s = add_stream(js, cfg, &code);
  if (s != NATS_OK)
    return Status(ErrorCode::kUnavailable,
                  std::string("JetStream bucket ") + bucket + ": " + nats_error(s));
  s = js_KeyValue(kv, js, bucket);
  if (s != NATS_OK)
    return Status(ErrorCode::kUnavailable,
                  std::string("JetStream bucket ") + bucket + ": " + nats_error(s));
  return Status::ok();
}

}  // namespace

struct NatsLink::Impl : std::enable_shared_from_this<NatsLink::Impl> {
  NatsLinkOptions opt;
  natsConnection* nc = nullptr;
  natsConnection* shared_nc = nullptr;  // $share queue groups (see open())
  jsCtx* js = nullptr;
  kvStore* clients = nullptr;
  kvStore* retained_kv = nullptr;
  kvStore* nodes = nullptr;
  std::unique_ptr<Workers> workers;
  std::atomic<Node*> node{nullptr};
  std::atomic<bool> stopping{false};
  std::atomic<std::uint64_t> next_id{1};

  // Interest: the subscriptions of each filter. Callbacks find their filter by a number (a
  // subscription being removed may still deliver once: its number is then unknown).
  struct Interest {
    std::uint64_t number = 0;
    std::vector<natsSubscription*> subs;
  };
  std::mutex interest_mu;
  std::unordered_map<std::string, Interest> interest;
  std::unordered_map<std::uint64_t, std::string> shared_by_number;
  std::uint64_t next_number = 1;

  // Messages this node has seen (origin node, id): one subject may match several of this
  // node's subscriptions, and each delivers its own copy.
  std::mutex seen_mu;
  std::unordered_set<std::string> seen;
  std::deque<std::string> seen_order;

  // QoS 1 publishes waiting for JetStream's acknowledgement.
  std::mutex acks_mu;
  std::unordered_map<std::uint64_t, std::function<void(bool)>> acks;

  // Liveness.
  std::atomic<std::int64_t> last_heartbeat_ok{0};  // steady ms
  std::atomic<bool> connected{false};
  mutable std::mutex peers_mu;
  std::map<std::string, std::int64_t> heard;  // node -> wall ms of its newest core heartbeat
  std::set<std::string> known;                // nodes alive at the last scan
  std::atomic<bool> fenced{false};
  // The stream's last position at the newest heartbeat and at the one before (claims take
  // their replay position from it; a reconnect catches up from the older one).
  std::atomic<std::uint64_t> checkpoint{0}, previous_checkpoint{0};
  std::thread heartbeat_thread, alive_thread, survey_thread;
  std::mutex sleep_mu;
  std::condition_variable sleep_cv;
  natsSubscription* owner_sub = nullptr;
  natsSubscription* alive_sub = nullptr;

  static std::int64_t steady_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               SteadyClock::now().time_since_epoch())
        .count();
  }

  // ---- liveness ---------------------------------------------------------------------------

  // Some node we knew alive has not been heard within the lease (it may be on the side of a
  // partition that can still write).
  bool peer_silent() const {
    std::lock_guard<std::mutex> lock(peers_mu);
    const std::int64_t now = wall_ms();
    for (const auto& n : known) {
      if (n == opt.node_id) continue;
      auto it = heard.find(n);
      if (it == heard.end() || now - it->second > opt.lease_ms) return true;
    }
    return false;
  }

  bool heartbeat_fresh() const { return steady_ms() - last_heartbeat_ok.load() <= opt.lease_ms; }

  bool owns() const {
    if (fenced.load()) return false;
    if (heartbeat_fresh()) return true;
    // The key-value store is out of reach. If every node we know is still heard on core NATS,
    // no node can write either (JetStream lost its quorum for all): sessions stay where they
    // are. Otherwise another node may take them over: not ours to serve.
    return !peer_silent();
  }

  // Three loops (with `survey` below): `alive` never blocks (core NATS heartbeats, and the fence
  // decision, which must not wait behind a JetStream call that times out); `beat` writes the
  // heartbeat record.
  void every_heartbeat(void (Impl::*step)()) {
    while (!stopping.load()) {
      (this->*step)();
      std::unique_lock<std::mutex> lock(sleep_mu);
      sleep_cv.wait_for(lock, std::chrono::milliseconds(opt.heartbeat_ms),
                        [&] { return stopping.load(); });
    }
  }

  void alive() {
    // Cut off (or stopped) past the lease: fence before anything else happens.
    if (!fenced.load() && !owns())
      fence("this node lost the cluster for more than " + std::to_string(opt.lease_ms) + " ms");
    std::string beat_msg = nlohmann::json({{"n", opt.node_id}, {"at", wall_ms()}}).dump();
    natsConnection_Publish(nc, "fkc.alive", beat_msg.data(), static_cast<int>(beat_msg.size()));
  }

  void beat() {
    const std::int64_t now = wall_ms();
    std::string rec = encode_node(NodeRecord{true, now, {}});
    std::uint64_t rev = 0;
    natsStatus s = kvStore_Put(&rev, nodes, key_for(opt.node_id).c_str(), rec.data(),
                               static_cast<int>(rec.size()));
    if (s == NATS_OK) {
      last_heartbeat_ok = steady_ms();
      if (fenced.exchange(false)) log::info("cluster.unfenced", {{"node", opt.node_id}});
    } else if (steady_ms() - last_heartbeat_ok.load() > opt.heartbeat_ms * 3) {
      FK_LOG_DEBUG("cluster.heartbeat_failed", {{"error", nats_error(s)}});
    }
  }

  // The slower reads (the stream's position, every node's record) run on their own thread:
  // while a NATS server is gone they can take seconds, and must not delay the heartbeat
  // write past the lease (the node would fence itself over and over).
  void survey() {
    if (!heartbeat_fresh()) return;
    if (std::uint64_t seq = stream_last_seq(); seq != 0) {
      previous_checkpoint = checkpoint.load();
      checkpoint = seq;
    }
    scan_nodes();
  }

  void fence(const std::string& why) {
    if (fenced.exchange(true)) return;
    log::warn("cluster.fenced", {{"node", opt.node_id}, {"reason", why}});
    if (Node* n = node.load()) n->fence(why);
  }

  void on_alive(natsMsg* m) {
    auto doc = codec::parse_json(data_of(m), codec::JsonLimits{2, 1024});
    if (!doc.is_ok()) return;
    try {
      std::string n = doc->at("n").get<std::string>();
      std::int64_t at = doc->at("at").get<std::int64_t>();
      std::lock_guard<std::mutex> lock(peers_mu);
      auto& h = heard[n];
      h = std::max(h, at);
      known.insert(n);
    } catch (const nlohmann::json::exception&) {
    }
  }

  // Reads every node's record: the living ones are `known`; one silent past dead_after is
  // declared dead by whichever survivor's compare-and-set lands first.
  void scan_nodes() {
    kvKeysList keys{};
    if (kvStore_Keys(&keys, nodes, nullptr) != NATS_OK) return;
    std::set<std::string> alive;
    std::vector<std::pair<std::string, std::uint64_t>> dead;
    const std::int64_t now = wall_ms();
    for (int i = 0; i < keys.Count; ++i) {
      kvEntry* e = nullptr;
      if (kvStore_Get(&e, nodes, keys.Keys[i]) != NATS_OK) continue;
      auto rec = decode_node(value_of(e));
      auto name = subject_to_topic(keys.Keys[i]);
      if (rec && name && rec->alive && *name != opt.node_id) {
        if (now - rec->at_ms <= opt.dead_after_ms) {
          alive.insert(*name);
        } else {
          dead.emplace_back(*name, kvEntry_Revision(e));
        }
      }
      kvEntry_Destroy(e);
    }
    kvKeysList_Destroy(&keys);
    {
      std::lock_guard<std::mutex> lock(peers_mu);
      known = alive;
    }
    for (const auto& [name, rev] : dead) {
      std::string rec = encode_node(NodeRecord{false, now, opt.node_id});
      std::uint64_t new_rev = 0;
      if (kvStore_Update(&new_rev, nodes, key_for(name).c_str(), rec.data(),
                         static_cast<int>(rec.size()), rev) != NATS_OK)
        continue;  // another survivor handles it
      log::warn("cluster.node_dead", {{"node", name}, {"handled_by", opt.node_id}});
      handle_dead(name);
    }
  }

  // The dead node's connected clients: each record is taken by compare-and-set (so one
  // survivor acts), then its will and its disconnect event are published.
  void handle_dead(const std::string& dead) {
    kvKeysList keys{};
    if (kvStore_Keys(&keys, clients, nullptr) != NATS_OK) return;
    std::size_t lost = 0;
    for (int i = 0; i < keys.Count; ++i) {
      kvEntry* e = nullptr;
      if (kvStore_Get(&e, clients, keys.Keys[i]) != NATS_OK) continue;
      auto rec = decode_session(value_of(e));
      const std::uint64_t rev = kvEntry_Revision(e);
      kvEntry_Destroy(e);
      if (!rec || rec->session.node != dead) continue;
      auto client = subject_to_topic(keys.Keys[i]);
      if (!client) continue;
      StoredSession after = rec->session;
      const bool was_connected = after.connected;
      after.node.clear();
      after.connected = false;
      after.will.reset();
      after.disconnected_at_ms = wall_ms();
      std::string value = after.expiry_seconds > 0 ? encode_session(after, 0) : std::string();
      std::uint64_t new_rev = 0;
      if (kvStore_Update(&new_rev, clients, keys.Keys[i], value.data(),
                         static_cast<int>(value.size()), rev) != NATS_OK)
        continue;  // reconnected elsewhere meanwhile
      if (!was_connected) continue;
      lost_connection(*client, rec->session, rev);
      ++lost;
    }
    kvKeysList_Destroy(&keys);
    log::info("cluster.node_dead_handled",
              {{"node", dead}, {"connections_lost", std::to_string(lost)}});
  }

  // A message this link makes (wills of a dead node, its lifecycle events): to the other
  // nodes and to this node's own subscribers.
  void route(const MessagePtr& m) {
    if (m->retain) store_retained(*m);
    publish(m, [](bool) {});
    if (Node* n = node.load()) n->deliver_remote(m);
  }

  // ---- routing -----------------------------------------------------------------------------

  static void on_message(natsConnection*, natsSubscription*, natsMsg* m, void* closure) {
    auto* self = static_cast<Impl*>(closure);
    self->received(m, std::nullopt);
    natsMsg_Destroy(m);
  }

  // Queue-group (shared subscription) deliveries carry the filter's number as the closure;
  // the Impl is found through the one live link (there is one per process).
  static inline std::atomic<Impl*> instance{nullptr};
  static void on_shared(natsConnection*, natsSubscription*, natsMsg* m, void* closure) {
    auto number = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(closure));
    if (Impl* self = instance.load()) {
      std::optional<std::string> filter;
      {
        std::lock_guard<std::mutex> lock(self->interest_mu);
        if (auto it = self->shared_by_number.find(number); it != self->shared_by_number.end())
          filter = it->second;
      }
      if (filter) self->received(m, filter);
    }
    natsMsg_Destroy(m);
  }

  void received(natsMsg* m, const std::optional<std::string>& share_filter) {
    Node* n = node.load();
    if (n == nullptr || !owns()) return;
    auto env = decode_envelope(data_of(m), opt.max_payload_bytes);
    if (!env) {
      log::warn("cluster.bad_envelope", {{"subject", natsMsg_GetSubject(m)}});
      return;
    }
    if (share_filter) {
      n->deliver_shared(*share_filter, env->message);
      return;
    }
    deliver_once(*env);  // not when it was published here, nor twice
  }

  void add_interest(const std::string& filter) {
    std::lock_guard<std::mutex> lock(interest_mu);
    if (interest.count(filter)) return;
    Interest& in = interest[filter];
    in.number = next_number++;
    auto shared = mqtt_shared(filter);
    for (const auto& subject : filter_to_subjects(shared ? shared->second : filter)) {
      const std::string full = "fk.*." + subject;
      natsSubscription* sub = nullptr;
      natsStatus s;
      if (shared) {
        shared_by_number[in.number] = filter;
        const std::string queue = "share" + key_for(filter);
        s = natsConnection_QueueSubscribe(
            &sub, shared_nc, full.c_str(), queue.c_str(), &Impl::on_shared,
            reinterpret_cast<void*>(static_cast<std::uintptr_t>(in.number)));
      } else {
        s = natsConnection_Subscribe(&sub, nc, full.c_str(), &Impl::on_message, this);
      }
      if (s != NATS_OK) {
        log::warn("cluster.subscribe_failed", {{"filter", filter}, {"error", nats_error(s)}});
        continue;
      }
      natsSubscription_SetPendingLimits(sub, -1, 64 * 1024 * 1024);
      in.subs.push_back(sub);
    }
  }

  void remove_interest(const std::string& filter) {
    std::lock_guard<std::mutex> lock(interest_mu);
    auto it = interest.find(filter);
    if (it == interest.end()) return;
    for (natsSubscription* sub : it->second.subs) {
      natsSubscription_Unsubscribe(sub);
      natsSubscription_Destroy(sub);
    }
    shared_by_number.erase(it->second.number);
    interest.erase(it);
  }

  // "$share/<group>/<filter>" -> (group, filter).
  static std::optional<std::pair<std::string, std::string>> mqtt_shared(const std::string& f) {
    constexpr std::string_view kShare = "$share/";
    if (f.rfind(kShare, 0) != 0) return std::nullopt;
    auto slash = f.find('/', kShare.size());
    if (slash == std::string::npos) return std::nullopt;
    return std::make_pair(f.substr(kShare.size(), slash - kShare.size()), f.substr(slash + 1));
  }

  static void on_ack(jsCtx*, natsMsg* m, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
    auto* self = static_cast<Impl*>(closure);
    const char* id = nullptr;
    if (natsMsgHeader_Get(m, "Fk-Id", &id) == NATS_OK && id != nullptr) {
      std::function<void(bool)> done;
      {
        std::lock_guard<std::mutex> lock(self->acks_mu);
        auto it = self->acks.find(std::strtoull(id, nullptr, 10));
        if (it != self->acks.end()) {
          done = std::move(it->second);
          self->acks.erase(it);
        }
      }
      if (done) {
        if (pa == nullptr && pae != nullptr)
          log::warn("cluster.store_failed",
                    {{"error", pae->ErrText != nullptr ? pae->ErrText : nats_error(pae->Err)}});
        done(pa != nullptr);
      }
    }
    natsMsg_Destroy(m);
  }

  void publish(const MessagePtr& msg, std::function<void(bool)> stored) {
    const std::uint64_t id = next_id++;
    const std::string data = encode_envelope(opt.node_id, id, *msg);
    const std::string subject =
        std::string(msg->qos == 1 ? "fk.1." : "fk.0.") + topic_to_subject(msg->topic);
    auto finish = [this, msg, stored = std::move(stored)](bool ok) mutable {
      if (!ok || !msg->retain) {
        stored(ok);
        return;
      }
      // A retained message is acknowledged once it is stored too.
      workers->post(msg->topic,
                    [this, msg, stored = std::move(stored)] { stored(store_retained(*msg)); });
    };
    if (msg->qos == 0) {
      natsStatus s =
          natsConnection_Publish(nc, subject.c_str(), data.data(), static_cast<int>(data.size()));
      finish(s == NATS_OK);
      return;
    }
    natsMsg* m = nullptr;
    if (natsMsg_Create(&m, subject.c_str(), nullptr, data.data(), static_cast<int>(data.size())) !=
        NATS_OK) {
      finish(false);
      return;
    }
    natsMsgHeader_Set(m, "Fk-Id", std::to_string(id).c_str());
    {
      std::lock_guard<std::mutex> lock(acks_mu);
      acks.emplace(id, std::move(finish));
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 5000;
    natsStatus s = js_PublishMsgAsync(js, &m, &po);
    natsMsg_Destroy(m);  // no-op when the library took it
    if (s != NATS_OK) {
      std::function<void(bool)> done;
      {
        std::lock_guard<std::mutex> lock(acks_mu);
        auto it = acks.find(id);
        if (it != acks.end()) {
          done = std::move(it->second);
          acks.erase(it);
        }
      }
      if (done) done(false);
    }
  }

  bool store_retained(const Message& m) {
    const std::string key = key_for(m.topic);
    std::string value = m.payload.empty() ? std::string() : encode_envelope(opt.node_id, 0, m);
    std::uint64_t rev = 0;
    natsStatus s =
        kvStore_Put(&rev, retained_kv, key.c_str(), value.data(), static_cast<int>(value.size()));
    if (s != NATS_OK) log::warn("cluster.retain_failed", {{"error", nats_error(s)}});
    return s == NATS_OK;
  }

  MessagePtr load_retained(const std::string& topic) {
    kvEntry* e = nullptr;
    if (kvStore_Get(&e, retained_kv, key_for(topic).c_str()) != NATS_OK) return nullptr;
    const std::string_view value = value_of(e);
    MessagePtr out;
    if (!value.empty()) {
      if (auto env = decode_envelope(value, opt.max_payload_bytes)) {
        auto copy = std::make_shared<Message>(*env->message);
        copy->retain = true;
        out = std::move(copy);
      }
    }
    kvEntry_Destroy(e);
    return out;
  }

  // ---- client ids ----------------------------------------------------------------------------

  std::uint64_t stream_last_seq() {
    jsStreamInfo* si = nullptr;
    if (js_GetStreamInfo(&si, js, kStream, nullptr, nullptr) != NATS_OK) return 0;
    std::uint64_t last = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    return last;
  }

  Claim claim(const std::string& client_id, StoredSession session) {
    Claim out;
    if (auto why = unavailable()) {
      out.reason = *why;
      return out;
    }
    const std::string key = key_for(client_id);
    session.node = opt.node_id;
    // Where a later takeover replays from: the heartbeat's last reading of the stream (at or
    // before now: a few more duplicates, never a miss), without a round trip per connect.
    const std::uint64_t seen_last = checkpoint.load();
    session.replay_from = (seen_last != 0 ? seen_last : stream_last_seq()) + 1;
    std::optional<SessionRecord> prev;
    bool ok = false;
    std::string error;
    for (int attempt = 0; attempt < 8 && !ok; ++attempt) {
      kvEntry* e = nullptr;
      natsStatus s = kvStore_Get(&e, clients, key.c_str());
      std::uint64_t last = 0;
      prev.reset();
      if (s == NATS_OK) {
        last = kvEntry_Revision(e);
        const std::string_view v = value_of(e);
        if (!v.empty()) prev = decode_session(v);
        kvEntry_Destroy(e);
      } else if (s != NATS_NOT_FOUND) {
        error = nats_error(s);
        break;
      }
      // Two devices with one client id taking it from each other in a loop: a few takeovers
      // pass, then connects are refused for a growing while (the devices back off).
      TakeoverCount takeovers = prev ? prev->takeovers : TakeoverCount{};
      if (prev && prev->session.connected) {
        const std::int64_t now = wall_ms();
        if (now < takeovers.blocked_until_ms) {
          out.throttled = true;
          out.reason = "client id " + client_id + " is taken over in a loop (two devices with " +
                       "one id?): connects refused for " +
                       std::to_string((takeovers.blocked_until_ms - now + 999) / 1000) + " s";
          return out;
        }
        if (now - takeovers.window_start_ms > kTakeoverWindowMs) takeovers = {0, now, 0};
        if (++takeovers.count > kTakeoversAllowed) {
          const int over = static_cast<int>(takeovers.count - kTakeoversAllowed);
          takeovers.blocked_until_ms =
              now + std::min<std::int64_t>(1000LL << std::min(over, 6), 60000);
        }
      }
      const std::string value = encode_session(session, 0, takeovers);
      std::uint64_t rev = 0;
      s = last != 0 ? kvStore_Update(&rev, clients, key.c_str(), value.data(),
                                     static_cast<int>(value.size()), last)
                    : kvStore_Create(&rev, clients, key.c_str(), value.data(),
                                     static_cast<int>(value.size()));
      if (s == NATS_OK) {
        ok = true;
        out.revision = rev;
        // What this write really replaced (a racing write the server let through).
        if (auto other = replaced_between(key, last, rev)) {
          prev = other->second.empty() ? std::nullopt : decode_session(other->second);
          log::info("cluster.claim_race",
                    {{"client", client_id}, {"replaced", std::to_string(other->first)}});
        }
      } else {
        error = nats_error(s);  // lost a race (compare-and-set): read again
      }
    }
    if (!ok) {
      out.reason = "the cluster could not record the connection: " + error;
      return out;
    }
    out.ok = true;
    if (prev) {
      if (!prev->session.node.empty() && prev->session.node != opt.node_id &&
          !hand_over(prev->session.node, client_id, out.revision) && prev->session.connected) {
        // Its node died with the connection open: its will and disconnect event are ours.
        lost_connection(client_id, prev->session, out.revision);
      }
      if (prev->session.expiry_seconds > 0 && session.expiry_seconds > 0)
        out.replay = replay(prev->session);
      out.previous = std::move(prev->session);
    }
    return out;
  }

  // Asks the previous owner to close its connection; one that does not answer is waited for
  // until its heartbeat is older than the lease (by then it has fenced itself). True when it
  // answered (it closed the connection itself, with its will).
  bool hand_over(const std::string& owner, const std::string& client_id, std::uint64_t rev) {
    if (!node_alive(owner)) return false;
    const std::string subject = "fkc.owner." + key_for(owner);
    const std::string body = nlohmann::json({{"c", client_id}, {"r", rev}}).dump();
    const auto deadline =
        SteadyClock::now() +
        std::chrono::milliseconds(opt.handover_timeout_ms + opt.lease_ms + opt.heartbeat_ms);
    while (SteadyClock::now() < deadline && !stopping.load()) {
      natsMsg* reply = nullptr;
      natsStatus s = natsConnection_Request(&reply, nc, subject.c_str(), body.data(),
                                            static_cast<int>(body.size()), opt.handover_timeout_ms);
      if (reply != nullptr) natsMsg_Destroy(reply);
      if (s == NATS_OK) return true;
      // No answer: gone for good once its heartbeat is past the lease.
      if (!node_alive(owner)) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    log::warn("cluster.handover_timeout", {{"client", client_id}, {"owner", owner}});
    return false;
  }

  // Whether a node's heartbeat record is alive and within the lease.
  bool node_alive(const std::string& name) {
    kvEntry* e = nullptr;
    if (kvStore_Get(&e, nodes, key_for(name).c_str()) != NATS_OK) return false;
    auto rec = decode_node(value_of(e));
    kvEntry_Destroy(e);
    return rec && rec->alive && wall_ms() - rec->at_ms <= opt.lease_ms;
  }

  // A connection that ended with its node: its will and its disconnect event (AWS:
  // CONNECTION_LOST), published by the node that found out.
  void lost_connection(const std::string& client, const StoredSession& s, std::uint64_t rev) {
    if (s.will) {
      auto m = std::make_shared<Message>();
      m->topic = s.will->topic;
      m->payload = s.will->payload;
      m->qos = s.will->qos;
      m->retain = s.will->retain;
      m->origin_client_id = client;
      route(m);
    }
    if (s.lifecycle_events) {
      auto m = std::make_shared<Message>();
      m->topic = "$aws/events/presence/disconnected/" + client;
      m->payload = nlohmann::json({{"clientId", client},
                                   {"timestamp", wall_ms()},
                                   {"eventType", "disconnected"},
                                   {"sessionIdentifier", s.session_id},
                                   {"principalIdentifier", s.certificate_id},
                                   {"clientInitiatedDisconnect", false},
                                   {"disconnectReason", "CONNECTION_LOST"},
                                   {"versionNumber", rev}})
                       .dump();
      route(m);
    }
  }

  static void on_owner(natsConnection* c, natsSubscription*, natsMsg* m, void* closure) {
    auto* self = static_cast<Impl*>(closure);
    std::string reply = natsMsg_GetReply(m) != nullptr ? natsMsg_GetReply(m) : "";
    auto doc = codec::parse_json(data_of(m), codec::JsonLimits{2, 4096});
    natsMsg_Destroy(m);
    if (!doc.is_ok()) return;
    std::string client;
    std::uint64_t rev = 0;
    try {
      client = doc->at("c").get<std::string>();
      rev = doc->at("r").get<std::uint64_t>();
    } catch (const nlohmann::json::exception&) {
      return;
    }
    auto answer = [c, reply] {
      if (!reply.empty()) natsConnection_Publish(c, reply.c_str(), "ok", 2);
    };
    Node* n = self->node.load();
    if (n == nullptr) {
      answer();
      return;
    }
    n->owner_changed(client, rev, answer);
  }

  // The QoS 1 messages published since the session was claimed that match its QoS 1
  // subscriptions, oldest first (at most max_replay: the newest ones). Read from the stream's
  // leader with "next by subject"; no consumer is made.
  std::vector<MessagePtr> replay(const StoredSession& s) {
    std::map<std::uint64_t, MessagePtr> found;
    for (const auto& [filter, qos] : s.subscriptions) {
      if (qos == 0 || filter.rfind("$share/", 0) == 0) continue;
      for (const auto& subject : filter_to_subjects(filter)) {
        std::uint64_t pos = s.replay_from;
        scan_stream("fk.1." + subject, pos, [&](std::uint64_t seq, Envelope env) {
          found.emplace(seq, std::move(env.message));
          while (found.size() > opt.max_replay) found.erase(found.begin());
        });
      }
    }
    std::vector<MessagePtr> out;
    out.reserve(found.size());
    for (auto& [seq, m] : found) out.push_back(std::move(m));
    return out;
  }

  // Calls `f` with every stored message on `subject` (wildcards allowed) from position `from`
  // on, oldest first, read from the stream's leader one "next by subject" at a time.
  // Returns false when the stream could not be read to the end (see scan_raw).
  template <typename F>
  bool scan_stream(const std::string& subject, std::uint64_t& from, F f) {
    return scan_raw(kStream, subject, from, [&](std::uint64_t at, const std::string& raw) {
      if (auto env = decode_envelope(raw, opt.max_payload_bytes)) f(at, std::move(*env));
      return true;
    });
  }

  // Calls `f(seq, data)` for each message of `stream` on `subject` from `from` on until it
  // returns false; `from` moves past each message read. True when it got to the end (or `f`
  // stopped it), false when the stream did not answer (no leader yet, NATS away): the caller
  // may go on from `from` later.
  template <typename F>
  bool scan_raw(const std::string& stream, const std::string& subject, std::uint64_t& from, F f) {
    const std::string api = "$JS.API.STREAM.MSG.GET." + stream;
    from = std::max<std::uint64_t>(from, 1);
    for (std::size_t n = 0; n < 100000 && !stopping.load(); ++n) {
      const std::string body = nlohmann::json({{"seq", from}, {"next_by_subj", subject}}).dump();
      natsMsg* reply = nullptr;
      if (natsConnection_Request(&reply, nc, api.c_str(), body.data(),
                                 static_cast<int>(body.size()), 2000) != NATS_OK)
        return false;
      auto doc = codec::parse_json(data_of(reply),
                                   codec::JsonLimits{4, opt.max_payload_bytes * 2 + 128 * 1024});
      natsMsg_Destroy(reply);
      if (!doc.is_ok()) return false;
      if (!doc->contains("message")) {  // 404: no more messages; anything else: not now
        const auto* code = doc->contains("error") ? &doc->at("error") : nullptr;
        return code != nullptr && code->is_object() && code->value("code", 0) == 404;
      }
      try {
        const auto& msg = doc->at("message");
        const std::uint64_t at = msg.at("seq").get<std::uint64_t>();
        // The API answers standard base64; ours reads base64url.
        std::string b64 = msg.value("data", std::string());
        for (char& ch : b64) {
          if (ch == '+') ch = '-';
          if (ch == '/') ch = '_';
        }
        while (!b64.empty() && b64.back() == '=') b64.pop_back();
        auto raw = crypto::base64url_decode(b64);
        from = at + 1;
        if (!f(at, raw ? *raw : std::string())) return true;
      } catch (const nlohmann::json::exception&) {
        return false;
      }
    }
    return true;
  }

  // After a NATS reconnect: the QoS 1 messages this node's subscriptions may have missed
  // while it was away (core NATS does not keep them; the stream does), from a position taken
  // before the disconnect. Those already delivered are recognised by their id.
  std::atomic<std::uint64_t> catch_up_from{0};
  void catch_up() {
    const std::uint64_t from = catch_up_from.exchange(0);
    if (from == 0) return;
    std::vector<std::string> filters;
    {
      std::lock_guard<std::mutex> lock(interest_mu);
      for (const auto& [f, in] : interest)
        if (f.rfind("$share/", 0) != 0) filters.push_back(f);
    }
    std::size_t n = 0;
    for (const auto& f : filters) {
      for (const auto& subject : filter_to_subjects(f)) {
        // Right after a server dies the stream may have no leader for a few seconds: read on
        // from where the last attempt stopped until it answers (30 s at most).
        std::uint64_t pos = from;
        for (int attempt = 0; attempt < 60 && !stopping.load(); ++attempt) {
          if (scan_stream("fk.1." + subject, pos, [&](std::uint64_t, Envelope env) {
                if (deliver_once(env)) ++n;
              }))
            break;
          std::this_thread::sleep_for(std::chrono::milliseconds(500));
        }
      }
    }
    log::info("cluster.caught_up",
              {{"from", std::to_string(from)}, {"delivered", std::to_string(n)}});
  }

  // Delivers a message from another node to this node's subscribers unless it already was.
  bool deliver_once(const Envelope& env) {
    Node* n = node.load();
    if (n == nullptr || env.node == opt.node_id) return false;
    {
      std::string key = env.node + ":" + std::to_string(env.id);
      std::lock_guard<std::mutex> lock(seen_mu);
      if (!seen.insert(key).second) return false;
      seen_order.push_back(std::move(key));
      if (seen_order.size() > 65536) {
        seen.erase(seen_order.front());
        seen_order.pop_front();
      }
    }
    n->deliver_remote(env.message);
    return true;
  }

  // nats-server 2.9 can let two compare-and-set updates of one key both succeed when they race
  // on a replicated stream (both checked before either is applied). So each write reads the
  // key's writes between the revision it expected and its own: the last of them (revision,
  // value) is what it really replaced, when there is one.
  std::optional<std::pair<std::uint64_t, std::string>> replaced_between(const std::string& key,
                                                                        std::uint64_t last,
                                                                        std::uint64_t rev) {
    std::optional<std::pair<std::uint64_t, std::string>> found;
    std::uint64_t pos = last + 1;
    scan_raw(std::string("KV_") + kClients, std::string("$KV.") + kClients + "." + key, pos,
             [&](std::uint64_t at, const std::string& data) {
               if (at >= rev) return false;
               found = std::make_pair(at, data);
               return true;
             });
    return found;
  }

  // Writes `value` for `client_id` while the claim `epoch` still holds the record.
  // `session` nullopt: the session ended (an empty record). The takeover count is kept.
  bool write_owned(const std::string& client_id, std::uint64_t epoch,
                   const std::optional<StoredSession>& session) {
    const std::string key = key_for(client_id);
    for (int attempt = 0; attempt < 8; ++attempt) {
      kvEntry* e = nullptr;
      if (kvStore_Get(&e, clients, key.c_str()) != NATS_OK) return false;
      const std::uint64_t last = kvEntry_Revision(e);
      const std::string_view v = value_of(e);
      auto rec = v.empty() ? std::nullopt : decode_session(v);
      kvEntry_Destroy(e);
      const bool ours = last == epoch || (rec && rec->epoch == epoch);
      if (!ours) return false;
      const std::string value =
          session ? encode_session(*session, epoch, rec ? rec->takeovers : TakeoverCount{})
                  : std::string();
      std::uint64_t rev = 0;
      if (kvStore_Update(&rev, clients, key.c_str(), value.data(), static_cast<int>(value.size()),
                         last) != NATS_OK)
        continue;
      auto other = replaced_between(key, last, rev);
      if (!other) return true;
      // A claim landed between our read and our write: it is the owner; put its record back
      // (as the record of its claim) and report the loss.
      auto theirs = decode_session(other->second);
      if (theirs) {
        const std::uint64_t their_epoch = theirs->epoch != 0 ? theirs->epoch : other->first;
        const std::string restored =
            encode_session(theirs->session, their_epoch, theirs->takeovers);
        std::uint64_t ignored = 0;
        kvStore_Update(&ignored, clients, key.c_str(), restored.data(),
                       static_cast<int>(restored.size()), rev);
      }
      return false;
    }
    return false;
  }

  std::optional<std::string> unavailable() const {
    if (!connected.load()) return "this node is not connected to NATS";
    if (!owns()) return "this node is cut off from the cluster (fenced)";
    if (!heartbeat_fresh())
      return "the cluster cannot record connections now (JetStream unavailable)";
    return std::nullopt;
  }

  static void on_disconnected(natsConnection*, void* closure) {
    auto* self = static_cast<Impl*>(closure);
    self->connected = false;
    // Messages from one heartbeat before the last one on may have been missed.
    std::uint64_t expected = 0;
    self->catch_up_from.compare_exchange_strong(
        expected, std::max<std::uint64_t>(self->previous_checkpoint.load(), 1));
    log::warn("cluster.nats_disconnected", {{"node", self->opt.node_id}});
  }
  static void on_reconnected(natsConnection*, void* closure) {
    auto* self = static_cast<Impl*>(closure);
    self->connected = true;
    log::info("cluster.nats_reconnected", {{"node", self->opt.node_id}});
    if (self->workers && !self->stopping.load())
      self->workers->post("catch-up", [self] { self->catch_up(); });
  }

  Status connect(natsConnection** out, bool no_echo, const std::string& name) {
    natsOptions* o = nullptr;
    if (natsOptions_Create(&o) != NATS_OK) return internal_error("NATS options");
    std::vector<std::string> urls;
    for (std::size_t start = 0; start <= opt.servers.size();) {
      std::size_t comma = opt.servers.find(',', start);
      if (comma == std::string::npos) comma = opt.servers.size();
      if (comma > start) urls.push_back(opt.servers.substr(start, comma - start));
      start = comma + 1;
    }
    std::vector<const char*> ptrs;
    for (auto& u : urls) ptrs.push_back(u.c_str());
    natsOptions_SetServers(o, ptrs.data(), static_cast<int>(ptrs.size()));
    natsOptions_SetName(o, name.c_str());
    natsOptions_SetTimeout(o, 2000);
    natsOptions_SetMaxReconnect(o, -1);
    natsOptions_SetReconnectWait(o, 200);
    natsOptions_SetPingInterval(o, 1000);
    natsOptions_SetMaxPingsOut(o, 3);
    natsOptions_SetNoEcho(o, no_echo);
    natsOptions_UseGlobalMessageDelivery(o, true);
    if (no_echo) {  // the main connection: its state is the node's
      natsOptions_SetDisconnectedCB(o, &Impl::on_disconnected, this);
      natsOptions_SetReconnectedCB(o, &Impl::on_reconnected, this);
    }
    natsStatus s = natsConnection_Connect(out, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK)
      return Status(ErrorCode::kUnavailable,
                    "cannot reach NATS at " + opt.servers + ": " + nats_error(s));
    return Status::ok();
  }

  Status open() {
    // Two connections: `nc` publishes and holds the plain subscriptions without echo (a node
    // never gets back what it published: its own subscribers had it at once); `shared_nc`
    // holds the queue groups of $share subscriptions, which must see this node's messages too.
    FK_RETURN_IF_ERROR(connect(&nc, true, "fleetkeyd " + opt.node_id));
    FK_RETURN_IF_ERROR(connect(&shared_nc, false, "fleetkeyd " + opt.node_id + " shared"));
    connected = true;
    natsStatus s = NATS_OK;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 3000;
    jo.PublishAsync.AckHandler = &Impl::on_ack;
    jo.PublishAsync.AckHandlerClosure = this;
    jo.PublishAsync.MaxPending = 65536;
    if ((s = natsConnection_JetStream(&js, nc, &jo)) != NATS_OK)
      return Status(ErrorCode::kUnavailable, "JetStream: " + nats_error(s));
    // The QoS 1 message stream (replicated; kept long enough for sessions to resume).
    const char* subjects[] = {"fk.1.>"};
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = kStream;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Replicas = opt.replicas;
    cfg.MaxAge = opt.stream_max_age_seconds * 1000000000LL;
    cfg.MaxBytes = opt.stream_max_bytes;
    cfg.Discard = js_DiscardOld;
    jsErrCode code = static_cast<jsErrCode>(0);
    if ((s = add_stream(js, cfg, &code)) != NATS_OK)
      return Status(ErrorCode::kUnavailable,
                    std::string("JetStream stream ") + kStream + ": " + nats_error(s));
    FK_RETURN_IF_ERROR(ensure_bucket(js, kClients, opt.replicas, &clients));
    FK_RETURN_IF_ERROR(ensure_bucket(js, kRetained, opt.replicas, &retained_kv));
    FK_RETURN_IF_ERROR(ensure_bucket(js, kNodes, opt.replicas, &nodes));
    workers = std::make_unique<Workers>(opt.workers);
    const std::string owner = "fkc.owner." + key_for(opt.node_id);
    natsConnection_Subscribe(&owner_sub, nc, owner.c_str(), &Impl::on_owner, this);
    natsConnection_Subscribe(
        &alive_sub, nc, "fkc.alive",
        [](natsConnection*, natsSubscription*, natsMsg* m, void* closure) {
          static_cast<Impl*>(closure)->on_alive(m);
          natsMsg_Destroy(m);
        },
        this);
    // A node that reuses its name after a crash starts fenced-free but says so at once.
    last_heartbeat_ok = steady_ms();
    instance = this;
    return Status::ok();
  }

  void close() {
    if (stopping.exchange(true)) return;
    {
      std::lock_guard<std::mutex> lock(sleep_mu);
      sleep_cv.notify_all();
    }
    if (heartbeat_thread.joinable()) heartbeat_thread.join();
    if (alive_thread.joinable()) alive_thread.join();
    if (survey_thread.joinable()) survey_thread.join();
    if (workers) workers->stop();  // the sessions' last writes are done
    if (nodes != nullptr) {
      // A clean stop says so: a device moving to another node does not wait out the lease,
      // and no survivor publishes wills this node's sessions already handled.
      const std::string rec = encode_node(NodeRecord{false, wall_ms(), opt.node_id});
      std::uint64_t rev = 0;
      kvStore_Put(&rev, nodes, key_for(opt.node_id).c_str(), rec.data(),
                  static_cast<int>(rec.size()));
    }
    if (nc != nullptr) natsConnection_FlushTimeout(nc, 1000);
    {
      std::lock_guard<std::mutex> lock(interest_mu);
      for (auto& [f, in] : interest)
        for (auto* sub : in.subs) natsSubscription_Destroy(sub);
      interest.clear();
    }
    if (owner_sub != nullptr) natsSubscription_Destroy(owner_sub);
    if (alive_sub != nullptr) natsSubscription_Destroy(alive_sub);
    if (nc != nullptr) natsConnection_Close(nc);
    if (clients != nullptr) kvStore_Destroy(clients);
    if (retained_kv != nullptr) kvStore_Destroy(retained_kv);
    if (nodes != nullptr) kvStore_Destroy(nodes);
    if (js != nullptr) jsCtx_Destroy(js);
    if (nc != nullptr) natsConnection_Destroy(nc);
    nc = nullptr;
    if (shared_nc != nullptr) {
      natsConnection_Close(shared_nc);
      natsConnection_Destroy(shared_nc);
      shared_nc = nullptr;
    }
    instance = nullptr;
  }
};

Result<std::unique_ptr<NatsLink>> NatsLink::open(const NatsLinkOptions& options) {
  auto impl = std::make_shared<Impl>();
  impl->opt = options;
  if (Status s = impl->open(); !s.is_ok()) {
    impl->close();
    return s;
  }
  return std::unique_ptr<NatsLink>(new NatsLink(std::move(impl)));
}

NatsLink::NatsLink(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
NatsLink::~NatsLink() {
  stop();
}

void NatsLink::start() {
  impl_->heartbeat_thread =
      std::thread([impl = impl_.get()] { impl->every_heartbeat(&Impl::beat); });
  impl_->alive_thread = std::thread([impl = impl_.get()] { impl->every_heartbeat(&Impl::alive); });
  impl_->survey_thread =
      std::thread([impl = impl_.get()] { impl->every_heartbeat(&Impl::survey); });
}
void NatsLink::stop() {
  impl_->close();
}

NatsLinkHealth NatsLink::health() const {
  NatsLinkHealth h;
  h.connected = impl_->connected.load();
  h.jetstream = impl_->heartbeat_fresh();
  h.owns_sessions = impl_->owns();
  h.heartbeat_age_ms = Impl::steady_ms() - impl_->last_heartbeat_ok.load();
  {
    std::lock_guard<std::mutex> lock(impl_->peers_mu);
    const std::int64_t now = wall_ms();
    for (const auto& [n, at] : impl_->heard)
      if (now - at <= impl_->opt.lease_ms) h.peers.push_back(n);
    h.members.assign(impl_->known.begin(), impl_->known.end());
  }
  if (auto why = impl_->unavailable()) h.detail = *why;
  return h;
}

void NatsLink::attach(Node* node) {
  impl_->node = node;
}
void NatsLink::add_interest(const std::string& filter) {
  impl_->add_interest(filter);
}
void NatsLink::remove_interest(const std::string& filter) {
  impl_->remove_interest(filter);
}

void NatsLink::publish(const broker::MessagePtr& msg, std::function<void(bool)> stored) {
  impl_->publish(msg, std::move(stored));
}

void NatsLink::claim(const std::string& client_id, const broker::StoredSession& session,
                     std::function<void(Claim)> done) {
  auto impl = impl_;
  impl->workers->post(client_id, [impl, client_id, session, done = std::move(done)] {
    done(impl->claim(client_id, session));
  });
}

void NatsLink::save(const std::string& client_id, std::uint64_t revision,
                    const broker::StoredSession& session, std::function<void(bool)> done) {
  auto impl = impl_;
  impl->workers->post(client_id, [impl, client_id, revision, session, done = std::move(done)] {
    broker::StoredSession s = session;
    s.node = impl->opt.node_id;
    done(impl->write_owned(client_id, revision, s));
  });
}

void NatsLink::forget(const std::string& client_id, std::uint64_t revision) {
  auto impl = impl_;
  impl->workers->post(client_id, [impl, client_id, revision] {
    impl->write_owned(client_id, revision, std::nullopt);
  });
}

void NatsLink::retained(const std::string& topic, std::function<void(broker::MessagePtr)> done) {
  auto impl = impl_;
  impl->workers->post(topic,
                      [impl, topic, done = std::move(done)] { done(impl->load_retained(topic)); });
}

std::optional<std::string> NatsLink::unavailable() const {
  return impl_->unavailable();
}
bool NatsLink::owns_sessions() const {
  return impl_->owns();
}

}  // namespace fk::cluster
