// GroupCommitter: the single writer. Changes submitted from any thread are run one after
// another on the writer thread, many of them inside one storage transaction, each in its own
// savepoint, so a batch costs one fsync while a failing change is undone alone.
//
// A change's future becomes ready only after the batch's commit is durable (its own Status if
// it failed, the commit's error if the commit failed). Changes run in submission order and
// see the effects of the earlier changes of their batch.
//
// Thread-safety: submit() from any thread. The change runs on the writer thread; it must not
// block on anything but the store.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

#include "base/metrics.h"
#include "storage/store.h"

namespace fk::storage {

class GroupCommitter {
 public:
  using Change = std::function<Status(Transaction&)>;

  // max_batch: the most changes per commit.
  explicit GroupCommitter(Store& store, std::size_t max_batch = 512);
  ~GroupCommitter();  // runs what is queued, then stops

  GroupCommitter(const GroupCommitter&) = delete;
  GroupCommitter& operator=(const GroupCommitter&) = delete;

  std::future<Status> submit(Change change);
  Status run(Change change) { return submit(std::move(change)).get(); }

  // Commits so far (for metrics and benchmarks), and how long each COMMIT took (the fsync or
  // PostgreSQL's round trip; the batch's changes before it not included).
  std::uint64_t commits() const;
  const metrics::Histogram& commit_durations() const { return commit_seconds_; }

 private:
  struct Job {
    Change change;
    std::promise<Status> done;
  };
  void loop();
  void run_batch(std::deque<Job>& batch);

  Store& store_;
  const std::size_t max_batch_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  metrics::Histogram commit_seconds_;
  std::uint64_t commits_ = 0;
  std::thread thread_;
};

}  // namespace fk::storage
