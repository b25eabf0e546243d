// Conformance tier: MQTT packets as hex in, expected decode (or reason code) and hex out,
// for both versions, including malformed ones; and every packet the official AWS device SDK
// sent in ../shared/vectors, decoded and re-encoded byte for byte.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "mqtt/codec.h"
#include "mqtt/topic.h"
#include "support/hex.h"

namespace fk::mqtt {
namespace {

using test::hex;
using test::unhex;

// Decodes one whole packet from bytes; CONNECT when `version` is empty.
Decoded<Packet> decode_bytes(std::optional<Version> version, const std::string& bytes,
                             std::size_t max = 1 << 20) {
  FrameReader reader(max);
  reader.feed(bytes);
  auto next = reader.next();
  if (auto* e = std::get_if<DecodeError>(&next)) return *e;
  auto frame = std::get<std::optional<Frame>>(next);
  if (!frame) return DecodeError{0xFF, "incomplete"};
  if (reader.buffered() != 0) return DecodeError{0xFE, "bytes after the packet"};
  if (!version) {
    auto c = decode_connect(*frame);
    if (auto* e = std::get_if<DecodeError>(&c)) return *e;
    return Packet(std::get<Connect>(c));
  }
  return decode(*version, *frame);
}

// Table entries are written as "<header> <remaining length> <body>"; the remaining length is
// recomputed from the body, so a table typo cannot hide a framing bug (framing has its own
// tests below). Entries named "raw: ..." are used exactly as written.
std::string packet_from_table(const char* name, std::string_view text) {
  std::string bytes = unhex(text);
  if (std::string_view(name).substr(0, 4) == "raw:") return bytes;
  std::size_t i = 1;
  while (i < bytes.size() && (static_cast<unsigned char>(bytes[i]) & 0x80)) ++i;
  std::string body = bytes.substr(i + 1);
  std::string out(1, bytes[0]);
  append_varint(out, static_cast<std::uint32_t>(body.size()));
  return out + body;
}

struct Case {
  const char* name;
  std::optional<Version> version;  // empty: a CONNECT
  const char* in;
  int reason;  // -1: must decode and re-encode to `in`; else the expected reason code
};

const Version v3 = Version::kV311;
const Version v5 = Version::kV5;

const Case kCases[] = {
    // ---- CONNECT
    {"connect 3.1.1 minimal", std::nullopt, "100c 00044d515454 04 02 003c 0000", -1},
    {"connect 5 with client id", std::nullopt, "100e 00044d515454 05 02 003c 00 000161", -1},
    {"connect 3.1.1 user+password+will", std::nullopt,
     "1021 00044d515454 04 ec 04b0 0002 6331 0003 772f74 0002 6279 0001 75 0002 7077", -1},
    {"connect 5 session expiry + receive max", std::nullopt,
     "1016 00044d515454 05 00 001e 08 11 00000e10 21 0014 0002 6331", -1},
    {"connect reserved flag", std::nullopt, "100c 00044d515454 04 03 003c 0000", 0x81},
    {"connect protocol 3.1 (MQIsdp)", std::nullopt, "100e 00064d5149736470 03 02 003c 0000", 0x84},
    {"connect protocol level 6", std::nullopt, "100c 00044d515454 06 02 003c 0000", 0x84},
    {"connect unknown protocol name", std::nullopt, "100c 00044d515458 04 02 003c 0000", 0x81},
    {"connect will qos 3", std::nullopt, "1015 00044d515454 04 1e 003c 0000 0001 74 0000", 0x81},
    {"connect will retain without will", std::nullopt, "100c 00044d515454 04 22 003c 0000", 0x81},
    {"connect 3.1.1 password without user", std::nullopt,
     "1010 00044d515454 04 42 003c 0000 0002 7077", 0x81},
    {"connect trailing byte", std::nullopt, "100d 00044d515454 04 02 003c 0000 00", 0x81},
    {"connect truncated", std::nullopt, "1008 00044d515454 04 02", 0x81},
    {"connect flags nonzero", std::nullopt, "110c 00044d515454 04 02 003c 0000", 0x81},
    {"connect client id not utf-8", std::nullopt, "100e 00044d515454 04 02 003c 0002 c328", 0x81},
    {"connect 5 will topic wildcard", std::nullopt,
     "1014 00044d515454 05 06 003c 00 0000 00 0001 23 0000", 0x90},
    {"first packet not connect", std::nullopt, "c000", 0x82},
    // ---- framing
    {"raw: remaining length of 5 bytes", v3, "30 ffffffff7f", 0x81},
    // ---- PUBLISH
    {"publish qos0", v3, "3007 0003 612f62 6869", -1},
    {"publish qos1 retain", v3, "3309 0003 612f62 0007 6869", -1},
    {"publish qos2 dup", v3, "3c09 0003 612f62 0007 6869", -1},
    {"publish 5 with user property", v5, "300d 000161 09 26 00016b 000376616c", -1},
    {"publish 5 message expiry + response topic + correlation", v5,
     "3018 000161 11 02 0000003c 08 0003 722f74 09 0003 010203 7879", -1},
    {"publish qos 3", v3, "3607 0003 612f62 6869", 0x81},
    {"publish qos0 with dup", v3, "3807 0003 612f62 6869", 0x81},
    {"publish wildcard topic", v3, "3005 0003 612f2b", 0x90},
    {"publish hash topic", v3, "3005 0003 612f23", 0x90},
    {"publish empty topic 3.1.1", v3, "3004 0000 6869", 0x90},
    {"publish packet id 0", v3, "3207 0001 61 0000 6869", 0x81},
    {"publish topic invalid utf-8", v3, "3004 0002 c328", 0x81},
    {"publish topic with U+0000", v3, "3004 0002 6100", 0x81},
    {"publish topic overlong utf-8", v3, "3004 0002 c0af", 0x81},
    {"publish topic surrogate", v3, "3005 0003 eda080", 0x81},
    {"publish truncated topic", v3, "3003 0005 61", 0x81},
    {"publish 5 session expiry not allowed", v5, "3009 000161 05 11 00000000", 0x82},
    {"publish 5 duplicate message expiry", v5, "300e 000161 0a 02 00000001 02 00000002", 0x82},
    {"publish 5 unknown property", v5, "3006 000161 02 7f00", 0x81},
    {"publish 5 property length past end", v5, "3005 000161 09 26", 0x81},
    {"publish 5 payload format utf-8 but not", v5, "3008 000161 02 0101 c328", 0x99},
    {"publish 5 payload format 2", v5, "3006 000161 02 0102", 0x82},
    {"publish 5 subscription identifier 0", v5, "3006 000161 02 0b00", 0x82},
    {"publish 5 topic alias with empty topic", v5, "3006 0000 03 230001 78", -1},
    // ---- acks
    {"puback", v3, "4002 0007", -1},
    {"puback 5 with reason", v5, "4003 0007 10", -1},
    {"puback 5 with reason string", v5, "4009 0007 97 05 1f 0002 6e6f", -1},
    {"puback packet id 0", v3, "4002 0000", 0x81},
    {"puback flags", v3, "4102 0007", 0x81},
    {"puback 3.1.1 trailing", v3, "4003 0007 00", 0x81},
    {"pubrel", v3, "6202 0007", -1},
    {"pubrel flags 0", v3, "6002 0007", 0x81},
    {"pubrec", v3, "5002 0007", -1},
    {"pubcomp", v3, "7002 0007", -1},
    // ---- SUBSCRIBE / UNSUBSCRIBE
    {"subscribe 3.1.1 two filters", v3, "820c 0001 0003 612f2b 01 0001 23 00", -1},
    {"subscribe 5 options", v5, "820a 0001 00 0003 612f62 2d", -1},
    {"subscribe 5 subscription identifier", v5, "820b 0001 02 0b05 0003 612f62 01", -1},
    {"subscribe flags 0", v3, "8006 0001 0001 61 00", 0x81},
    {"subscribe empty", v3, "8202 0001", 0x82},
    {"subscribe 3.1.1 reserved bits", v3, "8206 0001 0001 61 04", 0x81},
    {"subscribe qos 3", v3, "8206 0001 0001 61 03", 0x81},
    {"subscribe 5 retain handling 3", v5, "8207 0001 00 0001 61 30", 0x81},
    {"subscribe 5 reserved option bits", v5, "8207 0001 00 0001 61 c0", 0x81},
    {"subscribe packet id 0", v3, "8206 0000 0001 61 00", 0x81},
    {"subscribe truncated options", v3, "8205 0001 0001 61", 0x81},
    {"unsubscribe", v3, "a205 0001 0001 61", -1},
    {"unsubscribe 5", v5, "a206 0001 00 0001 61", -1},
    {"unsubscribe empty", v3, "a202 0001", 0x82},
    {"unsubscribe flags", v3, "a005 0001 0001 61", 0x81},
    // ---- server to client
    {"connack 3.1.1", v3, "2002 0000", -1},
    {"connack 3.1.1 not authorized", v3, "2002 0005", -1},
    {"connack 5 session present + props", v5, "2008 01 00 05 22000a 2400", -1},
    {"connack reserved flags", v3, "2002 0200", 0x81},
    {"suback", v3, "9005 0001 00 01 80", -1},
    {"suback 5", v5, "9005 0001 00 01 87", -1},
    {"unsuback 3.1.1", v3, "b002 0001", -1},
    {"unsuback 3.1.1 trailing (found by the fuzzer)", v3, "b003 0001 00", 0x81},
    {"suback without reason codes", v3, "9002 0001", 0x82},
    {"unsuback 5", v5, "b005 0001 00 00 11", -1},
    // ---- ping, disconnect, auth
    {"pingreq", v3, "c000", -1},
    {"pingresp", v3, "d000", -1},
    {"pingreq with body", v3, "c001 00", 0x81},
    {"pingreq flags", v3, "c100", 0x81},
    {"disconnect", v3, "e000", -1},
    {"disconnect 5 with will", v5, "e001 04", -1},
    {"disconnect 5 session expiry", v5, "e007 00 05 11 00000000", -1},
    {"disconnect 3.1.1 with body", v3, "e001 00", 0x81},
    {"auth 5", v5, "f001 18", -1},
    {"auth 3.1.1", v3, "f000", 0x81},
    {"second connect", v3, "100c 00044d515454 04 02 003c 0000", 0x82},
    {"reserved type 0", v3, "0000", 0x81},
};

class CodecConformance : public ::testing::TestWithParam<Case> {};

TEST_P(CodecConformance, HexInExpectedOut) {
  const Case& c = GetParam();
  const std::string in = packet_from_table(c.name, c.in);
  auto decoded = decode_bytes(c.version, in);
  if (c.reason >= 0) {
    auto* e = std::get_if<DecodeError>(&decoded);
    ASSERT_NE(e, nullptr) << c.name << ": decoded, but should have been refused";
    EXPECT_EQ(e->reason, c.reason) << c.name << ": " << e->message;
    EXPECT_FALSE(e->message.empty());
    return;
  }
  auto* p = std::get_if<Packet>(&decoded);
  ASSERT_NE(p, nullptr) << c.name << ": " << std::get<DecodeError>(decoded).message;
  Version v = c.version ? *c.version : std::get<Connect>(*p).version;
  EXPECT_EQ(hex(encode(v, *p)), hex(in)) << c.name;
}

INSTANTIATE_TEST_SUITE_P(Table, CodecConformance, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           std::string n = i.param.name;
                           for (char& ch : n) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return n;
                         });

TEST(CodecFields, ConnectFieldsDecoded) {
  auto d = decode_bytes(std::nullopt,
                        packet_from_table("",
                                          "1021 00044d515454 04 ec 04b0 0002 6331 0003 772f74 "
                                          "0002 6279 0001 75 0002 7077"));
  const auto& c = std::get<Connect>(std::get<Packet>(d));
  EXPECT_EQ(c.version, Version::kV311);
  EXPECT_FALSE(c.clean_start);
  EXPECT_EQ(c.keep_alive, 1200);
  EXPECT_EQ(c.client_id, "c1");
  ASSERT_TRUE(c.will);
  EXPECT_EQ(c.will->topic, "w/t");
  EXPECT_EQ(c.will->payload, "by");
  EXPECT_EQ(c.will->qos, 1);
  EXPECT_TRUE(c.will->retain);
  EXPECT_EQ(c.username, "u");
  EXPECT_EQ(c.password, "pw");
}

TEST(CodecFields, PublishPropertiesDecoded) {
  auto d = decode_bytes(
      v5, packet_from_table("", "3018 000161 11 02 0000003c 08 0003 722f74 09 0003 010203 7879"));
  const auto& p = std::get<Publish>(std::get<Packet>(d));
  EXPECT_EQ(p.topic, "a");
  EXPECT_EQ(p.payload, "xy");
  EXPECT_EQ(p.properties.message_expiry_interval, 60u);
  EXPECT_EQ(p.properties.response_topic, "r/t");
  EXPECT_EQ(p.properties.correlation_data, std::string("\x01\x02\x03", 3));
}

TEST(Framing, SplitAcrossFeedsAndBackToBack) {
  FrameReader r(1 << 20);
  std::string two = unhex("c000") + unhex("3007 0003 612f62 6869");
  r.feed(two.substr(0, 1));
  EXPECT_FALSE(std::get<std::optional<Frame>>(r.next()).has_value());
  r.feed(two.substr(1, 4));
  auto f1 = std::get<std::optional<Frame>>(r.next());
  ASSERT_TRUE(f1);
  EXPECT_EQ(f1->header, 0xc0);
  EXPECT_FALSE(std::get<std::optional<Frame>>(r.next()).has_value());
  r.feed(two.substr(5));
  auto f2 = std::get<std::optional<Frame>>(r.next());
  ASSERT_TRUE(f2);
  EXPECT_EQ(f2->size, 9u);
  EXPECT_EQ(r.buffered(), 0u);
}

TEST(Framing, RefusesOversizeBeforeBuffering) {
  FrameReader r(100);
  r.feed(unhex("30 e807"));  // announces 1000 bytes
  auto n = r.next();
  auto* e = std::get_if<DecodeError>(&n);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->reason, reason::kPacketTooLarge);
}

