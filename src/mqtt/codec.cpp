#include "mqtt/codec.h"

#include <array>

namespace fk::mqtt {

const char* reason_name(std::uint8_t code) {
  switch (code) {
    case reason::kSuccess:
      return "success";
    case reason::kUnspecifiedError:
      return "unspecified_error";
    case reason::kMalformedPacket:
      return "malformed_packet";
    case reason::kProtocolError:
      return "protocol_error";
    case reason::kImplementationSpecific:
      return "implementation_specific_error";
    case reason::kUnsupportedProtocolVersion:
      return "unsupported_protocol_version";
    case reason::kClientIdentifierNotValid:
      return "client_identifier_not_valid";
    case reason::kBadUserNameOrPassword:
      return "bad_user_name_or_password";
    case reason::kNotAuthorized:
      return "not_authorized";
    case reason::kServerUnavailable:
      return "server_unavailable";
    case reason::kServerBusy:
      return "server_busy";
    case reason::kBanned:
      return "banned";
    case reason::kServerShuttingDown:
      return "server_shutting_down";
    case reason::kKeepAliveTimeout:
      return "keep_alive_timeout";
    case reason::kSessionTakenOver:
      return "session_taken_over";
    case reason::kTopicNameInvalid:
      return "topic_name_invalid";
    case reason::kPacketTooLarge:
      return "packet_too_large";
    case reason::kMessageRateTooHigh:
      return "message_rate_too_high";
    case reason::kQuotaExceeded:
      return "quota_exceeded";
    case reason::kConnectionRateExceeded:
      return "connection_rate_exceeded";
    default:
      return "unknown";
  }
}

const char* to_string(PacketType type) {
  static constexpr std::array<const char*, 16> kNames = {
      "RESERVED", "CONNECT",  "CONNACK",    "PUBLISH", "PUBACK",      "PUBREC",
      "PUBREL",   "PUBCOMP",  "SUBSCRIBE",  "SUBACK",  "UNSUBSCRIBE", "UNSUBACK",
      "PINGREQ",  "PINGRESP", "DISCONNECT", "AUTH"};
  return kNames[static_cast<std::size_t>(type) & 0x0f];
}

PacketType type_of(const Packet& packet) {
  struct Visitor {
    PacketType operator()(const Connect&) const { return PacketType::kConnect; }
    PacketType operator()(const Connack&) const { return PacketType::kConnack; }
    PacketType operator()(const Publish&) const { return PacketType::kPublish; }
    PacketType operator()(const Ack& a) const { return a.type; }
    PacketType operator()(const Subscribe&) const { return PacketType::kSubscribe; }
    PacketType operator()(const Suback&) const { return PacketType::kSuback; }
    PacketType operator()(const Unsubscribe&) const { return PacketType::kUnsubscribe; }
    PacketType operator()(const Unsuback&) const { return PacketType::kUnsuback; }
    PacketType operator()(const Pingreq&) const { return PacketType::kPingreq; }
    PacketType operator()(const Pingresp&) const { return PacketType::kPingresp; }
    PacketType operator()(const Disconnect&) const { return PacketType::kDisconnect; }
    PacketType operator()(const Auth&) const { return PacketType::kAuth; }
  };
  return std::visit(Visitor{}, packet);
}

bool valid_mqtt_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    unsigned char c = p[i];
    if (c == 0) return false;  // U+0000 is forbidden
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (std::size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are not well-formed UTF-8.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
      return false;
    i += len;
  }
  return true;
}

void append_varint(std::string& out, std::uint32_t value) {
  do {
    auto byte = static_cast<std::uint8_t>(value % 128);
    value /= 128;
    if (value > 0) byte |= 0x80;
    out.push_back(static_cast<char>(byte));
  } while (value > 0);
}

