#include "provisioning/ownership_token.h"

#include <gtest/gtest.h>

#include "crypto/hash.h"

namespace fk::provisioning {
namespace {

const std::string kNew(64, 'a');
const std::string kClaim(64, 'c');

TEST(OwnershipToken, RoundTripAndEveryRefusal) {
  OwnershipTokens tokens(std::string(32, 'k'));
  const EpochSeconds now = 1795000000;
  std::string t = tokens.issue({kNew, kClaim, now + kOwnershipTokenLifetime, "n1"});
  // Token characters survive JSON and CBOR text strings and the SDKs' checks.
  EXPECT_EQ(
      t.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."),
      std::string::npos);
  auto ok = tokens.verify(t, kClaim, now + 10);
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  EXPECT_EQ(ok->certificate_id, kNew);
  EXPECT_EQ(ok->nonce, "n1");

  auto msg = [&](std::string_view token, std::string_view claim, EpochSeconds at) {
    auto r = tokens.verify(token, claim, at);
    EXPECT_FALSE(r.is_ok());
    return r.status().message();
  };
  EXPECT_EQ(msg("", kClaim, now), "Certificate ownership token cannot be empty.");
  EXPECT_NE(msg("nodot", kClaim, now).find("malformed"), std::string::npos);
  EXPECT_NE(msg("a.b$", kClaim, now).find("malformed"), std::string::npos);
  EXPECT_NE(msg(t, kClaim, now + kOwnershipTokenLifetime).find("expired"), std::string::npos);
  EXPECT_NE(msg(t, std::string(64, 'd'), now).find("another claim certificate"), std::string::npos);
  // Another key (another fleetkey), or a changed claim: not ours.
  OwnershipTokens other(std::string(32, 'x'));
  EXPECT_NE(msg(other.issue({kNew, kClaim, now + 3600, "n"}), kClaim, now).find("not issued"),
            std::string::npos);
  std::string forged = crypto::base64url_encode(R"({"c":")" + std::string(64, 'b') + R"(","k":")" +
                                                kClaim + R"(","e":1795003600,"n":"n1"})") +
                       t.substr(t.find('.'));
  EXPECT_NE(msg(forged, kClaim, now).find("not issued"), std::string::npos);
}

TEST(Base64url, RoundTripsEveryLength) {
  std::string data;
  for (int i = 0; i < 70; ++i) {
    auto back = crypto::base64url_decode(crypto::base64url_encode(data));
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*back, data);
    data.push_back(static_cast<char>(i * 37));
  }
  EXPECT_FALSE(crypto::base64url_decode("a").has_value());
  EXPECT_FALSE(crypto::base64url_decode("ab+c").has_value());
}

}  // namespace
}  // namespace fk::provisioning
