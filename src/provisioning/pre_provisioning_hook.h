// The pre-provisioning hook's transport: fleetkey calls an HTTP(S) webhook where AWS calls a
// Lambda, with AWS's JSON contract (input: claimCertificateId, certificateId, certificatePem,
// templateArn, clientId, parameters; output: allowProvisioning, parameterOverrides). The
// contract is FleetProvisioning's; this interface only carries the JSON (app/ implements it
// with net::http_post and the configured timeout).
//
// Thread-safety: call() may run concurrently.
#pragma once

#include <string>

#include "base/status.h"

namespace fk::provisioning {

class PreProvisioningHook {
 public:
  virtual ~PreProvisioningHook() = default;
  // POSTs `input_json` to `target` (the template's preProvisioningHook.targetArn: a URL) and
  // returns the response body of a 2xx answer; anything else (a timeout, another status) fails
  // with the reason.
  virtual Result<std::string> call(const std::string& target, const std::string& input_json) = 0;
};

}  // namespace fk::provisioning