Decoded<std::optional<Frame>> FrameReader::next() {
  if (consumed_ > 0 && consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  } else if (consumed_ > 65536 && consumed_ * 2 > buffer_.size()) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  const std::size_t avail = buffer_.size() - consumed_;
  if (avail < 2) return std::optional<Frame>();
  const auto* p = reinterpret_cast<const unsigned char*>(buffer_.data() + consumed_);
  std::uint32_t length = 0;
  std::uint32_t multiplier = 1;
  std::size_t i = 1;
  for (;; ++i) {
    if (i > 4) return DecodeError{reason::kMalformedPacket, "remaining length longer than 4 bytes"};
    if (i >= avail) return std::optional<Frame>();
    length += (p[i] & 0x7Fu) * multiplier;
    if ((p[i] & 0x80) == 0) break;
    multiplier *= 128;
  }
  const std::size_t total = i + 1 + length;
  if (total > max_)
    return DecodeError{reason::kPacketTooLarge, "packet of " + std::to_string(total) +
                                                    " bytes is larger than the maximum of " +
                                                    std::to_string(max_)};
  if (avail < total) {
    buffer_.reserve(consumed_ + total);
    return std::optional<Frame>();
  }
  Frame f;
  f.header = p[0];
  f.body = std::string_view(buffer_.data() + consumed_ + i + 1, length);
  f.size = total;
  consumed_ += total;
  return std::optional<Frame>(f);
}

namespace {

DecodeError malformed(std::string m) {
  return {reason::kMalformedPacket, std::move(m)};
}
DecodeError protocol_error(std::string m) {
  return {reason::kProtocolError, std::move(m)};
}

class Reader {
 public:
  explicit Reader(std::string_view d) : d_(d) {}
  bool done() const { return pos_ == d_.size(); }
  std::size_t left() const { return d_.size() - pos_; }

