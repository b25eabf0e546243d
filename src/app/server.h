// Server: fleetkeyd's parts wired together (the only place that names concrete backends):
// data folder, CA, SQLite registry, admin credentials and the listeners, on one io_context.
//
// Thread-safety: create, start and stop from one thread; the io_context runs the listeners.
#pragma once

#include <memory>
#include <string>

#include "app/admin_credentials.h"
#include "app/config.h"
#include "base/status.h"

namespace boost::asio {
class io_context;
}

namespace fk::registry {
class Registry;
}
namespace fk::broker {
class Broker;
}

namespace fk::app {

struct Endpoints {
  std::string mqtt_host;
  std::uint16_t mqtt_port = 0;
  std::uint16_t mqtt_alpn_port = 0;  // 0: off
  std::string api_url;
  std::uint16_t api_port = 0;
  std::string root_ca_path;
  std::string credentials_path;
  std::string aws_config_path;
  std::string registry_path;

  std::string to_json(const Config& config) const;
};

class Server {
 public:
  // Opens (or creates) everything in config.data_dir and binds the listeners.
  static Result<std::unique_ptr<Server>> start(const Config& config, boost::asio::io_context& io);
  ~Server();

  const Endpoints& endpoints() const;
  registry::Registry& registry();
  broker::Broker& broker();
  void stop();  // stops accepting; the registry commits what is queued when destroyed

 private:
  Server();
  void schedule_sweep();
  void schedule_heartbeat();
  struct Parts;
  std::unique_ptr<Parts> parts_;
};

}  // namespace fk::app