TEST(Framing, VarintBoundaries) {
  for (std::uint32_t v : {0u, 127u, 128u, 16383u, 16384u, 2097151u, 2097152u, 268435455u}) {
    std::string s;
    append_varint(s, v);
    EXPECT_EQ(s.size(), v < 128 ? 1u : v < 16384 ? 2u : v < 2097152 ? 3u : 4u) << v;
  }
}

TEST(Topics, FilterValidation) {
  for (const char* ok : {"a", "a/b", "+", "#", "a/+/c", "a/#", "+/+", "/", "$share/g/a/#", "a//b"})
    EXPECT_TRUE(valid_topic_filter(ok)) << ok;
  for (const char* bad : {"", "a#", "a/#/b", "a+", "a/b+/c", "##", "#/"})
    EXPECT_FALSE(valid_topic_filter(bad)) << bad;
}

TEST(Topics, Matching) {
  struct M {
    const char* filter;
    const char* topic;
    bool match;
  };
  for (const M& m : std::initializer_list<M>{{"a/b", "a/b", true},
                                             {"a/b", "a/c", false},
                                             {"a/+", "a/b", true},
                                             {"a/+", "a/b/c", false},
                                             {"a/#", "a", true},
                                             {"a/#", "a/b/c", true},
                                             {"#", "a/b", true},
                                             {"+/+", "/finance", true},
                                             {"+", "/finance", false},
                                             {"/+", "/finance", true},
                                             {"a/+", "a/", true},
                                             {"#", "$SYS/x", false},
                                             {"+/x", "$aws/x", false},
                                             {"$aws/#", "$aws/x/y", true},
                                             {"a/b/#", "a/b", true},
                                             {"sport/+/player1", "sport/tennis/player1", true},
                                             {"a/b", "a/b/c", false},
                                             {"a/b/c", "a/b", false}}) {
    EXPECT_EQ(topic_matches(m.filter, m.topic), m.match) << m.filter << " vs " << m.topic;
  }
}

