#include "provisioning/provisioning_template.h"

#include <gtest/gtest.h>

namespace fk::provisioning {
namespace {

// The article's locker template: serial number parameter, thing named from it, device policy.
constexpr const char* kLocker = R"({
  "Parameters": {"SerialNumber": {"Type": "String"},
                 "Site": {"Type": "String", "Default": "berlin"},
                 "AWS::IoT::Certificate::Id": {"Type": "String"}},
  "Mappings": {"Sites": {"berlin": {"Floor": "3"}, "paris": {"Floor": "1"}}},
  "Resources": {
    "thing": {"Type": "AWS::IoT::Thing",
              "Properties": {"ThingName": {"Fn::Join": ["", ["locker-", {"Ref": "SerialNumber"}]]},
                             "ThingTypeName": "LockerController",
                             "AttributePayload": {"serial": {"Ref": "SerialNumber"},
                                                  "floor": {"Fn::FindInMap": ["Sites", {"Ref": "Site"}, "Floor"]}},
                             "ThingGroups": ["lockers"]},
              "OverrideSettings": {"AttributePayload": "MERGE", "ThingGroups": "DO_NOTHING"}},
    "certificate": {"Type": "AWS::IoT::Certificate",
                    "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "Active"}},
    "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "locker-device"}}},
  "DeviceConfiguration": {"site": {"Ref": "Site"},
                          "topic": {"Fn::Sub": "lockers/locker-${SerialNumber}/state"},
                          "first": {"Fn::Select": ["0", {"Fn::Split": ["-", "a-b-c"]}]}}
})";

PseudoParameters pseudo() {
  return {std::string(64, 'f'), {{"CommonName", "locker-cn"}}};
}

TEST(ProvisioningTemplate, EvaluatesTheLockerTemplate) {
  auto t = ProvisioningTemplate::parse(kLocker);
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  auto r = t->evaluate({{"SerialNumber", "101"}}, pseudo());
  ASSERT_TRUE(std::holds_alternative<Plan>(r)) << std::get<PlanError>(r).message;
  const Plan& p = std::get<Plan>(r);
  ASSERT_TRUE(p.thing.has_value());
  EXPECT_EQ(p.thing->name, "locker-101");
  EXPECT_EQ(p.thing->type_name, "LockerController");
  EXPECT_EQ(p.thing->attributes->at("serial"), "101");
  EXPECT_EQ(p.thing->attributes->at("floor"), "3");
  EXPECT_EQ(*p.thing->groups, std::vector<std::string>{"lockers"});
  EXPECT_EQ(p.thing->attributes_override, Override::kMerge);
  ASSERT_TRUE(p.certificate.has_value());
  EXPECT_TRUE(p.certificate->active);
  ASSERT_EQ(p.policies.size(), 1u);
  EXPECT_EQ(p.policies[0].name, "locker-device");
  EXPECT_EQ(p.device_configuration.at("site"), "berlin");
  EXPECT_EQ(p.device_configuration.at("topic"), "lockers/locker-101/state");
  EXPECT_EQ(p.device_configuration.at("first"), "a");
  // A supplied parameter beats the default; the mapping follows it.
  auto paris = std::get<Plan>(t->evaluate({{"SerialNumber", "7"}, {"Site", "paris"}}, pseudo()));
  EXPECT_EQ((*paris.thing->attributes)["floor"], "1");
}

TEST(ProvisioningTemplate, RuntimeFailuresAreInvalidParameters) {
  auto t = ProvisioningTemplate::parse(kLocker);
  ASSERT_TRUE(t.is_ok());
  auto missing = t->evaluate({}, pseudo());
  ASSERT_TRUE(std::holds_alternative<PlanError>(missing));
  EXPECT_EQ(std::get<PlanError>(missing).error_code, "InvalidParameters");
  EXPECT_EQ(std::get<PlanError>(missing).message, "Missing required parameter: SerialNumber");
  auto unmapped = t->evaluate({{"SerialNumber", "1"}, {"Site", "rome"}}, pseudo());
  ASSERT_TRUE(std::holds_alternative<PlanError>(unmapped));
  EXPECT_NE(std::get<PlanError>(unmapped).message.find("Fn::FindInMap"), std::string::npos);
}

TEST(ProvisioningTemplate, PolicyDocumentAsObjectOrStringAndCertificateSubject) {
  auto t = ProvisioningTemplate::parse(R"({"Resources": {
    "thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": {"Ref": "AWS::IoT::Certificate::CommonName"}}},
    "p1": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyDocument": {"Version": "2012-10-17", "Statement": []}}},
    "p2": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyDocument": "{\"Version\":\"2012-10-17\"}"}}}})");
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  auto p = std::get<Plan>(t->evaluate({}, pseudo()));
  EXPECT_EQ(p.thing->name, "locker-cn");
  ASSERT_EQ(p.policies.size(), 2u);
  EXPECT_NE(p.policies[0].document.find("2012-10-17"), std::string::npos);
  EXPECT_FALSE(p.policies[0].name.empty());
  EXPECT_NE(p.policies[0].name, p.policies[1].name);
  EXPECT_FALSE(p.certificate.has_value());
}