  bool u8(std::uint8_t& v) {
    if (left() < 1) return false;
    v = static_cast<std::uint8_t>(d_[pos_++]);
    return true;
  }
  bool u16(std::uint16_t& v) {
    if (left() < 2) return false;
    v = static_cast<std::uint16_t>((static_cast<std::uint8_t>(d_[pos_]) << 8) |
                                   static_cast<std::uint8_t>(d_[pos_ + 1]));
    pos_ += 2;
    return true;
  }
  bool u32(std::uint32_t& v) {
    if (left() < 4) return false;
    v = 0;
    for (int k = 0; k < 4; ++k) v = (v << 8) | static_cast<std::uint8_t>(d_[pos_++]);
    return true;
  }
  bool varint(std::uint32_t& v) {
    v = 0;
    std::uint32_t mult = 1;
    for (int k = 0; k < 4; ++k) {
      std::uint8_t b;
      if (!u8(b)) return false;
      v += (b & 0x7Fu) * mult;
      if ((b & 0x80) == 0) return true;
      mult *= 128;
    }
    return false;
  }
  bool binary(std::string& out) {
    std::uint16_t n;
    if (!u16(n) || left() < n) return false;
    out.assign(d_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  std::string_view rest() {
    std::string_view r = d_.substr(pos_);
    pos_ = d_.size();
    return r;
  }
  Reader sub(std::size_t n) {
    Reader r(d_.substr(pos_, n));
    pos_ += n;
    return r;
  }

 private:
  std::string_view d_;
  std::size_t pos_ = 0;
};

// Where a property may appear: bit per packet type; bit 0 stands for the will properties.
constexpr std::uint32_t bit(PacketType t) {
  return 1u << static_cast<unsigned>(t);
}
constexpr std::uint32_t kWill = 1u;
constexpr std::uint32_t kAcks = bit(PacketType::kPuback) | bit(PacketType::kPubrec) |
                                bit(PacketType::kPubrel) | bit(PacketType::kPubcomp);

std::optional<DecodeError> read_utf8(Reader& r, std::string& out, const char* what) {
  if (!r.binary(out)) return malformed(std::string(what) + " is truncated");
  if (!valid_mqtt_utf8(out)) return malformed(std::string(what) + " is not valid UTF-8");
  return std::nullopt;
}

std::optional<DecodeError> read_properties(Reader& r, std::uint32_t where, Properties& p) {
  std::uint32_t length;
  if (!r.varint(length) || r.left() < length) return malformed("property length is truncated");
  Reader pr = r.sub(length);
  std::uint64_t seen = 0;  // single-valued properties seen, bit per identifier (all < 64)
  while (!pr.done()) {
    std::uint32_t id;
    if (!pr.varint(id)) return malformed("property identifier is truncated");
    struct Spec {
      std::uint32_t allowed;
      bool multi;
    };
    Spec spec{0, false};
    switch (id) {
      case 0x01:
      case 0x02:
      case 0x03:
      case 0x08:
      case 0x09:
        spec = {bit(PacketType::kPublish) | kWill, false};
        break;
      case 0x0B:
        spec = {bit(PacketType::kPublish) | bit(PacketType::kSubscribe), true};
        break;
      case 0x11:
        spec = {
            bit(PacketType::kConnect) | bit(PacketType::kConnack) | bit(PacketType::kDisconnect),
            false};
        break;
      case 0x12:
      case 0x13:
      case 0x24:
      case 0x25:
      case 0x28:
      case 0x29:
      case 0x2A:
        spec = {bit(PacketType::kConnack), false};
        break;
      case 0x15:
      case 0x16:
        spec = {bit(PacketType::kConnect) | bit(PacketType::kConnack) | bit(PacketType::kAuth),
                false};
        break;
      case 0x17:
      case 0x19:
        spec = {bit(PacketType::kConnect), false};
        break;
      case 0x18:
        spec = {kWill, false};
        break;
      case 0x1A:
        spec = {bit(PacketType::kConnack), false};
        break;
      case 0x1C:
        spec = {bit(PacketType::kConnack) | bit(PacketType::kDisconnect), false};
        break;
      case 0x1F:
        spec = {bit(PacketType::kConnack) | kAcks | bit(PacketType::kSuback) |
                    bit(PacketType::kUnsuback) | bit(PacketType::kDisconnect) |
                    bit(PacketType::kAuth),
                false};
        break;
      case 0x21:
      case 0x22:
      case 0x27:
        spec = {bit(PacketType::kConnect) | bit(PacketType::kConnack), false};
        break;
      case 0x23:
        spec = {bit(PacketType::kPublish), false};
        break;
      case 0x26:
        spec = {0xFFFFFFFFu, true};
        break;
      default:
        return malformed("unknown property identifier " + std::to_string(id));
    }
    if ((spec.allowed & where) == 0)
      return protocol_error("property " + std::to_string(id) + " is not allowed in this packet");
    if (!spec.multi) {
      std::uint64_t mask = 1ull << id;
      if (seen & mask) return protocol_error("property " + std::to_string(id) + " appears twice");
      seen |= mask;
    }
    auto byte01 = [&](std::optional<std::uint8_t>& field,
                      const char* name) -> std::optional<DecodeError> {
      std::uint8_t v;
      if (!pr.u8(v)) return malformed(std::string(name) + " is truncated");
      if (v > 1) return protocol_error(std::string(name) + " must be 0 or 1");
      field = v;
      return std::nullopt;
    };
    auto u32 = [&](std::optional<std::uint32_t>& field) -> std::optional<DecodeError> {
      std::uint32_t v;
      if (!pr.u32(v)) return malformed("property " + std::to_string(id) + " is truncated");
      field = v;
      return std::nullopt;
    };
    auto u16 = [&](std::optional<std::uint16_t>& field) -> std::optional<DecodeError> {
      std::uint16_t v;
      if (!pr.u16(v)) return malformed("property " + std::to_string(id) + " is truncated");
      field = v;
      return std::nullopt;
    };
    auto str = [&](std::optional<std::string>& field,
                   const char* name) -> std::optional<DecodeError> {
      std::string v;
      if (auto e = read_utf8(pr, v, name)) return e;
      field = std::move(v);
      return std::nullopt;
    };
    auto bin = [&](std::optional<std::string>& field) -> std::optional<DecodeError> {
      std::string v;
      if (!pr.binary(v)) return malformed("property " + std::to_string(id) + " is truncated");
      field = std::move(v);
      return std::nullopt;
    };
    std::optional<DecodeError> err;
    switch (id) {
      case 0x01:
        err = byte01(p.payload_format_indicator, "payload format indicator");
        break;
      case 0x02:
        err = u32(p.message_expiry_interval);
        break;
      case 0x03:
        err = str(p.content_type, "content type");
        break;
      case 0x08:
        err = str(p.response_topic, "response topic");
        break;
      case 0x09:
        err = bin(p.correlation_data);
        break;
      case 0x0B: {
        std::uint32_t v;
        if (!pr.varint(v)) return malformed("subscription identifier is truncated");
        if (v == 0) return protocol_error("subscription identifier 0 is not allowed");
        p.subscription_identifiers.push_back(v);
        break;
      }
      case 0x11:
        err = u32(p.session_expiry_interval);
        break;
      case 0x12:
        err = str(p.assigned_client_identifier, "assigned client identifier");
        break;
      case 0x13:
        err = u16(p.server_keep_alive);
        break;
      case 0x15:
        err = str(p.authentication_method, "authentication method");
        break;
      case 0x16:
        err = bin(p.authentication_data);
        break;
      case 0x17:
        err = byte01(p.request_problem_information, "request problem information");
        break;
      case 0x18:
        err = u32(p.will_delay_interval);
        break;
      case 0x19:
        err = byte01(p.request_response_information, "request response information");
        break;
      case 0x1A:
        err = str(p.response_information, "response information");
        break;
      case 0x1C:
        err = str(p.server_reference, "server reference");
        break;
      case 0x1F:
        err = str(p.reason_string, "reason string");
        break;
      case 0x21:
        err = u16(p.receive_maximum);
        if (!err && *p.receive_maximum == 0)
          err = protocol_error("receive maximum 0 is not allowed");
        break;
      case 0x22:
        err = u16(p.topic_alias_maximum);
        break;
      case 0x23:
        err = u16(p.topic_alias);
        break;
      case 0x24:
        err = byte01(p.maximum_qos, "maximum QoS");
        break;
      case 0x25:
        err = byte01(p.retain_available, "retain available");
        break;
      case 0x26: {
        std::string k, v;
        if (auto e = read_utf8(pr, k, "user property name")) return e;
        if (auto e = read_utf8(pr, v, "user property value")) return e;
        p.user_properties.emplace_back(std::move(k), std::move(v));
        break;
      }
      case 0x27:
        err = u32(p.maximum_packet_size);
        if (!err && *p.maximum_packet_size == 0)
          err = protocol_error("maximum packet size 0 is not allowed");
        break;
      case 0x28:
        err = byte01(p.wildcard_subscription_available, "wildcard subscription available");
        break;
      case 0x29:
        err = byte01(p.subscription_identifier_available, "subscription identifier available");
        break;
      case 0x2A:
        err = byte01(p.shared_subscription_available, "shared subscription available");
        break;
    }
    if (err) return err;
  }
  return std::nullopt;
}

// ---------------------------------------------------------------- encoding helpers

void put_u16(std::string& out, std::uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v & 0xff));
}
void put_u32(std::string& out, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xff));
}
void put_str(std::string& out, std::string_view s) {
  put_u16(out, static_cast<std::uint16_t>(s.size()));
  out.append(s.data(), s.size());
}

