// TcpListener: binds a TCP port (0 = any free port) with a large backlog and TCP_NODELAY on
// accepted sockets, and hands each accepted connection's native handle to a callback.
// fleetkeyd's MQTT port uses it until the broker (net/tls + broker/) takes the port over.
//
// Thread-safety: as HttpServer.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/status.h"

namespace boost::asio {
class io_context;
}

namespace fk::net {

class TcpListener {
 public:
  // on_accept receives the connected socket's file descriptor and the peer address; it owns
  // the descriptor.
  using AcceptFn = std::function<void(int fd, const std::string& peer)>;

  TcpListener(boost::asio::io_context& io, std::string bind_address, std::uint16_t port,
              AcceptFn on_accept);
  ~TcpListener();

  // Before each accept: false leaves connections waiting in the kernel's backlog until it
  // returns true (checked every 2 ms). Call before start().
  void set_gate(std::function<bool()> open);
  Status start();
  void stop();
  std::uint16_t port() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace fk::net
