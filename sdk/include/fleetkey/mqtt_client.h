// fleetkey device SDK, Linux transport: an MQTT 3.1.1/5 client over mutual TLS (Boost.Asio and
// OpenSSL), and DeviceConnection, which keeps a device's connection up across server restarts.
//
// Both run on the caller's boost::asio::io_context and call their handlers from it, never from
// inside the call that started the operation. Use an object from its io_context's thread only.
// Credentials come as PEM text and stay in memory; nothing here logs them.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fleetkey/provisioning.h"

namespace boost::asio {
class io_context;
}

namespace fleetkey {

struct Endpoint {
  std::string host = "localhost";
  std::uint16_t port = 8883;
  // Offer ALPN "x-amzn-mqtt-ca" (AWS IoT's MQTT-over-443 mode; harmless on 8883).
  bool alpn_x_amzn_mqtt_ca = false;
};

// The client certificate (and its chain), its private key and the root CA(s) that the
// server's certificate must chain to.
struct TlsIdentity {
  std::string certificate_pem;
  std::string private_key_pem;
  std::string root_ca_pem;
};

enum class MqttVersion { kV311, kV5 };

struct ConnectOptions {
  std::string client_id;
  MqttVersion version = MqttVersion::kV311;
  std::uint16_t keep_alive_s = 60;           // AWS clamps to 30..1200
  std::uint32_t connect_timeout_ms = 10000;  // TCP + TLS + CONNACK
  bool verify_hostname = true;               // the server certificate must name `host`
};

struct ConnectResult {
  bool ok = false;
  // True when retrying cannot help: our certificate was refused (TLS alert or CONNACK
  // not-authorized; error.kind kClaimRejected, whichever certificate it was: the caller knows,
  // and DeviceConnection reports kDeviceRejected), or the server's certificate does not chain
  // to root_ca_pem (kServerCertificate).
  bool permanent = false;
  Error error;
};

class MqttClient {
 public:
  using MessageHandler = std::function<void(const std::string& topic, const std::string& payload)>;

  explicit MqttClient(boost::asio::io_context& io);
  ~MqttClient();  // closes the connection without DISCONNECT (like a power cut)
  MqttClient(const MqttClient&) = delete;
  MqttClient& operator=(const MqttClient&) = delete;

  void set_message_handler(MessageHandler handler);
  // Called once when an established connection is lost (not after disconnect()).
  void set_disconnect_handler(std::function<void(const Error&)> handler);

  void connect(const Endpoint& endpoint, const TlsIdentity& identity, const ConnectOptions& options,
               std::function<void(const ConnectResult&)> done);
  // One SUBSCRIBE; `done(true)` if every filter was granted.
  void subscribe(const std::vector<std::string>& filters, std::uint8_t qos,
                 std::function<void(bool ok)> done);
  // QoS 0: `done` once written; QoS 1: once PUBACKed (ok false on an MQTT 5 failure code or a
  // lost connection).
  void publish(const std::string& topic, std::string payload, std::uint8_t qos, bool retain,
               std::function<void(bool ok, const Error& error)> done = {});
  // Sends DISCONNECT and closes once it is written.
  void disconnect();
  bool connected() const;

 private:
  std::shared_ptr<class MqttClientState> state_;
};

// Keeps one device connection up: connects, resubscribes its filters after every reconnect,
// and reconnects with exponential backoff and jitter (never more than once a second) after a
// lost connection or a server restart. A permanent refusal (certificate revoked, wrong CA)
// stops it and is reported.
class DeviceConnection {
 public:
  struct Handlers {
    std::function<void()> on_connected;
    std::function<void(const Error& error, bool permanent)> on_disconnected;
    MqttClient::MessageHandler on_message;
  };

  DeviceConnection(boost::asio::io_context& io, Endpoint endpoint, TlsIdentity identity,
                   ConnectOptions options, RetryPolicy retry, Handlers handlers);
  ~DeviceConnection();
  DeviceConnection(const DeviceConnection&) = delete;
  DeviceConnection& operator=(const DeviceConnection&) = delete;

  void start();
  // Starts with a connection that is already up (e.g. ProvisioningResult::connection), so a
  // freshly provisioned device does not connect twice within a second.
  void start(std::unique_ptr<MqttClient> connected);
  void stop();  // DISCONNECT; no more reconnects
  // Remembered and subscribed again after each reconnect (QoS 1).
  void subscribe(const std::string& filter);
  // The same for several filters in one SUBSCRIBE now; `done(all granted)` on its SUBACK (not
  // called while disconnected: the filters are subscribed at the next connect).
  void subscribe(const std::vector<std::string>& filters, std::function<void(bool ok)> done);
  // Connects with `identity` from now on (a certificate rotation): the current connection is
  // closed with DISCONNECT and a new one made at once (never twice within a second); a stopped
  // connection starts again.
  void switch_identity(TlsIdentity identity);
  // Fails (ok = false) at once while disconnected: the caller decides what to keep.
  void publish(const std::string& topic, std::string payload, std::uint8_t qos = 1,
               bool retain = false, std::function<void(bool ok, const Error& error)> done = {});
  bool connected() const;
  std::uint64_t reconnects() const;

 private:
  std::shared_ptr<class DeviceConnectionState> state_;
};

}  // namespace fleetkey