std::string encode_properties(const Properties& p) {
  std::string b;
  auto byte = [&](std::uint8_t id, const std::optional<std::uint8_t>& v) {
    if (v) {
      b.push_back(static_cast<char>(id));
      b.push_back(static_cast<char>(*v));
    }
  };
  auto u16 = [&](std::uint8_t id, const std::optional<std::uint16_t>& v) {
    if (v) {
      b.push_back(static_cast<char>(id));
      put_u16(b, *v);
    }
  };
  auto u32 = [&](std::uint8_t id, const std::optional<std::uint32_t>& v) {
    if (v) {
      b.push_back(static_cast<char>(id));
      put_u32(b, *v);
    }
  };
  auto str = [&](std::uint8_t id, const std::optional<std::string>& v) {
    if (v) {
      b.push_back(static_cast<char>(id));
      put_str(b, *v);
    }
  };
  byte(0x01, p.payload_format_indicator);
  u32(0x02, p.message_expiry_interval);
  str(0x03, p.content_type);
  str(0x08, p.response_topic);
  str(0x09, p.correlation_data);
  for (std::uint32_t id : p.subscription_identifiers) {
    b.push_back(0x0B);
    append_varint(b, id);
  }
  u32(0x11, p.session_expiry_interval);
  str(0x12, p.assigned_client_identifier);
  u16(0x13, p.server_keep_alive);
  str(0x15, p.authentication_method);
  str(0x16, p.authentication_data);
  byte(0x17, p.request_problem_information);
  u32(0x18, p.will_delay_interval);
  byte(0x19, p.request_response_information);
  str(0x1A, p.response_information);
  str(0x1C, p.server_reference);
  str(0x1F, p.reason_string);
  u16(0x21, p.receive_maximum);
  u16(0x22, p.topic_alias_maximum);
  u16(0x23, p.topic_alias);
  byte(0x24, p.maximum_qos);
  byte(0x25, p.retain_available);
  for (const auto& [k, v] : p.user_properties) {
    b.push_back(0x26);
    put_str(b, k);
    put_str(b, v);
  }
  u32(0x27, p.maximum_packet_size);
  byte(0x28, p.wildcard_subscription_available);
  byte(0x29, p.subscription_identifier_available);
  byte(0x2A, p.shared_subscription_available);
  std::string out;
  append_varint(out, static_cast<std::uint32_t>(b.size()));
  out += b;
  return out;
}

