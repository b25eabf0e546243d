#include "base/metrics.h"

#include <gtest/gtest.h>

namespace fk::metrics {
namespace {

TEST(Metrics, HistogramBucketsAreCumulativeAndEndWithInf) {
  Histogram h;
  h.observe(0.00005);  // first bucket
  h.observe(0.003);    // le 0.005
  h.observe(0.003);
  h.observe(42);  // +Inf only
  const auto s = h.snapshot();
  EXPECT_EQ(s.count, 4u);
  EXPECT_EQ(s.cumulative.front(), 1u);
  EXPECT_EQ(s.cumulative[4], 1u);                              // le 0.0025
  EXPECT_EQ(s.cumulative[5], 3u);                              // le 0.005
  EXPECT_EQ(s.cumulative[Histogram::kBounds.size() - 1], 3u);  // le 10
  EXPECT_EQ(s.cumulative.back(), 4u);
  EXPECT_NEAR(s.sum, 42.00605, 1e-5);
}

TEST(Metrics, ExpositionWritesOneHeaderPerFamilyAndEscapesLabels) {
  Exposition out;
  out.counter("x_total", "X.", 3, {{"reason", "a\"b\\c\nd"}});
  out.counter("x_total", "X.", 4, {{"reason", "plain"}});
  out.gauge("y", "Y.", 1.5);
  const std::string text = out.text();
  EXPECT_EQ(text,
            "# HELP x_total X.\n# TYPE x_total counter\n"
            "x_total{reason=\"a\\\"b\\\\c\\nd\"} 3\n"
            "x_total{reason=\"plain\"} 4\n"
            "# HELP y Y.\n# TYPE y gauge\ny 1.5\n");
}

TEST(Metrics, LabeledSeriesAreCappedIntoOther) {
  LabeledCounter c({"k"}, 2);
  c.with({"a"}).add();
  c.with({"b"}).add();
  c.with({"c"}).add(5);  // past the cap
  c.with({"d"}).add();
  std::map<std::string, std::uint64_t> seen;
  c.each([&](const Labels& l, const Counter& v) { seen[l.at(0).second] = v.value(); });
  EXPECT_EQ(seen, (std::map<std::string, std::uint64_t>{{"a", 1}, {"b", 1}, {"other", 6}}));
}

TEST(Metrics, HistogramExpositionHasBucketsSumAndCount) {
  Histogram h;
  h.observe(0.2);
  Exposition out;
  out.histogram("d_seconds", "D.", h, {{"op", "x"}});
  const std::string text = out.text();
  EXPECT_NE(text.find("d_seconds_bucket{op=\"x\",le=\"0.25\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("d_seconds_bucket{op=\"x\",le=\"0.1\"} 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("d_seconds_bucket{op=\"x\",le=\"+Inf\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("d_seconds_count{op=\"x\"} 1\n"), std::string::npos);
}

}  // namespace
}  // namespace fk::metrics
