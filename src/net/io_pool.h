// IoPool: one io_context per thread (one per core by default). Connections are pinned to one
// context for their whole life; other threads reach them only by posting to that context
// (no locks on a connection's data path).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

namespace boost::asio {
class io_context;
}

namespace fk::net {

class IoPool {
 public:
  explicit IoPool(std::size_t threads);
  ~IoPool();  // stops and joins

  std::size_t size() const { return contexts_.size(); }
  boost::asio::io_context& at(std::size_t i) { return *contexts_[i]; }
  // Round-robin choice for a new connection.
  std::size_t next_index();

  void start();
  void stop();
  bool started() const { return started_; }
  // Starts measuring how late each thread runs its work (a timer on each, every 20 ms), for
  // busy(); only pools someone asks about pay for it. Idempotent, any thread.
  void measure_lag();
  // Whether some thread runs its work more than `lag_ms` late: the threads are saturated.
  // False until measure_lag() has run a round. Any thread.
  bool busy(std::int64_t lag_ms) const;

 private:
  struct Probe;
  void probe(Probe& p);

  std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
  std::vector<std::unique_ptr<Probe>> probes_;  // destroyed before the contexts
  std::atomic<bool> probing_{false};
  std::vector<std::thread> threads_;
  std::size_t next_ = 0;
  bool started_ = false;
};

}  // namespace fk::net
