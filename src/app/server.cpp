#include "app/server.h"

#include <unistd.h>

#include <boost/asio.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/files.h"
#include "base/log.h"
#include "crypto/openssl/openssl_certificate_authority.h"
#include "net/http_server.h"
#include "net/tcp_listener.h"
#include "registry/registry.h"
#include "storage/sqlite/sqlite_store.h"

namespace fk::app {

struct Server::Parts {
  Config config;
  Endpoints endpoints;
  std::unique_ptr<crypto::OpensslCertificateAuthority> ca;
  std::unique_ptr<storage::SqliteStore> store;
  std::unique_ptr<registry::Registry> registry;
  AdminCredentials admin;
  std::unique_ptr<net::HttpServer> api;
  std::unique_ptr<net::TcpListener> mqtt;
};

Server::Server() : parts_(new Parts) {}
Server::~Server() {
  stop();
}

const Endpoints& Server::endpoints() const {
  return parts_->endpoints;
}
registry::Registry& Server::registry() {
  return *parts_->registry;
}

namespace {

std::string absolute(const std::string& path) {
  std::error_code ec;
  auto p = std::filesystem::absolute(path, ec);
  return ec ? path : p.lexically_normal().string();
}

net::HttpResponse handle_api(registry::Registry& registry, const net::HttpRequest& req) {
  if (req.target == "/health" && req.method == "GET") {
    // The store answers a read: the registry is usable.
    Status st = registry.read([](registry::Txn& t) { return t.store().get_setting("-").status(); });
    if (!st.is_ok()) return {503, "application/json", {}, R"({"status":"unavailable"})"};
    return {200, "application/json", {}, R"({"status":"ok"})"};
  }
  nlohmann::json body = {{"message", "unknown operation " + req.method + " " + req.target}};
  return {
      404, "application/json", {{"x-amzn-ErrorType", "UnknownOperationException"}}, body.dump()};
}

}  // namespace

Result<std::unique_ptr<Server>> Server::start(const Config& config, boost::asio::io_context& io) {
  std::unique_ptr<Server> server(new Server);
  Parts& p = *server->parts_;
  p.config = config;
  p.config.data_dir = absolute(config.data_dir);
  FK_RETURN_IF_ERROR(make_dirs(p.config.data_dir, 0700));

  FK_ASSIGN_OR_RETURN(p.ca, crypto::OpensslCertificateAuthority::load_or_create(
                                p.config.ca_dir(), p.config.ca, SystemClock::instance()));
  FK_ASSIGN_OR_RETURN(p.store, storage::SqliteStore::open(p.config.registry_path()));
  registry::RegistryConfig rc;
  rc.arns = p.config.aws;
  p.registry = std::make_unique<registry::Registry>(*p.store, *p.ca, SystemClock::instance(), rc);

  Endpoints& e = p.endpoints;
  e.credentials_path = p.config.data_dir + "/credentials";
  e.aws_config_path = p.config.data_dir + "/aws-config";
  e.root_ca_path = p.ca->paths().root_cert;
  e.registry_path = absolute(p.config.registry_path());
  FK_ASSIGN_OR_RETURN(p.admin, load_or_create_admin_credentials(
                                   e.credentials_path, e.aws_config_path, p.config.aws.region));

  net::HttpServerOptions api_options;
  api_options.bind_address = p.config.api.bind;
  api_options.port = p.config.api.port;
  registry::Registry* reg = p.registry.get();
  p.api = std::make_unique<net::HttpServer>(
      io, api_options, [reg](const net::HttpRequest& r) { return handle_api(*reg, r); });
  FK_RETURN_IF_ERROR(p.api->start());

  // The MQTT port is bound (so its address is real and reserved); the broker that serves it
  // arrives with the broker issue. Until then each connection is closed at once.
  p.mqtt = std::make_unique<net::TcpListener>(
      io, p.config.mqtt.bind, p.config.mqtt.port, [](int fd, const std::string& peer) {
        log::warn("mqtt.connection_refused", {{"peer", peer}, {"reason", "broker not built yet"}});
        ::close(fd);
      });
  FK_RETURN_IF_ERROR(p.mqtt->start());

  auto connect_host = [](const std::string& bind) {
    return bind == "0.0.0.0" || bind == "::" ? std::string("localhost") : bind;
  };
  e.mqtt_host = connect_host(p.config.mqtt.bind);
  e.mqtt_port = p.mqtt->port();
  e.api_port = p.api->port();
  std::string api_host = connect_host(p.config.api.bind);
  if (api_host.find(':') != std::string::npos) api_host = "[" + api_host + "]";
  e.api_url = "http://" + api_host + ":" + std::to_string(e.api_port);
  return server;
}

void Server::stop() {
  if (!parts_) return;
  if (parts_->api) parts_->api->stop();
  if (parts_->mqtt) parts_->mqtt->stop();
}

std::string Endpoints::to_json(const Config& config) const {
  nlohmann::json j = {
      {"mqtt", {{"host", mqtt_host}, {"port", mqtt_port}}},
      {"api", {{"url", api_url}, {"port", api_port}}},
      {"root_ca", root_ca_path},
      {"credentials_file", credentials_path},
      {"aws_config_file", aws_config_path},
      {"registry", registry_path},
      {"region", config.aws.region},
      {"account_id", config.aws.account_id},
      {"pid", static_cast<long>(::getpid())},
  };
  return j.dump(2) + "\n";
}

}  // namespace fk::app
