// MQTT 3.1.1 and 5.0 encoding and strict decoding (no I/O).
//
// decode() checks everything the specifications require of a packet on its own: fixed-header
// flags, remaining length, UTF-8 strings (well-formed, no U+0000), property identifiers,
// duplicates and the packets they may appear in, reserved bits, QoS values, packet identifiers,
// non-empty SUBSCRIBE/UNSUBSCRIBE and no trailing bytes. A refused packet comes back as a
// DecodeError with the MQTT 5 reason code to report (0x81 malformed, 0x82 protocol error,
// 0x84 unsupported version, 0x95 too large) and a message for the log.
//
// Thread-safety: FrameReader is a plain value owned by one connection; the free functions are
// pure.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "mqtt/packet.h"

namespace fk::mqtt {

struct DecodeError {
  std::uint8_t reason = reason::kMalformedPacket;
  std::string message;
};

template <typename T>
using Decoded = std::variant<T, DecodeError>;

// One complete control packet cut from the byte stream.
struct Frame {
  std::uint8_t header = 0;  // type << 4 | flags
  std::string_view body;    // variable header + payload (valid until the next feed())
  std::size_t size = 0;     // whole packet on the wire
};

// Cuts a byte stream into frames, enforcing the maximum packet size before buffering a body.
class FrameReader {
 public:
  explicit FrameReader(std::size_t max_packet_size) : max_(max_packet_size) {}

  void feed(std::string_view bytes) { buffer_.append(bytes.data(), bytes.size()); }
  // A frame, nothing yet (std::nullopt), or an error (the stream cannot continue).
  Decoded<std::optional<Frame>> next();
  void set_max_packet_size(std::size_t max) { max_ = max; }
  std::size_t buffered() const { return buffer_.size() - consumed_; }

 private:
  std::string buffer_;
  std::size_t consumed_ = 0;
  std::size_t max_;
};

// Decodes a CONNECT (the version comes from its protocol level).
Decoded<Connect> decode_connect(const Frame& frame);
// Decodes any other packet for a connection of `version`.
Decoded<Packet> decode(Version version, const Frame& frame);

// Encodes a packet for `version`.
std::string encode(Version version, const Packet& packet);

// Variable byte integer helpers (spec 1.5.5), exposed for tests.
void append_varint(std::string& out, std::uint32_t value);

// UTF-8 as MQTT requires (spec 1.5.4): well-formed, no U+0000.
bool valid_mqtt_utf8(std::string_view s);

}  // namespace fk::mqtt
