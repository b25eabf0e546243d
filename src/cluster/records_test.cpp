#include "cluster/records.h"

#include <gtest/gtest.h>

namespace fk::cluster {
namespace {

TEST(Records, EnvelopeCarriesTheMessage) {
  broker::Message m;
  m.topic = "locker/1/a.b";
  m.payload = std::string("\x00\xff binary", 9);
  m.qos = 1;
  m.retain = true;
  m.origin_client_id = "locker-1";
  m.content_type = "application/json";
  m.correlation_data = std::string("\x01\x02", 2);
  m.user_properties = {{"k", "v"}};
  m.expires_at = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  auto e = decode_envelope(encode_envelope("node-2", 42, m), 1024);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->node, "node-2");
  EXPECT_EQ(e->id, 42u);
  EXPECT_EQ(e->message->topic, m.topic);
  EXPECT_EQ(e->message->payload, m.payload);
  EXPECT_EQ(e->message->qos, 1);
  EXPECT_TRUE(e->message->retain);
  EXPECT_EQ(e->message->origin_client_id, "locker-1");
  EXPECT_EQ(e->message->content_type, m.content_type);
  EXPECT_EQ(e->message->correlation_data, m.correlation_data);
  EXPECT_EQ(e->message->user_properties, m.user_properties);
  ASSERT_TRUE(e->message->expires_at.has_value());
  EXPECT_GT(*e->message->expires_at, std::chrono::steady_clock::now() + std::chrono::seconds(25));
}

TEST(Records, BadEnvelopesAreRefused) {
  broker::Message m;
  m.topic = "t";
  m.payload = std::string(70000, 'x');
  const std::string good = encode_envelope("n", 1, m);
  EXPECT_FALSE(decode_envelope(good, 100).has_value());  // larger than its bound
  EXPECT_FALSE(decode_envelope("", 1024).has_value());
  EXPECT_FALSE(decode_envelope("\xa1\x61n\x01", 1024).has_value());  // {"n": 1}
  EXPECT_FALSE(decode_envelope(good.substr(0, good.size() - 3), 100000).has_value());
  // Nested past the bound: refused before anything is built.
  EXPECT_FALSE(decode_envelope(std::string(100, '\x81') + '\x01', 4096).has_value());
  m.qos = 2;
  EXPECT_FALSE(decode_envelope(encode_envelope("n", 1, m), 4096).has_value());
}

TEST(Records, SessionRoundTrip) {
  broker::StoredSession s;
  s.node = "node-1";
  s.certificate_id = "abc";
  s.session_id = "s1";
  s.connected = true;
  s.lifecycle_events = true;
  s.expiry_seconds = 3600;
  s.subscriptions = {{"a/#", 1}, {"$share/g/b", 0}};
  s.will = broker::StoredWill{"will/t", std::string("\x00gone", 5), 1, true};
  s.replay_from = 77;
  auto r = decode_session(encode_session(s, 12));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->epoch, 12u);
  EXPECT_EQ(r->session.node, "node-1");
  EXPECT_EQ(r->session.subscriptions, s.subscriptions);
  ASSERT_TRUE(r->session.will.has_value());
  EXPECT_EQ(r->session.will->payload, s.will->payload);
  EXPECT_TRUE(r->session.will->retain);
  EXPECT_EQ(r->session.replay_from, 77u);
  EXPECT_FALSE(decode_session("not cbor").has_value());
}

TEST(Records, NodeRoundTrip) {
  auto n = decode_node(encode_node(NodeRecord{false, 123, "node-3"}));
  ASSERT_TRUE(n.has_value());
  EXPECT_FALSE(n->alive);
  EXPECT_EQ(n->at_ms, 123);
  EXPECT_EQ(n->by, "node-3");
}

}  // namespace
}  // namespace fk::cluster
