#include <array>
#include <utility>

#include "api/routing.h"

namespace fk::api {

namespace {

struct Operation {
  std::string_view method;
  std::string_view path;  // the route's template
  std::string_view name;  // AWS's operation name (the service model's, as CloudTrail logs it)
};

constexpr std::array kOperations = {
    Operation{"GET", "/registrationcode", "GetRegistrationCode"},
    Operation{"DELETE", "/registrationcode", "DeleteRegistrationCode"},
    Operation{"POST", "/cacertificate", "RegisterCACertificate"},
    Operation{"GET", "/cacertificate/{caCertificateId}", "DescribeCACertificate"},
    Operation{"PUT", "/cacertificate/{caCertificateId}", "UpdateCACertificate"},
    Operation{"DELETE", "/cacertificate/{caCertificateId}", "DeleteCACertificate"},
    Operation{"GET", "/cacertificates", "ListCACertificates"},
    Operation{"POST", "/keys-and-certificate", "CreateKeysAndCertificate"},
    Operation{"POST", "/certificates", "CreateCertificateFromCsr"},
    Operation{"GET", "/certificates/{certificateId}", "DescribeCertificate"},
    Operation{"PUT", "/certificates/{certificateId}", "UpdateCertificate"},
    Operation{"DELETE", "/certificates/{certificateId}", "DeleteCertificate"},
    Operation{"GET", "/certificates", "ListCertificates"},
    Operation{"GET", "/certificates-by-ca/{caCertificateId}", "ListCertificatesByCA"},
    Operation{"POST", "/certificate/register", "RegisterCertificate"},
    Operation{"POST", "/certificate/register-no-ca", "RegisterCertificateWithoutCA"},
    Operation{"GET", "/endpoint", "DescribeEndpoint"},
    Operation{"POST", "/policies/{policyName}", "CreatePolicy"},
    Operation{"GET", "/policies/{policyName}", "GetPolicy"},
    Operation{"DELETE", "/policies/{policyName}", "DeletePolicy"},
    Operation{"GET", "/policies", "ListPolicies"},
    Operation{"POST", "/policies/{policyName}/version", "CreatePolicyVersion"},
    Operation{"GET", "/policies/{policyName}/version", "ListPolicyVersions"},
    Operation{"GET", "/policies/{policyName}/version/{policyVersionId}", "GetPolicyVersion"},
    Operation{"PATCH", "/policies/{policyName}/version/{policyVersionId}",
              "SetDefaultPolicyVersion"},
    Operation{"DELETE", "/policies/{policyName}/version/{policyVersionId}", "DeletePolicyVersion"},
    Operation{"PUT", "/target-policies/{policyName}", "AttachPolicy"},
    Operation{"POST", "/target-policies/{policyName}", "DetachPolicy"},
    Operation{"POST", "/attached-policies/{target}", "ListAttachedPolicies"},
    Operation{"POST", "/policy-targets/{policyName}", "ListTargetsForPolicy"},
    Operation{"POST", "/effective-policies", "GetEffectivePolicies"},
    Operation{"POST", "/test-authorization", "TestAuthorization"},
    Operation{"POST", "/provisioning-templates", "CreateProvisioningTemplate"},
    Operation{"GET", "/provisioning-templates/{templateName}", "DescribeProvisioningTemplate"},
    Operation{"PATCH", "/provisioning-templates/{templateName}", "UpdateProvisioningTemplate"},
    Operation{"DELETE", "/provisioning-templates/{templateName}", "DeleteProvisioningTemplate"},
    Operation{"GET", "/provisioning-templates", "ListProvisioningTemplates"},
    Operation{"POST", "/provisioning-templates/{templateName}/versions",
              "CreateProvisioningTemplateVersion"},
    Operation{"GET", "/provisioning-templates/{templateName}/versions/{versionId}",
              "DescribeProvisioningTemplateVersion"},
    Operation{"DELETE", "/provisioning-templates/{templateName}/versions/{versionId}",
              "DeleteProvisioningTemplateVersion"},
    Operation{"POST", "/provisioning-templates/{templateName}/provisioning-claim",
              "CreateProvisioningClaim"},
    Operation{"POST", "/things", "RegisterThing"},
    Operation{"POST", "/things/{thingName}", "CreateThing"},
    Operation{"GET", "/things/{thingName}", "DescribeThing"},
    Operation{"PATCH", "/things/{thingName}", "UpdateThing"},
    Operation{"DELETE", "/things/{thingName}", "DeleteThing"},
    Operation{"GET", "/things", "ListThings"},
    Operation{"PUT", "/things/{thingName}/principals", "AttachThingPrincipal"},
    Operation{"DELETE", "/things/{thingName}/principals", "DetachThingPrincipal"},
    Operation{"GET", "/things/{thingName}/principals", "ListThingPrincipals"},
    Operation{"GET", "/principals/things", "ListPrincipalThings"},
    Operation{"POST", "/thing-groups/{thingGroupName}", "CreateThingGroup"},
    Operation{"GET", "/thing-groups/{thingGroupName}", "DescribeThingGroup"},
    Operation{"PATCH", "/thing-groups/{thingGroupName}", "UpdateThingGroup"},
    Operation{"DELETE", "/thing-groups/{thingGroupName}", "DeleteThingGroup"},
    Operation{"GET", "/thing-groups", "ListThingGroups"},
    Operation{"PUT", "/thing-groups/addThingToThingGroup", "AddThingToThingGroup"},
    Operation{"PUT", "/thing-groups/removeThingFromThingGroup", "RemoveThingFromThingGroup"},
    Operation{"GET", "/thing-groups/{thingGroupName}/things", "ListThingsInThingGroup"},
    Operation{"GET", "/things/{thingName}/thing-groups", "ListThingGroupsForThing"},
    Operation{"POST", "/thing-types/{thingTypeName}", "CreateThingType"},
    Operation{"GET", "/thing-types/{thingTypeName}", "DescribeThingType"},
    Operation{"POST", "/thing-types/{thingTypeName}/deprecate", "DeprecateThingType"},
    Operation{"DELETE", "/thing-types/{thingTypeName}", "DeleteThingType"},
    Operation{"GET", "/thing-types", "ListThingTypes"},
};

}  // namespace

std::string operation_name(std::string_view method, std::string_view route_path) {
  for (const Operation& o : kOperations)
    if (o.method == method && o.path == route_path) return std::string(o.name);
  return std::string(method) + " " + std::string(route_path);  // fleetkey's own routes
}

}  // namespace fk::api