std::string frame(std::uint8_t header, const std::string& body) {
  std::string out;
  out.reserve(body.size() + 5);
  out.push_back(static_cast<char>(header));
  append_varint(out, static_cast<std::uint32_t>(body.size()));
  out += body;
  return out;
}

// ---------------------------------------------------------------- decoders per packet

Decoded<Packet> decode_publish(Version v, const Frame& f) {
  Publish p;
  const std::uint8_t flags = f.header & 0x0f;
  p.dup = (flags & 0x08) != 0;
  p.qos = static_cast<std::uint8_t>((flags >> 1) & 0x03);
  p.retain = (flags & 0x01) != 0;
  if (p.qos == 3) return malformed("PUBLISH with QoS 3");
  if (p.qos == 0 && p.dup) return malformed("PUBLISH with QoS 0 and DUP set");
  Reader r(f.body);
  if (auto e = read_utf8(r, p.topic, "topic name")) return *e;
  if (p.topic.find_first_of("+#") != std::string::npos)
    return DecodeError{reason::kTopicNameInvalid, "topic name contains a wildcard"};
  if (p.qos > 0) {
    if (!r.u16(p.packet_id)) return malformed("PUBLISH packet identifier is truncated");
    if (p.packet_id == 0) return malformed("PUBLISH packet identifier 0");
  }
  if (v == Version::kV5) {
    if (auto e = read_properties(r, bit(PacketType::kPublish), p.properties)) return *e;
  }
  if (p.topic.empty() && !(v == Version::kV5 && p.properties.topic_alias))
    return DecodeError{reason::kTopicNameInvalid, "empty topic name"};
  std::string_view payload = r.rest();
  p.payload.assign(payload.data(), payload.size());
  if (p.properties.payload_format_indicator.value_or(0) == 1 && !valid_mqtt_utf8(p.payload))
    return DecodeError{reason::kPayloadFormatInvalid, "payload is marked UTF-8 but is not"};
  return Packet(std::move(p));
}

Decoded<Packet> decode_ack(Version v, const Frame& f, PacketType type) {
  Ack a;
  a.type = type;
  Reader r(f.body);
  if (!r.u16(a.packet_id)) return malformed(std::string(to_string(type)) + " is truncated");
  if (a.packet_id == 0) return malformed(std::string(to_string(type)) + " packet identifier 0");
  if (v == Version::kV5 && !r.done()) {
    if (!r.u8(a.reason_code)) return malformed("reason code is truncated");
    if (!r.done()) {
      if (auto e = read_properties(r, bit(type), a.properties)) return *e;
    }
  }
  if (!r.done()) return malformed(std::string(to_string(type)) + " has trailing bytes");
  return Packet(std::move(a));
}

Decoded<Packet> decode_subscribe(Version v, const Frame& f) {
  Subscribe s;
  Reader r(f.body);
  if (!r.u16(s.packet_id)) return malformed("SUBSCRIBE is truncated");
  if (s.packet_id == 0) return malformed("SUBSCRIBE packet identifier 0");
  if (v == Version::kV5) {
    if (auto e = read_properties(r, bit(PacketType::kSubscribe), s.properties)) return *e;
  }
  while (!r.done()) {
    Subscription sub;
    if (auto e = read_utf8(r, sub.filter, "topic filter")) return *e;
    std::uint8_t options;
    if (!r.u8(options)) return malformed("subscription options are truncated");
    sub.qos = options & 0x03;
    if (sub.qos == 3) return malformed("subscription with QoS 3");
    if (v == Version::kV311) {
      if (options & 0xFC) return malformed("reserved bits set in the requested QoS byte");
    } else {
      if (options & 0xC0) return malformed("reserved bits set in the subscription options");
      sub.no_local = (options & 0x04) != 0;
      sub.retain_as_published = (options & 0x08) != 0;
      sub.retain_handling = static_cast<std::uint8_t>((options >> 4) & 0x03);
      if (sub.retain_handling == 3) return malformed("retain handling 3");
    }
    s.subscriptions.push_back(std::move(sub));
  }
  if (s.subscriptions.empty()) return protocol_error("SUBSCRIBE without a topic filter");
  return Packet(std::move(s));
}

