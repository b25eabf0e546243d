// fleetkey-sdk-heap-probe: one complete fleet provisioning through the SDK's device side
// (state machine, payload encoding and decoding, MQTT framing, the credential file store) with
// the replies the AWS SDK accepted (../shared/vectors) instead of a network, so that a heap
// profiler sees what a device spends besides its TLS library. Key generation and TLS are the
// platform's crypto library and are left out: the key and CSR come from the captures.
//
//   valgrind --tool=massif fleetkey-sdk-heap-probe VECTORS_DIR STATE_DIR
//
// Inputs are read into static buffers (not heap) before provisioning starts. Prints the
// machine's final state; exit 0 if provisioning completed.
#include <fcntl.h>
#include <fleetkey/credentials.h>
#include <fleetkey/provisioning.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "mqtt/codec.h"

namespace {

// A file into static storage.
template <std::size_t N>
std::string_view slurp(const std::string& path, std::array<char, N>& into) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return {};
  const ssize_t n = ::read(fd, into.data(), into.size());
  ::close(fd);
  return n > 0 ? std::string_view(into.data(), static_cast<std::size_t>(n)) : std::string_view();
}

std::array<char, 4096> g_csr_request, g_cert_reply, g_register_reply;
std::array<char, 8192> g_frame;

// An incoming QoS 0 PUBLISH as the server would send it, built in static storage.
std::string_view publish_frame(std::string_view topic, std::string_view payload) {
  const std::size_t remaining = 2 + topic.size() + payload.size();
  std::size_t at = 0;
  g_frame[at++] = 0x30;
  std::size_t v = remaining;
  do {
    auto byte = static_cast<unsigned char>(v % 128);
    v /= 128;
    if (v) byte |= 0x80;
    g_frame[at++] = static_cast<char>(byte);
  } while (v);
  g_frame[at++] = static_cast<char>(topic.size() >> 8);
  g_frame[at++] = static_cast<char>(topic.size() & 0xff);
  std::memcpy(&g_frame[at], topic.data(), topic.size());
  at += topic.size();
  std::memcpy(&g_frame[at], payload.data(), payload.size());
  return {g_frame.data(), at + payload.size()};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s VECTORS_DIR STATE_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = std::string(argv[1]) + "/fleet-provisioning/05-pubsub-mqtt311-csr-json/";
  const auto csr_request = slurp(dir + "007-claim-c2s-PUBLISH.payload.json", g_csr_request);
  const auto cert_reply = slurp(dir + "009-claim-s2c-PUBLISH.payload.json", g_cert_reply);
  const auto register_reply = slurp(dir + "017-claim-s2c-PUBLISH.payload.json", g_register_reply);
  if (csr_request.empty() || cert_reply.empty() || register_reply.empty()) {
    std::fprintf(stderr, "vectors not found under %s\n", dir.c_str());
    return 2;
  }
  // The CSR inside the captured request (what the device's crypto library made).
  const auto begin = csr_request.find("-----BEGIN");
  const auto end = csr_request.rfind("-----");
  std::string csr;
  for (std::size_t i = begin; i < end + 5; ++i) {
    if (csr_request[i] == '\\' && csr_request[i + 1] == 'n') {
      csr += '\n';
      ++i;
    } else {
      csr += csr_request[i];
    }
  }

  fleetkey::ProvisioningConfig config;
  config.template_name = "FleetTemplate";
  config.parameters = {{"SerialNumber", "1005"}};
  config.claim_client_id = "vector-claim-05";
  fleetkey::Provisioner machine(config);
  fleetkey::FileCredentialStore store(argv[2]);
  fk::mqtt::FrameReader reader(16 * 1024);
  std::uint64_t now = 0;
  std::size_t wire_bytes = 0;

  std::vector<fleetkey::Action> actions = machine.start(now);
  while (!actions.empty()) {
    std::vector<fleetkey::Action> next;
    for (const auto& a : actions) {
      fleetkey::Event e;
      bool answer = true;
      switch (a.type) {
        case fleetkey::Action::Type::kConnect: {
          fk::mqtt::Connect c;
          c.client_id = a.client_id;
          c.keep_alive = 1200;
          wire_bytes += fk::mqtt::encode(fk::mqtt::Version::kV311, c).size();
          e.type = fleetkey::Event::Type::kConnected;
          break;
        }
        case fleetkey::Action::Type::kSubscribe: {
          fk::mqtt::Subscribe s;
          s.packet_id = 1;
          for (const auto& t : a.topics) s.subscriptions.push_back({t, 1, false, false, 0});
          wire_bytes += fk::mqtt::encode(fk::mqtt::Version::kV311, s).size();
          e.type = fleetkey::Event::Type::kSubscribed;
          break;
        }
        case fleetkey::Action::Type::kGenerateKey:
          e.type = fleetkey::Event::Type::kKeyGenerated;
          e.private_key_pem =
              "-----BEGIN EC PRIVATE KEY-----\n(the platform's key)\n-----END EC "
              "PRIVATE KEY-----\n";
          e.csr_pem = csr;
          break;
        case fleetkey::Action::Type::kSave:
          e.type = fleetkey::Event::Type::kSaved;
          e.ok = store.save(machine.record(), e.error);
          break;
        case fleetkey::Action::Type::kPublish: {
          fk::mqtt::Publish p;
          p.topic = a.topics[0];
          p.payload = a.payload;
          p.qos = 1;
          p.packet_id = 2;
          wire_bytes += fk::mqtt::encode(fk::mqtt::Version::kV311, p).size();
          // The server's reply arrives as bytes in the receive buffer.
          const bool cert = a.topics[0].find("$aws/certificates/") == 0;
          reader.feed(publish_frame(a.topics[0] + "/accepted", cert ? cert_reply : register_reply));
          auto frame = reader.next();
          auto& f = std::get<std::optional<fk::mqtt::Frame>>(frame);
          auto packet = fk::mqtt::decode(fk::mqtt::Version::kV311, *f);
          auto& pub = std::get<fk::mqtt::Publish>(std::get<fk::mqtt::Packet>(packet));
          e.type = fleetkey::Event::Type::kMessage;
          e.topic = std::move(pub.topic);
          e.payload = std::move(pub.payload);
          break;
        }
        default:
          answer = false;
          break;
      }
      if (!answer) continue;
      auto more = machine.on(e, ++now);
      next.insert(next.end(), more.begin(), more.end());
    }
    actions = std::move(next);
  }
  std::printf("state %s, thing %s, %zu bytes sent\n", fleetkey::to_string(machine.state()),
              machine.record().thing_name.c_str(), wire_bytes);
  return machine.state() == fleetkey::State::kComplete ? 0 : 1;
}
