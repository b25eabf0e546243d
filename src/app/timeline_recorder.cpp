#include "app/timeline_recorder.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "base/log.h"

namespace fk::app {

namespace {

constexpr auto kFlushEvery = std::chrono::milliseconds(200);
constexpr std::size_t kFlushAt = 256;     // queued events that wake the writer at once
constexpr std::size_t kMaxBatch = 2'000;  // events in one transaction
constexpr auto kPruneEvery = std::chrono::minutes(10);
constexpr std::size_t kMaxLeftOutKeys = 100'000;

// The device an event counts against: its certificate and client id (a fleet's devices share
// one claim certificate while they provision), else its thing, else its address without the
// port.
std::string device_key(const DeviceEvent& e) {
  if (!e.certificate_id.empty() || !e.client_id.empty())
    return "c:" + e.certificate_id + "/" + e.client_id;
  if (!e.thing.empty()) return "t:" + e.thing;
  std::string host = e.source;
  if (auto colon = host.rfind(':'); colon != std::string::npos && host.find(':') == colon)
    host.resize(colon);
  return "a:" + host;
}

}  // namespace

TimelineRecorder::TimelineRecorder(registry::Registry& registry, const Clock& clock,
                                   TimelineConfig config)
    : registry_(registry), clock_(clock), config_(config), thread_([this] { run(); }) {}

TimelineRecorder::~TimelineRecorder() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void TimelineRecorder::record(DeviceEvent e) {
  if (e.at_ms == 0) e.at_ms = epoch_ms();
  const std::string key = device_key(e);
  // What the device does is bounded per device; what operators and the server do is not.
  const bool limited = e.actor.empty();
  if (limited && !limiter_.take(key, config_.per_device_per_minute / 60.0,
                                std::max(1.0, config_.per_device_per_minute))) {
    std::lock_guard<std::mutex> lock(mu_);
    if (left_out_.size() >= kMaxLeftOutKeys) left_out_.clear();
    ++left_out_[key];
    events_.with({"rate_limited"}).add();
    return;
  }
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (queue_.size() >= config_.queue_limit) {
      events_.with({"queue_full"}).add();
      return;
    }
    if (auto it = left_out_.find(key); it != left_out_.end()) {
      e.detail += (e.detail.empty() ? "" : " ") + std::string("(") + std::to_string(it->second) +
                  " earlier event" + (it->second == 1 ? "" : "s") +
                  " of this device not kept: over the timeline's rate)";
      left_out_.erase(it);
    }
    queue_.push_back(std::move(e));
    ++queued_total_;
    wake = queue_.size() >= kFlushAt;
  }
  if (wake) wake_.notify_one();
}

void TimelineRecorder::flush() {
  std::unique_lock<std::mutex> lock(mu_);
  const std::uint64_t target = queued_total_;
  flush_to_ = std::max(flush_to_, target);
  wake_.notify_one();
  flushed_.wait(lock, [&] { return written_total_ >= target || stopping_; });
}

Result<std::int64_t> TimelineRecorder::prune() {
  const std::int64_t cutoff_ms = (clock_.now() - config_.retention_days * 86'400) * 1000;
  std::int64_t gone = 0;
  Status st = registry_.write([&](registry::Txn& t) -> Status {
    FK_ASSIGN_OR_RETURN(gone, t.store().prune_timeline(cutoff_ms, config_.max_events));
    return Status::ok();
  });
  if (!st.is_ok()) return st;
  if (gone > 0) log::info("timeline.pruned", {{"events", std::to_string(gone)}});
  return gone;
}

void TimelineRecorder::write_batch(std::vector<DeviceEvent> batch) {
  if (batch.empty()) return;
  Status st =
      registry_.write([&](registry::Txn& t) -> Status { return t.store().append_timeline(batch); });
  if (st.is_ok()) {
    events_.with({"kept"}).add(batch.size());
  } else {
    events_.with({"failed"}).add(batch.size());
    log::warn("timeline.write_failed",
              {{"events", std::to_string(batch.size())}, {"reason", st.message()}});
  }
}

void TimelineRecorder::run() {
  // Once at start (a server that was down past the retention), then every kPruneEvery.
  if (auto gone = prune(); !gone.is_ok())
    log::warn("timeline.prune_failed", {{"reason", gone.status().message()}});
  auto next_prune = std::chrono::steady_clock::now() + kPruneEvery;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    wake_.wait_for(lock, kFlushEvery, [&] {
      return stopping_ || queue_.size() >= kFlushAt || flush_to_ > written_total_;
    });
    while (!queue_.empty()) {
      std::vector<DeviceEvent> batch;
      const std::size_t n = std::min(queue_.size(), kMaxBatch);
      batch.reserve(n);
      for (std::size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      lock.unlock();
      write_batch(std::move(batch));
      lock.lock();
      written_total_ += n;
    }
    flushed_.notify_all();
    if (stopping_) return;
    if (std::chrono::steady_clock::now() >= next_prune) {
      lock.unlock();
      if (auto gone = prune(); !gone.is_ok())
        log::warn("timeline.prune_failed", {{"reason", gone.status().message()}});
      lock.lock();
      next_prune = std::chrono::steady_clock::now() + kPruneEvery;
    }
  }
}

void TimelineRecorder::write_metrics(metrics::Exposition& out) const {
  out.counters("fleetkey_timeline_events_total",
               "Device timeline events by what became of them: kept, rate_limited (one device "
               "over its rate), queue_full, failed (the registry refused the write).",
               events_);
  std::lock_guard<std::mutex> lock(mu_);
  out.gauge("fleetkey_timeline_queued_events", "Timeline events waiting to be written.",
            static_cast<double>(queue_.size()));
}

}  // namespace fk::app