Decoded<Packet> decode_unsubscribe(Version v, const Frame& f) {
  Unsubscribe u;
  Reader r(f.body);
  if (!r.u16(u.packet_id)) return malformed("UNSUBSCRIBE is truncated");
  if (u.packet_id == 0) return malformed("UNSUBSCRIBE packet identifier 0");
  if (v == Version::kV5) {
    if (auto e = read_properties(r, bit(PacketType::kUnsubscribe), u.properties)) return *e;
  }
  while (!r.done()) {
    std::string filter;
    if (auto e = read_utf8(r, filter, "topic filter")) return *e;
    u.filters.push_back(std::move(filter));
  }
  if (u.filters.empty()) return protocol_error("UNSUBSCRIBE without a topic filter");
  return Packet(std::move(u));
}

Decoded<Packet> decode_reason_packet(Version v, const Frame& f, PacketType type) {
  Reader r(f.body);
  std::uint8_t code = 0;
  Properties props;
  if (v == Version::kV5 && !r.done()) {
    if (!r.u8(code)) return malformed("reason code is truncated");
    if (!r.done()) {
      if (auto e = read_properties(r, bit(type), props)) return *e;
    }
  }
  if (!r.done()) return malformed(std::string(to_string(type)) + " has trailing bytes");
  if (type == PacketType::kAuth) {
    if (v != Version::kV5) return malformed("AUTH is an MQTT 5 packet");
    return Packet(Auth{code, std::move(props)});
  }
  return Packet(Disconnect{code, std::move(props)});
}

Decoded<Packet> decode_suback(Version v, const Frame& f, PacketType type) {
  Reader r(f.body);
  std::uint16_t id;
  if (!r.u16(id)) return malformed("acknowledgement is truncated");
  Properties props;
  if (v == Version::kV5) {
    if (auto e = read_properties(r, bit(type), props)) return *e;
  }
  std::vector<std::uint8_t> codes;
  std::string_view rest = r.rest();
  if (type == PacketType::kUnsuback && v == Version::kV311 && !rest.empty())
    return malformed("UNSUBACK has trailing bytes");
  if (type == PacketType::kSuback && rest.empty())
    return protocol_error("SUBACK without reason codes");
  for (char c : rest) codes.push_back(static_cast<std::uint8_t>(c));
  if (type == PacketType::kSuback) return Packet(Suback{id, std::move(codes), std::move(props)});
  return Packet(Unsuback{id, std::move(codes), std::move(props)});
}

Decoded<Packet> decode_connack(Version v, const Frame& f) {
  Reader r(f.body);
  std::uint8_t flags, code;
  if (!r.u8(flags) || !r.u8(code)) return malformed("CONNACK is truncated");
  if (flags & 0xFE) return malformed("reserved CONNACK flags set");
  Connack c{(flags & 1) != 0, code, {}};
  if (v == Version::kV5) {
    if (auto e = read_properties(r, bit(PacketType::kConnack), c.properties)) return *e;
  }
  if (!r.done()) return malformed("CONNACK has trailing bytes");
  return Packet(std::move(c));
}

}  // namespace

