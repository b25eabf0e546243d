#include "net/tcp_listener.h"

#include <boost/asio.hpp>

namespace fk::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct TcpListener::State : std::enable_shared_from_this<TcpListener::State> {
  State(asio::io_context& io, std::string a, std::uint16_t p, AcceptFn fn)
      : acceptor(io), wait(io), address(std::move(a)), port(p), on_accept(std::move(fn)) {}
  tcp::acceptor acceptor;
  asio::steady_timer wait;  // while the gate is shut
  std::function<bool()> gate;
  std::string address;
  std::uint16_t port;
  AcceptFn on_accept;
  std::uint16_t bound_port = 0;

  void accept() {
    if (gate && !gate()) {
      // Over capacity: leave the connection in the kernel's backlog (where it costs nothing
      // and keeps its place) and look again shortly.
      wait.expires_after(std::chrono::milliseconds(2));
      wait.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
        if (!ec && self->acceptor.is_open()) self->accept();
      });
      return;
    }
    acceptor.async_accept(
        [self = shared_from_this()](boost::system::error_code ec, tcp::socket socket) {
          if (ec == asio::error::operation_aborted) return;
          if (!ec) {
            socket.set_option(tcp::no_delay(true), ec);
            auto peer = socket.remote_endpoint(ec);
            std::string peer_text = ec ? std::string("?") : peer.address().to_string();
            self->on_accept(socket.release(), peer_text);
          }
          if (self->acceptor.is_open()) self->accept();
        });
  }
};

TcpListener::TcpListener(asio::io_context& io, std::string bind_address, std::uint16_t port,
                         AcceptFn on_accept)
    : state_(std::make_shared<State>(io, std::move(bind_address), port, std::move(on_accept))) {}

TcpListener::~TcpListener() {
  stop();
}

Status TcpListener::start() {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(state_->address, ec);
  if (ec) return invalid_request("bad bind address '" + state_->address + "'");
  tcp::endpoint ep(address, state_->port);
  auto& a = state_->acceptor;
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return Status(ErrorCode::kUnavailable, "cannot listen on " + state_->address + ":" +
                                               std::to_string(state_->port) + ": " + ec.message());
  state_->bound_port = a.local_endpoint().port();
  state_->accept();
  return Status::ok();
}

void TcpListener::set_gate(std::function<bool()> open) {
  state_->gate = std::move(open);
}

void TcpListener::stop() {
  boost::system::error_code ec;
  state_->acceptor.close(ec);
  state_->wait.cancel();
}

std::uint16_t TcpListener::port() const {
  return state_->bound_port;
}

}  // namespace fk::net
