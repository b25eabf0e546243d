// libFuzzer target: the MQTT decoder must never crash, hang or read out of bounds, and every
// packet it accepts must survive an encode/decode round trip unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "mqtt/codec.h"

namespace {

void round_trip(fk::mqtt::Version v, const fk::mqtt::Packet& p) {
  std::string bytes = fk::mqtt::encode(v, p);
  fk::mqtt::FrameReader r(1 << 22);
  r.feed(bytes);
  auto next = r.next();
  auto* frame = std::get_if<std::optional<fk::mqtt::Frame>>(&next);
  if (frame == nullptr || !frame->has_value()) std::abort();
  if (fk::mqtt::type_of(p) == fk::mqtt::PacketType::kConnect) {
    auto again = fk::mqtt::decode_connect(**frame);
    if (!std::holds_alternative<fk::mqtt::Connect>(again)) std::abort();
    if (!(std::get<fk::mqtt::Connect>(again) == std::get<fk::mqtt::Connect>(p))) std::abort();
    return;
  }
  auto again = fk::mqtt::decode(v, **frame);
  if (!std::holds_alternative<fk::mqtt::Packet>(again)) std::abort();
  if (!(std::get<fk::mqtt::Packet>(again) == p)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace fk::mqtt;  // NOLINT(google-build-using-namespace)
  std::string_view input(reinterpret_cast<const char*>(data), size);
  FrameReader reader(1 << 16);
  // Feed in two pieces to exercise partial frames.
  reader.feed(input.substr(0, size / 2));
  bool first = true;
  Version version = Version::kV5;
  for (int pass = 0; pass < 2; ++pass) {
    for (;;) {
      auto next = reader.next();
      if (std::holds_alternative<DecodeError>(next)) return 0;
      auto frame = std::get<std::optional<Frame>>(next);
      if (!frame) break;
      if (first) {
        first = false;
        auto c = decode_connect(*frame);
        if (auto* connect = std::get_if<Connect>(&c)) {
          version = connect->version;
          round_trip(version, Packet(*connect));
        }
        continue;
      }
      for (Version v : {version, version == Version::kV5 ? Version::kV311 : Version::kV5}) {
        auto p = decode(v, *frame);
        if (auto* packet = std::get_if<Packet>(&p)) {
          // The decoder keeps what the encoder drops (3.1.1 has no reason codes), so only
          // the version it was decoded for must round-trip.
          round_trip(v, *packet);
        }
      }
    }
    reader.feed(input.substr(size / 2));
  }
  return 0;
}