Decoded<Connect> decode_connect(const Frame& f) {
  if ((f.header >> 4) != static_cast<std::uint8_t>(PacketType::kConnect))
    return protocol_error("the first packet must be CONNECT");
  if ((f.header & 0x0f) != 0) return malformed("CONNECT fixed-header flags must be 0");
  Reader r(f.body);
  std::string name;
  if (!r.binary(name)) return malformed("protocol name is truncated");
  std::uint8_t level;
  if (!r.u8(level)) return malformed("protocol level is truncated");
  if (name != "MQTT" && name != "MQIsdp") return malformed("unknown protocol name");
  if (name == "MQIsdp" || (level != 4 && level != 5))
    return DecodeError{reason::kUnsupportedProtocolVersion,
                       "unsupported protocol level " + std::to_string(level) +
                           " (MQTT 3.1.1 and 5 are supported)"};
  Connect c;
  c.version = static_cast<Version>(level);
  std::uint8_t flags;
  if (!r.u8(flags) || !r.u16(c.keep_alive)) return malformed("CONNECT is truncated");
  if (flags & 0x01) return malformed("reserved CONNECT flag set");
  c.clean_start = (flags & 0x02) != 0;
  const bool will = (flags & 0x04) != 0;
  const auto will_qos = static_cast<std::uint8_t>((flags >> 3) & 0x03);
  const bool will_retain = (flags & 0x20) != 0;
  const bool has_password = (flags & 0x40) != 0;
  const bool has_username = (flags & 0x80) != 0;
  if (!will && (will_qos != 0 || will_retain))
    return malformed("will QoS or retain without a will");
  if (will_qos == 3) return malformed("will QoS 3");
  if (c.version == Version::kV311 && has_password && !has_username)
    return malformed("password without user name");
  if (c.version == Version::kV5) {
    if (auto e = read_properties(r, bit(PacketType::kConnect), c.properties)) return *e;
  }
  if (auto e = read_utf8(r, c.client_id, "client identifier")) return *e;
  if (will) {
    Will w;
    w.qos = will_qos;
    w.retain = will_retain;
    if (c.version == Version::kV5) {
      if (auto e = read_properties(r, kWill, w.properties)) return *e;
    }
    if (auto e = read_utf8(r, w.topic, "will topic")) return *e;
    if (w.topic.empty() || w.topic.find_first_of("+#") != std::string::npos)
      return DecodeError{reason::kTopicNameInvalid, "will topic is empty or has a wildcard"};
    if (!r.binary(w.payload)) return malformed("will payload is truncated");
    if (w.properties.payload_format_indicator.value_or(0) == 1 && !valid_mqtt_utf8(w.payload))
      return DecodeError{reason::kPayloadFormatInvalid, "will payload is marked UTF-8 but is not"};
    c.will = std::move(w);
  }
  if (has_username) {
    std::string u;
    if (auto e = read_utf8(r, u, "user name")) return *e;
    c.username = std::move(u);
  }
  if (has_password) {
    std::string pw;
    if (!r.binary(pw)) return malformed("password is truncated");
    c.password = std::move(pw);
  }
  if (!r.done()) return malformed("CONNECT has trailing bytes");
  return c;
}

Decoded<Packet> decode(Version v, const Frame& f) {
  const auto type = static_cast<PacketType>(f.header >> 4);
  const std::uint8_t flags = f.header & 0x0f;
  const bool needs_0010 = type == PacketType::kPubrel || type == PacketType::kSubscribe ||
                          type == PacketType::kUnsubscribe;
  if (type != PacketType::kPublish && flags != (needs_0010 ? 0x02 : 0x00))
    return malformed(std::string("invalid fixed-header flags for ") + to_string(type));
  switch (type) {
    case PacketType::kConnect:
      return protocol_error("a second CONNECT");
    case PacketType::kConnack:
      return decode_connack(v, f);
    case PacketType::kPublish:
      return decode_publish(v, f);
    case PacketType::kPuback:
    case PacketType::kPubrec:
    case PacketType::kPubrel:
    case PacketType::kPubcomp:
      return decode_ack(v, f, type);
    case PacketType::kSubscribe:
      return decode_subscribe(v, f);
    case PacketType::kSuback:
    case PacketType::kUnsuback:
      return decode_suback(v, f, type);
    case PacketType::kUnsubscribe:
      return decode_unsubscribe(v, f);
    case PacketType::kPingreq:
    case PacketType::kPingresp:
      if (!f.body.empty()) return malformed(std::string(to_string(type)) + " with a body");
      if (type == PacketType::kPingreq) return Packet(Pingreq{});
      return Packet(Pingresp{});
    case PacketType::kDisconnect:
    case PacketType::kAuth:
      return decode_reason_packet(v, f, type);
  }
  return malformed("reserved packet type 0");
}

