#include "base/status.h"

namespace fk {

std::string_view aws_exception_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk:
      return "";
    case ErrorCode::kInvalidRequest:
      return "InvalidRequestException";
    case ErrorCode::kNotFound:
      return "ResourceNotFoundException";
    case ErrorCode::kAlreadyExists:
      return "ResourceAlreadyExistsException";
    case ErrorCode::kDeleteConflict:
      return "DeleteConflictException";
    case ErrorCode::kVersionConflict:
      return "VersionConflictException";
    case ErrorCode::kVersionsLimitExceeded:
      return "VersionsLimitExceededException";
    case ErrorCode::kCertificateState:
      return "CertificateStateException";
    case ErrorCode::kCertificateValidation:
      return "CertificateValidationException";
    case ErrorCode::kCertificateConflict:
      return "CertificateConflictException";
    case ErrorCode::kRegistrationCode:
      return "RegistrationCodeValidationException";
    case ErrorCode::kMalformedPolicy:
      return "MalformedPolicyException";
    case ErrorCode::kLimitExceeded:
      return "LimitExceededException";
    case ErrorCode::kUnauthorized:
      return "UnauthorizedException";
    case ErrorCode::kUnavailable:
      return "ServiceUnavailableException";
    case ErrorCode::kInternal:
      return "InternalFailureException";
  }
  return "InternalFailureException";
}

std::string Status::to_string() const {
  if (is_ok()) return "OK";
  std::string out(aws_exception_name(code_));
  out += ": ";
  out += message_;
  return out;
}

}  // namespace fk
