#include "base/strings.h"

#include <gtest/gtest.h>

namespace fk {
namespace {

TEST(Strings, Hex) {
  EXPECT_EQ(to_hex(std::string_view("\x00\xff\x10", 3)), "00ff10");
  EXPECT_EQ(to_hex(std::string_view()), "");
}

TEST(Strings, ConstantTimeEquals) {
  EXPECT_TRUE(constant_time_equals("secret", "secret"));
  EXPECT_FALSE(constant_time_equals("secret", "secreT"));
  EXPECT_FALSE(constant_time_equals("secret", "secret1"));
  EXPECT_TRUE(constant_time_equals("", ""));
}

TEST(Strings, NonWhitespaceCount) {
  EXPECT_EQ(count_non_whitespace("{ \"a\" :\n\t1 }"), 7u);
}

TEST(Strings, FormatUtc) {
  EXPECT_EQ(format_utc(2524607999), "2049-12-31T23:59:59Z");
  EXPECT_EQ(format_utc(0), "1970-01-01T00:00:00Z");
}

}  // namespace
}  // namespace fk
