// ARNs in AWS's form, arn:aws:iot:<region>:<account>:<kind>/<id>, from the configured region
// and account.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace fk::registry {

struct ArnScope {
  std::string region = "us-east-1";
  std::string account_id = "123456789012";

  std::string thing(std::string_view name) const { return make("thing/", name); }
  std::string thing_type(std::string_view name) const { return make("thingtype/", name); }
  std::string thing_group(std::string_view name) const { return make("thinggroup/", name); }
  std::string certificate(std::string_view id) const { return make("cert/", id); }
  std::string ca_certificate(std::string_view id) const { return make("cacert/", id); }
  std::string policy(std::string_view name) const { return make("policy/", name); }
  // "arn:aws:iot:<region>:<account>:", what policy resources start with.
  std::string prefix() const { return make("", ""); }
  std::string provisioning_template(std::string_view name) const {
    return make("provisioningtemplate/", name);
  }

 private:
  std::string make(std::string_view kind, std::string_view id) const;
};

// A parsed ARN of this account and region.
struct ParsedArn {
  std::string kind;  // "cert", "thinggroup", ...
  std::string id;
};

// Parses `arn`; fails with kInvalidRequest when it is malformed or of another region/account.
Result<ParsedArn> parse_arn(const ArnScope& scope, std::string_view arn);

}  // namespace fk::registry
