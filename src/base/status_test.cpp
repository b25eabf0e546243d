#include "base/status.h"

#include <gtest/gtest.h>

namespace fk {
namespace {

Result<int> parse_positive(int v) {
  if (v <= 0) return invalid_request("must be positive");
  return v;
}

Result<int> doubled(int v) {
  FK_ASSIGN_OR_RETURN(int x, parse_positive(v));
  return 2 * x;
}

TEST(Status, OkAndError) {
  EXPECT_TRUE(Status::ok().is_ok());
  Status s = not_found("thing x does not exist");
  EXPECT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), ErrorCode::kNotFound);
  EXPECT_EQ(s.to_string(), "ResourceNotFoundException: thing x does not exist");
}

TEST(Status, ExceptionNamesMatchAws) {
  EXPECT_EQ(aws_exception_name(ErrorCode::kDeleteConflict), "DeleteConflictException");
  EXPECT_EQ(aws_exception_name(ErrorCode::kCertificateState), "CertificateStateException");
  EXPECT_EQ(aws_exception_name(ErrorCode::kVersionsLimitExceeded),
            "VersionsLimitExceededException");
}

TEST(Result, PropagatesErrors) {
  EXPECT_EQ(*doubled(4), 8);
  auto r = doubled(-1);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kInvalidRequest);
  EXPECT_EQ(r.status().message(), "must be positive");
}

}  // namespace
}  // namespace fk
