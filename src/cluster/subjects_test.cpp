#include "cluster/subjects.h"

#include <gtest/gtest.h>

namespace fk::cluster {
namespace {

TEST(Subjects, PlainLevelsStayReadable) {
  EXPECT_EQ(topic_to_subject("locker/101/status"), "locker.101.status");
  EXPECT_EQ(topic_to_subject("a_b-c"), "a_b-c");
}

TEST(Subjects, LevelsNatsCannotCarryAreEscaped) {
  // '.', '*', '>', spaces, '$', '=' and empty levels: each one token, never a wildcard.
  EXPECT_EQ(topic_to_subject("a.b/c"), "=612e62.c");
  EXPECT_EQ(topic_to_subject("*/>"), "=2a.=3e");
  EXPECT_EQ(topic_to_subject("a b"), "=612062");
  EXPECT_EQ(topic_to_subject("$aws/things"), "=24617773.things");
  EXPECT_EQ(topic_to_subject("/a//"), "=.a.=.=");
  EXPECT_EQ(topic_to_subject("=61"), "=3d3631");
  for (const char* t :
       {"a.b/c", "*/>", "a b", "$aws/x", "/a//", "=61", "/", "x/\xff\x01/y", "a/b/c/d/e/f/g/h"}) {
    auto back = subject_to_topic(topic_to_subject(t));
    ASSERT_TRUE(back.has_value()) << t;
    EXPECT_EQ(*back, t);
  }
}

TEST(Subjects, DistinctTopicsNeverShareASubject) {
  EXPECT_NE(topic_to_subject("a.b"), topic_to_subject("a/b"));
  EXPECT_NE(topic_to_subject("=61"), topic_to_subject("a"));
  EXPECT_NE(topic_to_subject(""), topic_to_subject("/"));
}

TEST(Subjects, MalformedSubjectsAreRefused) {
  EXPECT_FALSE(subject_to_topic("a..b"));
  EXPECT_FALSE(subject_to_topic("=6"));
  EXPECT_FALSE(subject_to_topic("=zz"));
  EXPECT_FALSE(subject_to_topic("a*"));
}

TEST(Subjects, FiltersMapWildcards) {
  EXPECT_EQ(filter_to_subjects("a/+/c"), std::vector<std::string>{"a.*.c"});
  // '#' matches the parent level in MQTT: both subjects.
  EXPECT_EQ(filter_to_subjects("a/#"), (std::vector<std::string>{"a.>", "a"}));
  EXPECT_EQ(filter_to_subjects("#"), std::vector<std::string>{">"});
  EXPECT_EQ(filter_to_subjects("+/a.b/#"), (std::vector<std::string>{"*.=612e62.>", "*.=612e62"}));
  EXPECT_EQ(filter_to_subjects("x"), std::vector<std::string>{"x"});
}

TEST(Subjects, KeysAreOneToken) {
  EXPECT_EQ(key_for("locker-1"), "locker-1");
  EXPECT_EQ(key_for("a/b.c"), "=612f622e63");
  EXPECT_EQ(key_for(""), "=");
}

}  // namespace
}  // namespace fk::cluster
