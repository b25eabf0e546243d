// Status and Result<T>: errors as values on every data path.
//
// A Status carries a typed ErrorCode and a human message that says precisely what was wrong
// (it reaches operators and, through the API and MQTT edges, clients). The codes mirror AWS
// IoT's exception names so that each edge maps them exactly once (api/ to HTTP status and
// x-amzn-ErrorType, broker/provisioning to MQTT reason codes and errorCode fields).
//
// Thread-safety: plain values; safe to copy across threads.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace fk {

enum class ErrorCode {
  kOk = 0,
  kInvalidRequest,         // malformed or out-of-range input (AWS InvalidRequestException)
  kNotFound,               // ResourceNotFoundException
  kAlreadyExists,          // ResourceAlreadyExistsException
  kDeleteConflict,         // DeleteConflictException: still referenced
  kVersionConflict,        // VersionConflictException: expectedVersion mismatch
  kVersionsLimitExceeded,  // VersionsLimitExceededException
  kCertificateState,       // CertificateStateException: the status forbids the operation
  kCertificateValidation,  // CertificateValidationException: bad certificate or CSR
  kCertificateConflict,    // CertificateConflictException: same certificate registered twice
  kRegistrationCode,       // RegistrationCodeValidationException
  kMalformedPolicy,        // MalformedPolicyException
  kLimitExceeded,          // LimitExceededException
  kUnauthorized,           // UnauthorizedException
  kUnavailable,            // ServiceUnavailableException: try again later
  kInternal,               // InternalFailureException: a bug or an I/O failure
};

// The AWS exception name for a code (e.g. "ResourceNotFoundException").
std::string_view aws_exception_name(ErrorCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return {}; }

  bool is_ok() const { return code_ == ErrorCode::kOk; }
  explicit operator bool() const { return is_ok(); }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "ResourceNotFoundException: thing locker-1 does not exist"
  std::string to_string() const;

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

inline Status invalid_request(std::string m) {
  return {ErrorCode::kInvalidRequest, std::move(m)};
}
inline Status not_found(std::string m) {
  return {ErrorCode::kNotFound, std::move(m)};
}
inline Status already_exists(std::string m) {
  return {ErrorCode::kAlreadyExists, std::move(m)};
}
inline Status internal_error(std::string m) {
  return {ErrorCode::kInternal, std::move(m)};
}

// Result<T>: either a value or a non-ok Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    assert(!std::get<Status>(v_).is_ok());
  }

  bool is_ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return is_ok(); }

  const T& value() const& { return std::get<T>(v_); }
  T& value() & { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  const T& operator*() const& { return value(); }
  T& operator*() & { return value(); }
  const T* operator->() const { return &value(); }
  T* operator->() { return &value(); }

  Status status() const { return is_ok() ? Status::ok() : std::get<Status>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace fk

#define FK_CONCAT_INNER(a, b) a##b
#define FK_CONCAT(a, b) FK_CONCAT_INNER(a, b)

// Propagate a non-ok Status from an expression returning Status.
#define FK_RETURN_IF_ERROR(expr) FK_RETURN_IF_ERROR_IMPL(FK_CONCAT(fk_status_, __LINE__), expr)
#define FK_RETURN_IF_ERROR_IMPL(tmp, expr) \
  do {                                     \
    ::fk::Status tmp = (expr);             \
    if (!tmp.is_ok()) return tmp;          \
  } while (0)

// FK_ASSIGN_OR_RETURN(auto x, expr): unwrap a Result or return its Status.
#define FK_ASSIGN_OR_RETURN(lhs, expr) \
  FK_ASSIGN_OR_RETURN_IMPL(FK_CONCAT(fk_result_, __LINE__), lhs, expr)
#define FK_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.is_ok()) return tmp.status();         \
  lhs = std::move(tmp).value()
