#include "net/io_pool.h"

#include <boost/asio.hpp>

namespace fk::net {

namespace {
using Guard = boost::asio::executor_work_guard<boost::asio::io_context::executor_type>;
}

IoPool::IoPool(std::size_t threads) {
  if (threads == 0) threads = 1;
  for (std::size_t i = 0; i < threads; ++i)
    contexts_.push_back(std::make_unique<boost::asio::io_context>(1));
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