std::string encode(Version v, const Packet& packet) {
  const bool v5 = v == Version::kV5;
  std::string b;
  switch (type_of(packet)) {
    case PacketType::kConnect: {
      const auto& c = std::get<Connect>(packet);
      put_str(b, "MQTT");
      b.push_back(static_cast<char>(c.version));
      std::uint8_t flags = 0;
      if (c.clean_start) flags |= 0x02;
      if (c.will) {
        flags |= 0x04;
        flags = static_cast<std::uint8_t>(flags | (c.will->qos << 3));
        if (c.will->retain) flags |= 0x20;
      }
      if (c.password) flags |= 0x40;
      if (c.username) flags |= 0x80;
      b.push_back(static_cast<char>(flags));
      put_u16(b, c.keep_alive);
      if (c.version == Version::kV5) b += encode_properties(c.properties);
      put_str(b, c.client_id);
      if (c.will) {
        if (c.version == Version::kV5) b += encode_properties(c.will->properties);
        put_str(b, c.will->topic);
        put_str(b, c.will->payload);
      }
      if (c.username) put_str(b, *c.username);
      if (c.password) put_str(b, *c.password);
      return frame(0x10, b);
    }
    case PacketType::kConnack: {
      const auto& c = std::get<Connack>(packet);
      b.push_back(c.session_present ? 1 : 0);
      b.push_back(static_cast<char>(c.reason_code));
      if (v5) b += encode_properties(c.properties);
      return frame(0x20, b);
    }
    case PacketType::kPublish: {
      const auto& p = std::get<Publish>(packet);
      put_str(b, p.topic);
      if (p.qos > 0) put_u16(b, p.packet_id);
      if (v5) b += encode_properties(p.properties);
      b += p.payload;
      auto header =
          static_cast<std::uint8_t>(0x30 | (p.dup ? 0x08 : 0) | (p.qos << 1) | (p.retain ? 1 : 0));
      return frame(header, b);
    }
    case PacketType::kPuback:
    case PacketType::kPubrec:
    case PacketType::kPubrel:
    case PacketType::kPubcomp: {
      const auto& a = std::get<Ack>(packet);
      put_u16(b, a.packet_id);
      const std::string props = encode_properties(a.properties);
      if (v5 && (a.reason_code != 0 || props.size() > 1)) {
        b.push_back(static_cast<char>(a.reason_code));
        if (props.size() > 1) b += props;
      }
      auto header = static_cast<std::uint8_t>((static_cast<unsigned>(a.type) << 4) |
                                              (a.type == PacketType::kPubrel ? 0x02 : 0));
      return frame(header, b);
    }
    case PacketType::kSubscribe: {
      const auto& s = std::get<Subscribe>(packet);
      put_u16(b, s.packet_id);
      if (v5) b += encode_properties(s.properties);
      for (const auto& sub : s.subscriptions) {
        put_str(b, sub.filter);
        std::uint8_t o = sub.qos;
        if (v5) {
          if (sub.no_local) o |= 0x04;
          if (sub.retain_as_published) o |= 0x08;
          o = static_cast<std::uint8_t>(o | (sub.retain_handling << 4));
        }
        b.push_back(static_cast<char>(o));
      }
      return frame(0x82, b);
    }
    case PacketType::kSuback:
    case PacketType::kUnsuback: {
      const bool sub = type_of(packet) == PacketType::kSuback;
      const auto id =
          sub ? std::get<Suback>(packet).packet_id : std::get<Unsuback>(packet).packet_id;
      const auto& codes =
          sub ? std::get<Suback>(packet).reason_codes : std::get<Unsuback>(packet).reason_codes;
      const auto& props =
          sub ? std::get<Suback>(packet).properties : std::get<Unsuback>(packet).properties;
      put_u16(b, id);
      if (v5) b += encode_properties(props);
      if (sub || v5) {
        for (std::uint8_t c : codes) b.push_back(static_cast<char>(c));
      }
      return frame(sub ? 0x90 : 0xB0, b);
    }
    case PacketType::kUnsubscribe: {
      const auto& u = std::get<Unsubscribe>(packet);
      put_u16(b, u.packet_id);
      if (v5) b += encode_properties(u.properties);
      for (const auto& f : u.filters) put_str(b, f);
      return frame(0xA2, b);
    }
    case PacketType::kPingreq:
      return frame(0xC0, b);
    case PacketType::kPingresp:
      return frame(0xD0, b);
    case PacketType::kDisconnect:
    case PacketType::kAuth: {
      const bool disc = type_of(packet) == PacketType::kDisconnect;
      const std::uint8_t code =
          disc ? std::get<Disconnect>(packet).reason_code : std::get<Auth>(packet).reason_code;
      const auto& props =
          disc ? std::get<Disconnect>(packet).properties : std::get<Auth>(packet).properties;
      if (v5) {
        const std::string p = encode_properties(props);
        if (code != 0 || p.size() > 1) {
          b.push_back(static_cast<char>(code));
          if (p.size() > 1) b += p;
        }
      }
      return frame(disc ? 0xE0 : 0xF0, b);
    }
  }
  return {};
}

}  // namespace fk::mqtt
