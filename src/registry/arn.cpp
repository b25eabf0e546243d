#include "registry/arn.h"

namespace fk::registry {

std::string ArnScope::make(std::string_view kind, std::string_view id) const {
  std::string out = "arn:aws:iot:" + region + ":" + account_id + ":";
  out += kind;
  out += id;
  return out;
}

Result<ParsedArn> parse_arn(const ArnScope& scope, std::string_view arn) {
  std::string prefix = "arn:aws:iot:" + scope.region + ":" + scope.account_id + ":";
  if (arn.substr(0, prefix.size()) != prefix)
    return invalid_request("'" + std::string(arn) + "' is not an ARN of this account (" + prefix +
                           "...)");
  std::string_view rest = arn.substr(prefix.size());
  auto slash = rest.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == rest.size())
    return invalid_request("'" + std::string(arn) + "' is not a valid ARN");
  return ParsedArn{std::string(rest.substr(0, slash)), std::string(rest.substr(slash + 1))};
}

}  // namespace fk::registry
