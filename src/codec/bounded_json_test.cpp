#include "codec/bounded_json.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace fk::codec {
namespace {

std::string nested_json_arrays(std::size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

// CBOR: 0x81 is "array of one element"; the innermost element is 0 (0x00).
std::string nested_cbor_arrays(std::size_t depth) {
  return std::string(depth, '\x81') + std::string(1, '\0');
}

TEST(BoundedJson, AcceptsDocumentsUpToTheDepth) {
  auto ok = parse_json(nested_json_arrays(kDefaultMaxDepth));
  ASSERT_TRUE(ok.is_ok()) << ok.status().message();
  auto too_deep = parse_json(nested_json_arrays(kDefaultMaxDepth + 1));
  ASSERT_FALSE(too_deep.is_ok());
  EXPECT_EQ(too_deep.status().message(), "JSON nested deeper than 32 levels");
}

// Issue 15, defect 2: a signed API body of arrays nested ~100,000 deep killed the process.
TEST(BoundedJson, RefusesHundredThousandNestedArraysWithoutRecursing) {
  auto r = parse_json(nested_json_arrays(100000), JsonLimits{32, 1 << 20});
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kInvalidRequest);
  auto mixed = parse_json(std::string(50000, '[') + "{\"a\":" + std::string(50000, '['));
  ASSERT_FALSE(mixed.is_ok());
  EXPECT_NE(mixed.status().message().find("deeper"), std::string::npos);
}

// Issue 15, defect 1: ~120 KB of nested CBOR arrays overflowed the recursive decoder's stack.
TEST(BoundedJson, RefusesDeeplyNestedCborBeforeRecursing) {
  auto r = parse_cbor(nested_cbor_arrays(130000));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().message(), "CBOR nested deeper than 32 levels");
  // Maps too: {0: {0: ...}} (0xA1 = map of one pair, key 0x00).
  std::string pairs;
  for (int i = 0; i < 100000; ++i)
    pairs += std::string(
        "\xA1\x61"
        "k",
        3);
  pairs += std::string(1, '\0');
  EXPECT_FALSE(parse_cbor(pairs).is_ok());
  auto shallow = parse_cbor(nested_cbor_arrays(kDefaultMaxDepth));
  ASSERT_TRUE(shallow.is_ok()) << shallow.status().message();
}

TEST(BoundedJson, SizeLimitIsCheckedFirst) {
  auto r = parse_json(std::string(100, ' ') + "{}", JsonLimits{32, 64});
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().message(), "JSON larger than 64 bytes");
}

TEST(BoundedJson, MalformedInputSaysWhere) {
  auto r = parse_json("{\"a\": }");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().message().rfind("not valid JSON: ", 0), 0u) << r.status().message();
  // CBOR: a text string that is not UTF-8, a tag, trailing bytes, a huge declared length.
  EXPECT_FALSE(parse_cbor(std::string("\xA1\x61"
                                      "a"
                                      "\x62\xC3\x28",
                                      6))
                   .is_ok());
  EXPECT_FALSE(parse_cbor(std::string("\xC1\x00", 2)).is_ok());
  EXPECT_FALSE(parse_cbor(std::string("\xA0\x00", 2)).is_ok());
  EXPECT_FALSE(parse_cbor(std::string("\x9B\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF", 9)).is_ok());
}

TEST(BoundedJson, ValuesComeThrough) {
  auto r = parse_json(R"({"a":[1,-2,3.5,"x",true,null],"b":{"c":{}}})");
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ((*r)["a"][2], 3.5);
  EXPECT_EQ((*r)["b"]["c"], nlohmann::json::object());
  auto bytes = nlohmann::json::to_cbor(*r);
  auto c = parse_cbor(std::string(bytes.begin(), bytes.end()));
  ASSERT_TRUE(c.is_ok());
  EXPECT_EQ(*c, *r);
}

}  // namespace
}  // namespace fk::codec