struct Bad {
  const char* body;
  const char* fragment;
};

class BadTemplate : public ::testing::TestWithParam<Bad> {};

TEST_P(BadTemplate, IsRefusedWithThePlace) {
  auto t = ProvisioningTemplate::parse(GetParam().body);
  ASSERT_FALSE(t.is_ok()) << GetParam().body;
  EXPECT_EQ(t.status().code(), ErrorCode::kInvalidRequest);
  EXPECT_NE(t.status().message().find(GetParam().fragment), std::string::npos)
      << t.status().message();
}

INSTANTIATE_TEST_SUITE_P(
    Table, BadTemplate,
    ::testing::Values(
        Bad{"{", "JSON not well-formed"}, Bad{"[]", "must be a JSON object"},
        Bad{R"({"Resources":{}})", "at least one resource"},
        Bad{R"({"Conditions":{},"Resources":{"t":{"Type":"AWS::IoT::Thing","Properties":{"ThingName":"a"}}}})",
            "Conditions are not supported"},
        Bad{R"({"Resources":{"t":{"Type":"AWS::S3::Bucket"}}})", "Resources.t.Type"},
        Bad{R"({"Resources":{"t":{"Type":"AWS::IoT::Thing","Properties":{}}}})",
            "Resources.t.Properties: ThingName is required"},
        Bad{R"({"Resources":{"t":{"Type":"AWS::IoT::Thing","Properties":{"ThingName":{"Ref":"Serial"}}}}})",
            "Ref to 'Serial', which is not a declared parameter"},
        Bad{R"({"Resources":{"t":{"Type":"AWS::IoT::Thing","Properties":{"ThingName":{"Fn::If":["a","b","c"]}}}}})",
            "'Fn::If' is not supported"},
        Bad{R"({"Resources":{"t":{"Type":"AWS::IoT::Thing","Properties":{"ThingName":{"Fn::Join":["-"]}}}}})",
            "takes [delimiter, [values]]"},
        Bad{R"({"Resources":{"t":{"Type":"AWS::IoT::Thing","Properties":{"ThingName":{"Fn::FindInMap":["M","a","b"]}}}}})",
            "no mapping named 'M'"},
        Bad{R"({"Resources":{"t":{"Type":"AWS::IoT::Thing","Properties":{"ThingName":"a"},"OverrideSettings":{"ThingTypeName":"MERGE"}}}})",
            "'MERGE' is not allowed here"},
        Bad{R"({"Resources":{"p":{"Type":"AWS::IoT::Policy","Properties":{}}}})",
            "Neither PolicyName nor PolicyDocument is present"},
        Bad{R"({"Resources":{"c":{"Type":"AWS::IoT::Certificate","Properties":{"Status":"ACTIVE"}}}})",
            "CertificateId"},
        Bad{R"({"Resources":{"c":{"Type":"AWS::IoT::Certificate","Properties":{"CertificateId":{"Ref":"AWS::IoT::Certificate::Id"},"Status":"On"}}}})",
            "must be ACTIVE or INACTIVE"},
        Bad{R"({"Parameters":{"a":{"Type":"Number"}},"Resources":{"p":{"Type":"AWS::IoT::Policy","Properties":{"PolicyName":"x"}}}})",
            "only String parameters"},
        Bad{R"({"Mappings":{"M":{"a":{"b":{"Ref":"x"}}}},"Resources":{"p":{"Type":"AWS::IoT::Policy","Properties":{"PolicyName":"x"}}}})",
            "no parameters or functions in Mappings"},
        Bad{R"({"DeviceConfiguration":{"a":{"b":"c","d":"e"}},"Resources":{"p":{"Type":"AWS::IoT::Policy","Properties":{"PolicyName":"x"}}}})",
            "no nested objects"}));

TEST(ProvisioningTemplate, SizeLimit) {
  std::string body =
      R"({"Description":")" + std::string(10300, 'x') +
      R"(","Resources":{"p":{"Type":"AWS::IoT::Policy","Properties":{"PolicyName":"x"}}}})";
  auto t = ProvisioningTemplate::parse(body);
  ASSERT_FALSE(t.is_ok());
  EXPECT_NE(t.status().message().find("at most 10240"), std::string::npos);
}

}  // namespace
}  // namespace fk::provisioning