TEST(Topics, AwsHashDoesNotMatchParent) {
  EXPECT_TRUE(topic_matches("sensor/#", "sensor"));
  EXPECT_FALSE(topic_matches("sensor/#", "sensor", /*hash_matches_parent=*/false));
  EXPECT_TRUE(topic_matches("sensor/#", "sensor/a", false));
  EXPECT_TRUE(topic_matches("#", "sensor", false));
}

TEST(Topics, SharedFilters) {
  auto s = parse_shared_filter("$share/workers/jobs/+");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->group, "workers");
  EXPECT_EQ(s->filter, "jobs/+");
  EXPECT_FALSE(parse_shared_filter("jobs/+"));
  EXPECT_TRUE(parse_shared_filter("$share/g")->group.empty());
  EXPECT_TRUE(parse_shared_filter("$share//a")->group.empty());
  EXPECT_TRUE(parse_shared_filter("$share/g+/a")->group.empty());
}

// ---- the official AWS SDK's bytes

std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(AwsSdkVectors, EveryCapturedPacketDecodesAndReencodesByteForByte) {
  std::filesystem::path root = FK_VECTORS_DIR "/fleet-provisioning";
  ASSERT_TRUE(std::filesystem::exists(root)) << root;
  int packets = 0, connects = 0;
  std::vector<std::filesystem::path> scenarios;
  for (auto& s : std::filesystem::directory_iterator(root)) scenarios.push_back(s.path());
  std::sort(scenarios.begin(), scenarios.end());
  for (const auto& scenario : scenarios) {
    std::vector<std::filesystem::path> files;
    for (auto& f : std::filesystem::directory_iterator(scenario)) {
      if (f.path().extension() == ".bin") files.push_back(f.path());
    }
    std::sort(files.begin(), files.end());
    std::map<std::string, Version> version_of_role;  // "claim", "device"
    for (const auto& f : files) {
      std::string name = f.filename().string();  // 001-claim-c2s-CONNECT.bin
      std::string role = name.substr(4, name.find('-', 4) - 4);
      std::string bytes = read_all(f);
      const bool is_connect = name.find("-CONNECT.bin") != std::string::npos;
      std::optional<Version> v;
      if (!is_connect) {
        ASSERT_TRUE(version_of_role.count(role)) << f;
        v = version_of_role[role];
      }
      auto d = decode_bytes(v, bytes);
      auto* p = std::get_if<Packet>(&d);
      ASSERT_NE(p, nullptr) << f << ": " << std::get<DecodeError>(d).message;
      if (is_connect) {
        const auto& c = std::get<Connect>(*p);
        version_of_role[role] = c.version;
        EXPECT_EQ(c.keep_alive, 1200) << f;
        ASSERT_TRUE(c.username) << f;  // SDK metrics, ignored for mTLS
        EXPECT_EQ(c.username->rfind("?SDK=", 0), 0u) << f;
        EXPECT_FALSE(c.password) << f;
        ++connects;
      }
      EXPECT_EQ(hex(encode(is_connect ? std::get<Connect>(*p).version : *v, *p)), hex(bytes)) << f;
      ++packets;
    }
  }
  EXPECT_GT(connects, 13);
  EXPECT_GT(packets, 150);
}

}  // namespace
}  // namespace fk::mqtt
