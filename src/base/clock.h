// Clock: the only way fleetkey code reads the time, so tests can inject it.
//
// Times are whole seconds since the Unix epoch (what AWS's API returns) unless a function says
// otherwise. SystemClock is thread-safe; ManualClock is thread-safe too (atomic).
#pragma once

#include <atomic>
#include <cstdint>

namespace fk {

using EpochSeconds = std::int64_t;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual EpochSeconds now() const = 0;
};

class SystemClock final : public Clock {
 public:
  EpochSeconds now() const override;
  static SystemClock& instance();
};

class ManualClock final : public Clock {
 public:
  explicit ManualClock(EpochSeconds start) : now_(start) {}
  EpochSeconds now() const override { return now_.load(); }
  void set(EpochSeconds t) { now_.store(t); }
  void advance(EpochSeconds d) { now_.fetch_add(d); }

 private:
  std::atomic<EpochSeconds> now_;
};

// The wall clock in milliseconds since the epoch: for event timestamps (lifecycle events, the
// device timeline), which no test needs to move.
std::int64_t epoch_ms();

}  // namespace fk
