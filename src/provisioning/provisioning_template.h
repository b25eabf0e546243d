// Fleet provisioning templates (spec section 2): parsed and validated when stored, evaluated
// at RegisterThing into a Plan (what to create, attach and activate) that the registry applies
// in one transaction.
//
// Supported: Parameters (String, Default), Mappings, Resources AWS::IoT::Thing /
// AWS::IoT::Certificate / AWS::IoT::Policy with their Properties and OverrideSettings,
// DeviceConfiguration, and the intrinsic functions AWS documents (Ref, Fn::Join, Fn::Select,
// Fn::Split, Fn::FindInMap, Fn::Sub), the pseudo parameters AWS::IoT::Certificate::Id and the
// certificate subject fields (AWS::IoT::Certificate::CommonName, ...). Anything else is refused
// when the template is stored, with the JSON path of the problem.
//
// Pure: no I/O, never throws. A ProvisioningTemplate is immutable and shareable.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/status.h"

namespace fk::provisioning {

inline constexpr std::size_t kMaxTemplateChars = 10240;

// What to do with something that already exists (OverrideSettings).
enum class Override { kDoNothing, kReplace, kMerge, kFail };

struct ThingPlan {
  std::string logical_name;
  std::string name;
  std::optional<std::string> type_name;
  std::optional<std::map<std::string, std::string>> attributes;
  std::optional<std::vector<std::string>> groups;
  // Per property, when the thing exists; absent: keep what exists (DO_NOTHING).
  Override attributes_override = Override::kDoNothing;
  Override type_override = Override::kDoNothing;
  Override groups_override = Override::kDoNothing;
};

struct CertificatePlan {
  std::string logical_name;
  bool active = true;  // Status ACTIVE (default) or INACTIVE
};

struct PolicyPlan {
  std::string logical_name;
  std::string name;      // an existing policy, or the name for `document`
  std::string document;  // empty: attach the existing policy `name`
};

struct Plan {
  std::optional<ThingPlan> thing;
  std::optional<CertificatePlan> certificate;
  std::vector<PolicyPlan> policies;
  std::map<std::string, std::string> device_configuration;
};

// Values the template can Ref besides its parameters.
struct PseudoParameters {
  std::string certificate_id;
  std::map<std::string, std::string> certificate_subject;  // "CommonName" -> "locker-101"
};

// A failure at RegisterThing: AWS's rejected shape.
struct PlanError {
  int status_code = 400;
  std::string error_code;  // "InvalidParameters", ...
  std::string message;
};

class ProvisioningTemplate {
 public:
  // InvalidRequest ("Invalid provisioning template: Resources.thing.Properties.ThingName: ...").
  static Result<ProvisioningTemplate> parse(std::string_view body);

  // Parameters supplied by the device (and the pre-provisioning hook), defaults filled in.
  std::variant<Plan, PlanError> evaluate(const std::map<std::string, std::string>& parameters,
                                         const PseudoParameters& pseudo) const;

  const std::vector<std::string>& parameter_names() const { return parameter_names_; }

 private:
  std::string body_;  // the validated JSON text (re-parsed on evaluate; templates are small)
  std::vector<std::string> parameter_names_;
};

}  // namespace fk::provisioning
