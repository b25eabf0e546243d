#include "net/io_pool.h"

#include <atomic>
#include <boost/asio.hpp>
#include <chrono>

namespace fk::net {

namespace {
using Guard = boost::asio::executor_work_guard<boost::asio::io_context::executor_type>;
}

struct IoPool::Probe {
  explicit Probe(boost::asio::io_context& io) : timer(io) {}
  boost::asio::steady_timer timer;
  std::atomic<std::int64_t> lag_ms{0};
};

namespace {
constexpr auto kProbeEvery = std::chrono::milliseconds(20);
}

IoPool::IoPool(std::size_t threads) {
  if (threads == 0) threads = 1;
  for (std::size_t i = 0; i < threads; ++i) {
    contexts_.push_back(std::make_unique<boost::asio::io_context>(1));
    probes_.push_back(std::make_unique<Probe>(*contexts_.back()));
  }
}

void IoPool::probe(Probe& p) {
  const auto due = std::chrono::steady_clock::now() + kProbeEvery;
  p.timer.expires_at(due);
  p.timer.async_wait([this, &p, due](const boost::system::error_code& ec) {
    if (ec) return;
    p.lag_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - due)
                   .count();
    probe(p);
  });
}

void IoPool::measure_lag() {
  if (probing_.exchange(true)) return;
  for (auto& p : probes_) boost::asio::post(p->timer.get_executor(), [this, &p] { probe(*p); });
}

bool IoPool::busy(std::int64_t lag_ms) const {
  for (const auto& p : probes_) {
    if (p->lag_ms.load() > lag_ms) return true;
  }
  return false;
}

IoPool::~IoPool() {
  stop();
}

std::size_t IoPool::next_index() {
  return next_++ % contexts_.size();
}

void IoPool::start() {
  if (started_) return;
  started_ = true;
  for (auto& ctx : contexts_) {
    boost::asio::io_context* c = ctx.get();
    threads_.emplace_back([c] {
      Guard guard(c->get_executor());
      c->run();
    });
  }
}

void IoPool::stop() {
  for (auto& ctx : contexts_) ctx->stop();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  started_ = false;
}

}  // namespace fk::net
