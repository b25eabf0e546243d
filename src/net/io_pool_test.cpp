// IoPool::busy tells a thread that runs its work late (the accept gate's signal) from one that
// keeps up, once measure_lag() has started.
#include "net/io_pool.h"

#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <chrono>
#include <thread>

namespace fk::net {
namespace {

TEST(IoPool, BusyWhileAThreadLags) {
  IoPool pool(2);
  pool.start();
  pool.measure_lag();
  pool.measure_lag();  // idempotent
  // One thread stuck in a 300 ms handler: its probe fires late.
  boost::asio::post(pool.at(1),
                    [] { std::this_thread::sleep_for(std::chrono::milliseconds(300)); });
  bool seen = false;
  for (int i = 0; i < 100 && !seen; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    seen = pool.busy(50);
  }
  EXPECT_TRUE(seen);
  // And it recovers once the thread keeps up again.
  bool recovered = false;
  for (int i = 0; i < 500 && !recovered; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    recovered = !pool.busy(50);
  }
  EXPECT_TRUE(recovered);
  pool.stop();
}

TEST(IoPool, NotMeasuredNotBusy) {
  IoPool pool(1);
  pool.start();
  boost::asio::post(pool.at(0),
                    [] { std::this_thread::sleep_for(std::chrono::milliseconds(150)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(pool.busy(50));
  pool.stop();
}

}  // namespace
}  // namespace fk::net
