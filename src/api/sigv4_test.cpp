// SigV4 verification against a request signed by botocore (the aws CLI's signer).
#include "api/sigv4.h"

#include <gtest/gtest.h>

namespace fk::api {
namespace {

constexpr EpochSeconds kSignedAt = 1795912319;  // 2026-11-29T00:31:59Z

// Signed with botocore.auth.SigV4Auth(Credentials("AKIDEXAMPLE", kSecret), "iot", "us-east-1").
net::HttpRequest signed_request() {
  net::HttpRequest r;
  r.method = "PUT";
  r.target = "/certificates/abc%3Adef?newStatus=REVOKED&b=x%20y";
  r.body = R"({"a":1})";
  r.headers = {{"host", "127.0.0.1:8443"},
               {"content-type", "application/json"},
               {"x-amzn-principal", "arn:aws:iot:us-east-1:123456789012:cert/abc"},
               {"x-amz-date", "20261129T003159Z"},
               {"user-agent", "aws-cli/2 (not signed)"},
               {"authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261129/us-east-1/iot/aws4_request, "
                "SignedHeaders=content-type;host;x-amz-date;x-amzn-principal, "
                "Signature=adc26d796b1df47d9d294d01c75bb13163ab2392e07319da1ef31b59211bd50f"}};
  return r;
}

std::optional<std::string> secrets(const std::string& id) {
  if (id == "AKIDEXAMPLE") return std::string("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
  return std::nullopt;
}

std::string exception_of(const net::HttpRequest& r, EpochSeconds now = kSignedAt,
                         const std::string& region = "us-east-1") {
  auto e = verify_sigv4(r, secrets, region, now);
  return e ? e->exception : "";
}

TEST(SigV4, AcceptsBotocoreSignature) {
  EXPECT_EQ(exception_of(signed_request()), "");
}

TEST(SigV4, SignsExactlyAsBotocore) {
  net::HttpRequest r = signed_request();
  const std::string botocore = r.header("authorization");
  r.headers.erase(r.headers.begin() + 3, r.headers.end());  // keep content-type, host, principal
  sign_sigv4(r, "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-east-1", kSignedAt);
  EXPECT_EQ(r.header("x-amz-date"), "20261129T003159Z");
  EXPECT_EQ(r.header("authorization"), botocore);
  EXPECT_EQ(exception_of(r), "");
  sign_sigv4(r, "AKIDEXAMPLE", "wrong-secret", "us-east-1", kSignedAt);
  EXPECT_EQ(exception_of(r), "InvalidSignatureException");
}

TEST(SigV4, AcceptsSkewUpTo15Minutes) {
  EXPECT_EQ(exception_of(signed_request(), kSignedAt + 14 * 60), "");
  EXPECT_EQ(exception_of(signed_request(), kSignedAt - 14 * 60), "");
  EXPECT_EQ(exception_of(signed_request(), kSignedAt + 16 * 60), "InvalidSignatureException");
  EXPECT_EQ(exception_of(signed_request(), kSignedAt - 16 * 60), "InvalidSignatureException");
}

TEST(SigV4, RefusesEveryTamperedPart) {
  auto body = signed_request();
  body.body = R"({"a":2})";
  EXPECT_EQ(exception_of(body), "InvalidSignatureException");
  auto path = signed_request();
  path.target = "/certificates/abc%3Adeg?newStatus=REVOKED&b=x%20y";
  EXPECT_EQ(exception_of(path), "InvalidSignatureException");
  auto query = signed_request();
  query.target = "/certificates/abc%3Adef?newStatus=ACTIVE&b=x%20y";
  EXPECT_EQ(exception_of(query), "InvalidSignatureException");
  auto header = signed_request();
  header.headers[2].second = "arn:aws:iot:us-east-1:123456789012:cert/other";
  EXPECT_EQ(exception_of(header), "InvalidSignatureException");
  // Unsigned headers may change.
  auto agent = signed_request();
  agent.headers[4].second = "something else";
  EXPECT_EQ(exception_of(agent), "");
}

TEST(SigV4, RefusesWrongKeyRegionServiceAndMissingParts) {
  auto unknown = signed_request();
  unknown.headers[5].second.replace(unknown.headers[5].second.find("AKIDEXAMPLE"), 11,
                                    "AKIDUNKNOWN");
  EXPECT_EQ(exception_of(unknown), "UnrecognizedClientException");
  EXPECT_EQ(exception_of(signed_request(), kSignedAt, "eu-west-1"), "InvalidSignatureException");
  auto service = signed_request();
  service.headers[5].second.replace(service.headers[5].second.find("/iot/"), 5, "/s3x/");
  EXPECT_EQ(exception_of(service), "InvalidSignatureException");
  auto none = signed_request();
  none.headers.pop_back();
  EXPECT_EQ(exception_of(none), "MissingAuthenticationTokenException");
  auto garbage = signed_request();
  garbage.headers[5].second = "AWS4-HMAC-SHA256 nonsense";
  EXPECT_EQ(exception_of(garbage), "IncompleteSignatureException");
  auto nodate = signed_request();
  nodate.headers[3].second = "yesterday";
  EXPECT_EQ(exception_of(nodate), "IncompleteSignatureException");
}

TEST(SigV4, CanonicalQuerySortsAndEncodes) {
  EXPECT_EQ(canonical_query("b=2&a=x%20y&c"), "a=x%20y&b=2&c=");
  EXPECT_EQ(canonical_query(""), "");
  EXPECT_EQ(uri_encode("/a b/%3A~", true), "/a%20b/%253A~");
}

}  // namespace
}  // namespace fk::api
