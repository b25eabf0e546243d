// The one timer a state machine asks for (Action kStartTimer / kCancelTimer): a restart
// replaces the pending expiry, and a cancelled or replaced expiry never fires, even when its
// completion was already queued. Internal to the Linux runners.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

namespace fleetkey::linux_platform {

class MachineTimer {
 public:
  explicit MachineTimer(boost::asio::io_context& io) : timer_(io) {}

  // `fire` keeps what it needs alive (or checks it): it may run after this timer is gone only
  // if its expiry was already queued, and then sees the generation it was started with.
  void start(std::uint32_t delay_ms, std::function<void()> fire) {
    const unsigned gen = ++*generation_;
    timer_.expires_after(std::chrono::milliseconds(delay_ms));
    timer_.async_wait([generation = generation_, gen,
                       fire = std::move(fire)](const boost::system::error_code& ec) {
      if (!ec && gen == *generation) fire();
    });
  }
  void cancel() {
    ++*generation_;
    timer_.cancel();
  }

 private:
  boost::asio::steady_timer timer_;
  std::shared_ptr<unsigned> generation_ = std::make_shared<unsigned>(0);
};

}  // namespace fleetkey::linux_platform
