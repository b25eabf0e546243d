#include "base/log.h"

#include <gtest/gtest.h>

namespace fk::log {
namespace {

TEST(Log, FormatsFieldsAndQuotes) {
  EXPECT_EQ(format_line("ca.created", {{"path", "/tmp/a"}, {"note", "two words"}}),
            "ca.created path=/tmp/a note=\"two words\"");
  EXPECT_EQ(format_line("x", {{"v", "a\"b\nc"}}), "x v=\"a\\\"b\\nc\"");
  EXPECT_EQ(format_line("x", {{"empty", ""}}), "x empty=\"\"");
}

TEST(Log, SinkAndLevel) {
  std::vector<std::string> lines;
  set_sink([&](Level, std::string_view line) { lines.emplace_back(line); });
  set_min_level(Level::kWarn);
  info("ignored");
  warn("kept", {{"k", "v"}});
  set_min_level(Level::kInfo);
  set_sink([](Level, std::string_view) {});
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], "kept k=v");
}

TEST(Log, MacroBuildsFieldsOnlyWhenEnabled) {
  int built = 0;
  auto field = [&] {
    ++built;
    return std::string("v");
  };
  std::vector<std::string> lines;
  set_sink([&](Level, std::string_view line) { lines.emplace_back(line); });
  set_min_level(Level::kWarn);
  FK_LOG_INFO("skipped", {{"k", field()}});
  EXPECT_EQ(built, 0);
  set_min_level(Level::kInfo);
  FK_LOG_INFO("kept", {{"k", field()}});
  EXPECT_EQ(built, 1);
  set_sink([](Level, std::string_view) {});
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], "kept k=v");
}

}  // namespace
}  // namespace fk::log
