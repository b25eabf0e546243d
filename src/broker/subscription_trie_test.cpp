#include "broker/subscription_trie.h"

#include <gtest/gtest.h>

#include <set>

namespace fk::broker {
namespace {

Session* s(std::uintptr_t n) {
  return reinterpret_cast<Session*>(n * 16);
}

std::set<Session*> match(const SubscriptionTrie& t, std::string_view topic) {
  std::set<Session*> out;
  t.match(topic, [&](Session* x, const SubscriptionOptions&) { out.insert(x); });
  return out;
}

// may_match() tells publishers on other shards whether this shard needs the message at all.
TEST(SubscriptionTrie, MayMatchFollowsDollarAndOtherFilters) {
  SubscriptionTrie t;
  EXPECT_FALSE(t.may_match("$aws/events/presence/connected/c1"));
  EXPECT_FALSE(t.may_match("a/b"));
  t.add("#", s(1), {});  // matches every topic but no '$' topic
  EXPECT_TRUE(t.may_match("a/b"));
  EXPECT_FALSE(t.may_match("$aws/events/presence/connected/c1"));
  t.add("$aws/events/presence/+/+", s(2), {});
  t.add("$aws/events/presence/+/+", s(2), {});  // the same subscription again: counted once
  EXPECT_TRUE(t.may_match("$aws/events/presence/connected/c1"));
  t.remove("$aws/events/presence/+/+", s(2));
  EXPECT_FALSE(t.may_match("$aws/events/presence/connected/c1"));
  t.remove("#", s(1));
  t.remove("#", s(1));  // not there any more: no change
  EXPECT_FALSE(t.may_match("a/b"));
  EXPECT_EQ(t.size(), 0u);
}

TEST(SubscriptionTrie, MatchesLikeAwsIot) {
  SubscriptionTrie t;
  t.add("a/b", s(1), {});
  t.add("a/+", s(2), {});
  t.add("a/#", s(3), {});
  t.add("#", s(4), {});
  t.add("+/b", s(5), {});
  t.add("$aws/events/#", s(6), {});
  EXPECT_EQ(match(t, "a/b"), (std::set<Session*>{s(1), s(2), s(3), s(4), s(5)}));
  EXPECT_EQ(match(t, "a/c/d"), (std::set<Session*>{s(3), s(4)}));
  EXPECT_EQ(match(t, "a"), (std::set<Session*>{s(4)}));  // "a/#" does not match "a" (AWS)
  EXPECT_EQ(match(t, "$aws/events/x"), (std::set<Session*>{s(6)}));  // no wildcard-first match
  EXPECT_EQ(t.size(), 6u);
}

TEST(SubscriptionTrie, RemoveAndReplace) {
  SubscriptionTrie t;
  t.add("x/+", s(1), {0, false, false});
  t.add("x/+", s(1), {1, false, false});  // replaces, no duplicate
  EXPECT_EQ(t.size(), 1u);
  std::uint8_t qos = 9;
  t.match("x/y", [&](Session*, const SubscriptionOptions& o) { qos = o.qos; });
  EXPECT_EQ(qos, 1);
  t.remove("x/+", s(1));
  t.remove("x/+", s(1));  // idempotent
  t.remove("never/there", s(2));
  EXPECT_EQ(t.size(), 0u);
  EXPECT_TRUE(match(t, "x/y").empty());
}

}  // namespace
}  // namespace fk::broker
