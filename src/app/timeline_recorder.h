// TimelineRecorder: keeps every DeviceEvent durably in the registry's timeline table (issue 20).
//
// record() only queues (it is called on the I/O threads); a writer thread appends what is
// queued in one registry transaction every 200 ms (or sooner when 256 are waiting), and prunes
// the table by age and size every 10 minutes. Bounds: at most `queue_limit` events wait (more
// are counted, not kept); one device (its certificate and client id, else its thing, else its
// address) keeps at most `per_device_per_minute` events a minute after a burst of as
// many, and the next event kept after a pause says how many were left out. Events an operator
// or the server made (an actor) are never left out.
//
// Thread-safety: record() from any thread; the rest from the owner.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "app/config.h"
#include "base/clock.h"
#include "base/device_events.h"
#include "base/metrics.h"
#include "provisioning/rate_limiter.h"
#include "registry/registry.h"

namespace fk::app {

class TimelineRecorder : public DeviceEventSink {
 public:
  TimelineRecorder(registry::Registry& registry, const Clock& clock, TimelineConfig config);
  ~TimelineRecorder() override;  // writes what is queued

  void record(DeviceEvent event) override;
  // Writes what is queued now and returns when it is committed (tests, shutdown).
  void flush();
  // Deletes what is past the retention (age, then size); returns how many went.
  Result<std::int64_t> prune();

  void write_metrics(metrics::Exposition& out) const;

 private:
  void run();
  void write_batch(std::vector<DeviceEvent> batch);

  registry::Registry& registry_;
  const Clock& clock_;
  const TimelineConfig config_;
  provisioning::KeyedRateLimiter limiter_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable flushed_;
  std::deque<DeviceEvent> queue_;
  std::unordered_map<std::string, std::int64_t> left_out_;  // per device, since its last kept
  std::uint64_t queued_total_ = 0;                          // events queued so far
  std::uint64_t written_total_ = 0;                         // of those, written (or failed)
  std::uint64_t flush_to_ = 0;  // flush() waits until written_total_ reaches it
  bool stopping_ = false;
  metrics::LabeledCounter events_{{"result"}};
  std::thread thread_;
};

}  // namespace fk::app
