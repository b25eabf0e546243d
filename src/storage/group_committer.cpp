#include "storage/group_committer.h"

#include <chrono>
#include <vector>

namespace fk::storage {

GroupCommitter::GroupCommitter(Store& store, std::size_t max_batch)
    : store_(store), max_batch_(max_batch == 0 ? 1 : max_batch), thread_([this] { loop(); }) {}

GroupCommitter::~GroupCommitter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::future<Status> GroupCommitter::submit(Change change) {
  Job job{std::move(change), {}};
  std::future<Status> f = job.done.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      job.done.set_value(Status(ErrorCode::kUnavailable, "the store is shutting down"));
      return f;
    }
    queue_.push_back(std::move(job));
  }
  cv_.notify_one();
  return f;
}

std::uint64_t GroupCommitter::commits() const {
  std::lock_guard<std::mutex> lock(mu_);
  return commits_;
}

void GroupCommitter::loop() {
  for (;;) {
    std::deque<Job> batch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      while (!queue_.empty() && batch.size() < max_batch_) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    run_batch(batch);
  }
}

void GroupCommitter::run_batch(std::deque<Job>& batch) {
  std::vector<Status> results(batch.size());
  auto txn = store_.begin_write();
  if (!txn.is_ok()) {
    for (Job& j : batch) j.done.set_value(txn.status());
    return;
  }
  Transaction& t = **txn;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    Status sp = t.savepoint();
    if (!sp.is_ok()) {
      results[i] = sp;
      continue;
    }
    results[i] = batch[i].change(t);
    Status end = results[i].is_ok() ? t.release_savepoint() : t.rollback_to_savepoint();
    if (!end.is_ok() && results[i].is_ok()) results[i] = end;
  }
  const auto committing = std::chrono::steady_clock::now();
  Status commit = t.commit();
  commit_seconds_.observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - committing).count());
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++commits_;
  }
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (results[i].is_ok() && !commit.is_ok()) results[i] = commit;
    batch[i].done.set_value(results[i]);
  }
}

}  // namespace fk::storage
