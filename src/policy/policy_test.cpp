// The policy engine, table-driven: documents, requests and contexts in, AWS's decision out.
#include <gtest/gtest.h>

#include <functional>

#include "base/strings.h"
#include "policy/document.h"
#include "policy/evaluator.h"

namespace fk::policy {
namespace {

constexpr std::string_view kArn = "arn:aws:iot:eu-west-1:123456789012:";

std::string arn(std::string_view rest) {
  return std::string(kArn) + std::string(rest);
}

// The locker controller of the article, as seen at connect time.
RequestContext locker() {
  RequestContext c;
  c.client_id = "locker-101";
  c.source_ip = "203.0.113.7";
  c.thing = ThingFacts{"locker-101", "LockerController", {{"site", "berlin"}, {"floor", "3"}}};
  c.thing_is_attached = true;
  CertificateFacts cert;
  cert.subject = {{"CN", "locker-101"}, {"O", "Acme"}, {"OU", "Lockers"},
                  {"OU", "Berlin"},     {"C", "DE"},   {"serialNumber", "SN-0042"}};
  cert.issuer = {{"CN", "fleetkey Issuing CA"}, {"O", "fleetkey"}};
  cert.subject_alt_names = {{"DNSName", "locker-101.acme.example"}};
  cert.serial_number = "0a1b2c";
  c.certificate = cert;
  c.connect_attributes = std::vector<std::string>{};
  return c;
}

std::string statement(std::string_view effect, std::string_view action, std::string_view resource,
                      std::string_view condition = "") {
  std::string s = R"({"Effect":")" + std::string(effect) + R"(","Action":)" + std::string(action) +
                  R"(,"Resource":)" + std::string(resource);
  if (!condition.empty()) s += R"(,"Condition":)" + std::string(condition);
  return s + "}";
}

std::string policy(std::initializer_list<std::string> statements) {
  std::string s = R"({"Version":"2012-10-17","Statement":[)";
  bool first = true;
  for (const auto& st : statements) {
    if (!first) s += ",";
    s += st;
    first = false;
  }
  return s + "]}";
}

std::string q(std::string_view s) {  // a quoted JSON string
  return "\"" + std::string(s) + "\"";
}

struct Case {
  const char* name;
  std::string document;
  std::string action;
  std::string resource;  // after the account prefix
  Decision expected;
  std::function<void(RequestContext&)> adjust = nullptr;
};

const char* kAllow = "Allow";
const char* kDeny = "Deny";

std::string allow(std::string_view action, std::string_view resource,
                  std::string_view condition = "") {
  return policy({statement(kAllow, q(action), q(resource), condition)});
}

std::vector<Case> cases() {
  const std::string any = q("*");
  const Decision A = Decision::kAllowed;
  const Decision D = Decision::kExplicitDeny;
  const Decision I = Decision::kImplicitDeny;
  const std::string prefix(kArn);
  auto res = [&](std::string_view r) { return prefix + std::string(r); };
  std::vector<Case> v = {
      // --- resources and actions ---
      {"exact topic", allow("iot:Publish", res("topic/a/b")), "iot:Publish", "topic/a/b", A},
      {"other topic", allow("iot:Publish", res("topic/a/b")), "iot:Publish", "topic/a/c", I},
      {"topic prefix is not a match", allow("iot:Publish", res("topic/a")), "iot:Publish",
       "topic/a/b", I},
      {"wrong action", allow("iot:Publish", res("topic/a")), "iot:Subscribe", "topic/a", I},
      {"receive is its own action", allow("iot:Publish", res("topic/a")), "iot:Receive", "topic/a",
       I},
      {"resource *", allow("iot:Publish", "*"), "iot:Publish", "topic/x/y/z", A},
      {"action *", allow("*", res("topic/a")), "iot:Publish", "topic/a", A},
      {"action iot:*", allow("iot:*", res("topic/a")), "iot:Receive", "topic/a", A},
      {"action iot:Pub*", allow("iot:Pub*", res("topic/a")), "iot:Publish", "topic/a", A},
      {"action iot:Pub* not subscribe", allow("iot:Pub*", res("topic/a")), "iot:Subscribe",
       "topic/a", I},
      {"action case-insensitive", allow("IOT:publish", res("topic/a")), "iot:Publish", "topic/a",
       A},
      {"resource case-sensitive", allow("iot:Publish", res("topic/A")), "iot:Publish", "topic/a",
       I},
      {"action list", policy({statement(kAllow, R"(["iot:Publish","iot:Receive"])", any)}),
       "iot:Receive", "topic/z", A},
      {"resource list second", policy({statement(kAllow, q("iot:Publish"),
                                                 "[" + q(res("topic/a")) + "," + q(res("topic/b")) +
                                                     "]")}),
       "iot:Publish", "topic/b", A},
      {"client resource", allow("iot:Connect", res("client/locker-101")), "iot:Connect",
       "client/locker-101", A},
      {"client resource other", allow("iot:Connect", res("client/locker-101")), "iot:Connect",
       "client/locker-102", I},
      {"other region", allow("iot:Publish", "arn:aws:iot:us-east-1:123456789012:topic/a"),
       "iot:Publish", "topic/a", I},
      {"other account", allow("iot:Publish", "arn:aws:iot:eu-west-1:999999999999:topic/a"),
       "iot:Publish", "topic/a", I},
      {"region wildcard", allow("iot:Publish", "arn:aws:iot:*:123456789012:topic/a"),
       "iot:Publish", "topic/a", A},
      {"region and account wildcards", allow("iot:Publish", "arn:aws:iot:*:*:topic/a"),
       "iot:Publish", "topic/a", A},
      {"arn:* matches all", allow("iot:Publish", "arn:*"), "iot:Publish", "topic/x", A},
      {"a star stays in its ARN part", allow("iot:Publish", "arn:aws:iot:*:*:topic/b"),
       "iot:Publish", "topic/a:topic/b", I},
      {"colons in the topic part", allow("iot:Publish", res("topic/a:b/*")), "iot:Publish",
       "topic/a:b/c", A},
      {"other service", allow("iot:Publish", "arn:aws:s3:*:*:topic/a"), "iot:Publish", "topic/a",
       I},
      {"topic vs topicfilter type", allow("iot:Subscribe", res("topic/a")), "iot:Subscribe",
       "topicfilter/a", I},
      {"retainpublish", allow("iot:RetainPublish", res("topic/a")), "iot:RetainPublish",
       "topic/a", A},
      {"retainpublish not publish", allow("iot:RetainPublish", res("topic/a")), "iot:Publish",
       "topic/a", I},
      {"empty statement list-of-one object",
       R"({"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"*"}})",
       "iot:Publish", "topic/a", A},
      // --- wildcards ---
      {"star crosses slash", allow("iot:Publish", res("topic/a/*")), "iot:Publish",
       "topic/a/b/c/d", A},
      {"star matches empty", allow("iot:Publish", res("topic/a/*")), "iot:Publish", "topic/a/",
       A},
      {"star needs the slash", allow("iot:Publish", res("topic/a/*")), "iot:Publish", "topic/a",
       I},
      {"star in the middle", allow("iot:Publish", res("topic/things/*/state")), "iot:Publish",
       "topic/things/x/y/state", A},
      {"star in the middle no suffix", allow("iot:Publish", res("topic/things/*/state")),
       "iot:Publish", "topic/things/x/status", I},
      {"two stars", allow("iot:Publish", res("topic/*/x/*")), "iot:Publish", "topic/a/x/b", A},
      {"question mark one char", allow("iot:Publish", res("topic/a?")), "iot:Publish", "topic/ab",
       A},
      {"question mark not two", allow("iot:Publish", res("topic/a?")), "iot:Publish",
       "topic/abc", I},
      {"question mark not zero", allow("iot:Publish", res("topic/a?")), "iot:Publish", "topic/a",
       I},
      {"question mark matches slash", allow("iot:Publish", res("topic/a?b")), "iot:Publish",
       "topic/a/b", A},
      {"plus is literal in topic", allow("iot:Publish", res("topic/a/+")), "iot:Publish",
       "topic/a/b", I},
      {"plus literal matches plus filter", allow("iot:Subscribe", res("topicfilter/a/+")),
       "iot:Subscribe", "topicfilter/a/+", A},
      {"hash literal matches hash filter", allow("iot:Subscribe", res("topicfilter/a/#")),
       "iot:Subscribe", "topicfilter/a/#", A},
      {"hash literal not a subtopic filter", allow("iot:Subscribe", res("topicfilter/a/#")),
       "iot:Subscribe", "topicfilter/a/b", I},
      {"star covers hash filter", allow("iot:Subscribe", res("topicfilter/a/*")),
       "iot:Subscribe", "topicfilter/a/#", A},
      {"star covers plus filter", allow("iot:Subscribe", res("topicfilter/a/*")),
       "iot:Subscribe", "topicfilter/a/+/b", A},
      {"dollar topics literal", allow("iot:Publish", res("topic/$aws/things/x/shadow/update")),
       "iot:Publish", "topic/$aws/things/x/shadow/update", A},
      {"escape ${*} is literal star", allow("iot:Publish", res("topic/a/${*}")), "iot:Publish",
       "topic/a/*", A},
      {"escape ${*} not wildcard", allow("iot:Publish", res("topic/a/${*}")), "iot:Publish",
       "topic/a/b", I},
      {"escape ${?} literal", allow("iot:Publish", res("topic/a${?}")), "iot:Publish",
       "topic/a?", A},
      {"escape ${?} not wildcard", allow("iot:Publish", res("topic/a${?}")), "iot:Publish",
       "topic/ab", I},
      {"escape ${$}", allow("iot:Publish", res("topic/${$}aws")), "iot:Publish", "topic/$aws", A},
      // --- deny beats allow ---
      {"deny beats allow", policy({statement(kAllow, q("iot:*"), any),
                                   statement(kDeny, q("iot:Publish"), q(res("topic/secret")))}),
       "iot:Publish", "topic/secret", D},
      {"deny elsewhere leaves allow", policy({statement(kAllow, q("iot:*"), any),
                                              statement(kDeny, q("iot:Publish"),
                                                        q(res("topic/secret")))}),
       "iot:Publish", "topic/public", A},
      {"deny first then allow", policy({statement(kDeny, q("iot:Publish"), any),
                                        statement(kAllow, q("iot:Publish"), any)}),
       "iot:Publish", "topic/a", D},
      {"deny only", policy({statement(kDeny, q("iot:Publish"), q(res("topic/a")))}),
       "iot:Publish", "topic/a", D},
      {"deny other action", policy({statement(kDeny, q("iot:Subscribe"), any),
                                    statement(kAllow, q("iot:Publish"), any)}),
       "iot:Publish", "topic/a", A},
      {"deny wildcard resource", policy({statement(kAllow, q("iot:Publish"), any),
                                         statement(kDeny, q("iot:Publish"), q(res("topic/$aws/*")))}),
       "iot:Publish", "topic/$aws/x", D},
      {"default deny empty", policy({statement(kAllow, q("iot:Connect"), any)}), "iot:Publish",
       "topic/a", I},
      // --- NotAction / NotResource ---
      {"NotAction allows others",
       R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","NotAction":"iot:Publish","Resource":"*"}]})",
       "iot:Subscribe", "topicfilter/a", A},
      {"NotAction excludes",
       R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","NotAction":"iot:Publish","Resource":"*"}]})",
       "iot:Publish", "topic/a", I},
      {"NotResource allows others",
       R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","NotResource":")" +
           res("topic/secret") + R"("}]})",
       "iot:Publish", "topic/a", A},
      {"NotResource excludes",
       R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","NotResource":")" +
           res("topic/secret") + R"("}]})",
       "iot:Publish", "topic/secret", I},
      {"Deny NotResource", policy({statement(kAllow, q("iot:Publish"), any),
                                   R"({"Effect":"Deny","Action":"iot:Publish","NotResource":")" +
                                       res("topic/ok/*") + R"("})"}),
       "iot:Publish", "topic/bad", D},
      // --- policy variables ---
      {"ClientId in topic", allow("iot:Publish", res("topic/things/${iot:ClientId}/state")),
       "iot:Publish", "topic/things/locker-101/state", A},
      {"ClientId other topic", allow("iot:Publish", res("topic/things/${iot:ClientId}/state")),
       "iot:Publish", "topic/things/locker-102/state", I},
      {"ClientId in client", allow("iot:Connect", res("client/${iot:ClientId}")), "iot:Connect",
       "client/locker-101", A},
      {"ThingName", allow("iot:Publish", res("topic/things/${iot:Connection.Thing.ThingName}/*")),
       "iot:Publish", "topic/things/locker-101/state", A},
      {"ThingName other thing",
       allow("iot:Publish", res("topic/things/${iot:Connection.Thing.ThingName}/*")),
       "iot:Publish", "topic/things/locker-102/state", I},
      {"ThingName absent: no match",
       allow("iot:Publish", res("topic/things/${iot:Connection.Thing.ThingName}/*")),
       "iot:Publish", "topic/things/locker-101/state", I,
       [](RequestContext& c) { c.thing.reset(); }},
      {"ThingName absent: literal not matched by literal text",
       allow("iot:Publish", res("topic/${iot:Connection.Thing.ThingName}")), "iot:Publish",
       "topic/x", I, [](RequestContext& c) { c.thing.reset(); }},
      {"ThingName in client resource",
       allow("iot:Connect", res("client/${iot:Connection.Thing.ThingName}")), "iot:Connect",
       "client/locker-101", A},
      {"ThingTypeName", allow("iot:Publish", res("topic/${iot:Connection.Thing.ThingTypeName}/*")),
       "iot:Publish", "topic/LockerController/x", A},
      {"ThingTypeName none", allow("iot:Publish", res("topic/${iot:Connection.Thing.ThingTypeName}/*")),
       "iot:Publish", "topic/LockerController/x", I,
       [](RequestContext& c) { c.thing->type_name.clear(); }},
      {"Attribute", allow("iot:Publish", res("topic/site/${iot:Connection.Thing.Attributes[site]}")),
       "iot:Publish", "topic/site/berlin", A},
      {"Attribute other value",
       allow("iot:Publish", res("topic/site/${iot:Connection.Thing.Attributes[site]}")),
       "iot:Publish", "topic/site/paris", I},
      {"Attribute missing",
       allow("iot:Publish", res("topic/site/${iot:Connection.Thing.Attributes[region]}")),
       "iot:Publish", "topic/site/berlin", I},
      {"Attribute name case-sensitive",
       allow("iot:Publish", res("topic/site/${iot:Connection.Thing.Attributes[Site]}")),
       "iot:Publish", "topic/site/berlin", I},
      {"Certificate CommonName",
       allow("iot:Publish", res("topic/cn/${iot:Certificate.Subject.CommonName}")), "iot:Publish",
       "topic/cn/locker-101", A},
      {"Certificate Organization",
       allow("iot:Publish", res("topic/org/${iot:Certificate.Subject.Organization}")),
       "iot:Publish", "topic/org/Acme", A},
      {"Certificate OU first value",
       allow("iot:Publish", res("topic/ou/${iot:Certificate.Subject.OrganizationalUnit}")),
       "iot:Publish", "topic/ou/Lockers", A},
      {"Certificate OU .1 is the second",
       allow("iot:Publish", res("topic/ou/${iot:Certificate.Subject.OrganizationalUnit.1}")),
       "iot:Publish", "topic/ou/Berlin", A},
      {"Certificate OU .0 is the first",
       allow("iot:Publish", res("topic/ou/${iot:Certificate.Subject.OrganizationalUnit.0}")),
       "iot:Publish", "topic/ou/Lockers", A},
      {"Certificate OU out of range",
       allow("iot:Publish", res("topic/ou/${iot:Certificate.Subject.OrganizationalUnit.2}")),
       "iot:Publish", "topic/ou/Berlin", I},
      {"Certificate Country", allow("iot:Publish", res("topic/${iot:Certificate.Subject.Country}")),
       "iot:Publish", "topic/DE", A},
      {"Certificate Subject SerialNumber",
       allow("iot:Publish", res("topic/${iot:Certificate.Subject.SerialNumber}")), "iot:Publish",
       "topic/SN-0042", A},
      {"Certificate Issuer CommonName",
       allow("iot:Publish", res("topic/${iot:Certificate.Issuer.CommonName}")), "iot:Publish",
       "topic/fleetkey Issuing CA", A},
      {"Certificate Issuer Organization",
       allow("iot:Publish", res("topic/${iot:Certificate.Issuer.Organization}")), "iot:Publish",
       "topic/fleetkey", A},
      {"Certificate SerialNumber", allow("iot:Publish", res("topic/${iot:Certificate.SerialNumber}")),
       "iot:Publish", "topic/0a1b2c", A},
      {"Certificate SAN DNSName",
       allow("iot:Publish", res("topic/${iot:Certificate.Subject.AlternativeName.DNSName}")),
       "iot:Publish", "topic/locker-101.acme.example", A},
      {"Certificate missing field",
       allow("iot:Publish", res("topic/${iot:Certificate.Subject.Title}")), "iot:Publish",
       "topic/x", I},
      {"Certificate value with + not substituted",
       allow("iot:Publish", res("topic/${iot:Certificate.Subject.CommonName}")), "iot:Publish",
       "topic/a+b", I, [](RequestContext& c) { c.certificate->subject[0].second = "a+b"; }},
      {"Certificate value with * not substituted",
       allow("iot:Publish", res("topic/${iot:Certificate.Subject.CommonName}")), "iot:Publish",
       "topic/x", I, [](RequestContext& c) { c.certificate->subject[0].second = "*"; }},
      {"Certificate value over 1024 not substituted",
       allow("iot:Publish", res("topic/${iot:Certificate.Subject.CommonName}")), "iot:Publish",
       "topic/" + std::string(1025, 'a'), I,
       [](RequestContext& c) { c.certificate->subject[0].second = std::string(1025, 'a'); }},
      {"Certificate value with comma escaped",
       allow("iot:Publish", res("topic/${iot:Certificate.Subject.CommonName}")), "iot:Publish",
       "topic/a\\,b", A, [](RequestContext& c) { c.certificate->subject[0].second = "a,b"; }},
      {"substituted value is literal: client id *",
       allow("iot:Publish", res("topic/${iot:ClientId}")), "iot:Publish", "topic/anything", I,
       [](RequestContext& c) { c.client_id = "*"; }},
      {"substituted client id + gives literal filter (AWS warns)",
       allow("iot:Subscribe", res("topicfilter/my/${iot:ClientId}/topic")), "iot:Subscribe",
       "topicfilter/my/+/topic", A, [](RequestContext& c) { c.client_id = "+"; }},
      {"unknown variable never resolves", allow("iot:Publish", res("topic/${iot:Nope}")),
       "iot:Publish", "topic/x", I},
      {"unresolved variable in Deny stops matching",
       policy({statement(kAllow, q("iot:Publish"), any),
               statement(kDeny, q("iot:Publish"), q(res("topic/${iot:Connection.Thing.ThingName}")))}),
       "iot:Publish", "topic/x", A, [](RequestContext& c) { c.thing.reset(); }},
      {"2008 version does not substitute",
       R"({"Version":"2008-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":")" +
           res("topic/${iot:ClientId}") + R"("}]})",
       "iot:Publish", "topic/locker-101", I},
      {"no Version does not substitute",
       R"({"Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":")" +
           res("topic/${iot:ClientId}") + R"("}]})",
       "iot:Publish", "topic/locker-101", I},
      {"SourceIp variable", allow("iot:Publish", res("topic/${aws:SourceIp}")), "iot:Publish",
       "topic/203.0.113.7", A},
      {"variable name case-insensitive", allow("iot:Publish", res("topic/${IOT:clientid}")),
       "iot:Publish", "topic/locker-101", A},
      // --- conditions ---
      {"StringEquals ClientId", allow("iot:Connect", "*",
                                      R"({"StringEquals":{"iot:ClientId":"locker-101"}})"),
       "iot:Connect", "client/locker-101", A},
      {"StringEquals ClientId no", allow("iot:Connect", "*",
                                         R"({"StringEquals":{"iot:ClientId":"locker-102"}})"),
       "iot:Connect", "client/locker-101", I},
      {"StringEquals list any", allow("iot:Connect", "*",
                                      R"({"StringEquals":{"iot:ClientId":["a","locker-101"]}})"),
       "iot:Connect", "client/locker-101", A},
      {"StringEquals case matters", allow("iot:Connect", "*",
                                          R"({"StringEquals":{"iot:ClientId":"LOCKER-101"}})"),
       "iot:Connect", "client/locker-101", I},
      {"StringEqualsIgnoreCase", allow("iot:Connect", "*",
                                       R"({"StringEqualsIgnoreCase":{"iot:ClientId":"LOCKER-101"}})"),
       "iot:Connect", "client/locker-101", A},
      {"StringNotEquals holds", allow("iot:Connect", "*",
                                      R"({"StringNotEquals":{"iot:ClientId":"locker-102"}})"),
       "iot:Connect", "client/locker-101", A},
      {"StringNotEquals fails", allow("iot:Connect", "*",
                                      R"({"StringNotEquals":{"iot:ClientId":"locker-101"}})"),
       "iot:Connect", "client/locker-101", I},
      {"StringNotEqualsIgnoreCase", allow("iot:Connect", "*",
                                          R"({"StringNotEqualsIgnoreCase":{"iot:ClientId":"LOCKER-101"}})"),
       "iot:Connect", "client/locker-101", I},
      {"StringLike", allow("iot:Connect", "*", R"({"StringLike":{"iot:ClientId":"locker-*"}})"),
       "iot:Connect", "client/locker-101", A},
      {"StringLike no", allow("iot:Connect", "*", R"({"StringLike":{"iot:ClientId":"door-*"}})"),
       "iot:Connect", "client/locker-101", I},
      {"StringLike ?", allow("iot:Connect", "*", R"({"StringLike":{"iot:ClientId":"locker-1?1"}})"),
       "iot:Connect", "client/locker-101", A},
      {"StringNotLike", allow("iot:Connect", "*", R"({"StringNotLike":{"iot:ClientId":"door-*"}})"),
       "iot:Connect", "client/locker-101", A},
      {"StringNotLike fails", allow("iot:Connect", "*",
                                    R"({"StringNotLike":{"iot:ClientId":"locker-*"}})"),
       "iot:Connect", "client/locker-101", I},
      {"ClientId equals ThingName", allow("iot:Connect", "*",
                                          R"({"StringEquals":{"iot:ClientId":"${iot:Connection.Thing.ThingName}"}})"),
       "iot:Connect", "client/locker-101", A},
      {"condition value unresolved", allow("iot:Connect", "*",
                                           R"({"StringEquals":{"iot:ClientId":"${iot:Connection.Thing.ThingName}"}})"),
       "iot:Connect", "client/locker-101", I, [](RequestContext& c) { c.thing.reset(); }},
      {"condition on attribute", allow("iot:Publish", "*",
                                       R"({"StringEquals":{"iot:Connection.Thing.Attributes[floor]":"3"}})"),
       "iot:Publish", "topic/a", A},
      {"condition on thing type", allow("iot:Publish", "*",
                                        R"({"StringEquals":{"iot:Connection.Thing.ThingTypeName":"LockerController"}})"),
       "iot:Publish", "topic/a", A},
      {"condition missing key", allow("iot:Publish", "*",
                                      R"({"StringEquals":{"iot:Connection.Thing.Attributes[nope]":"3"}})"),
       "iot:Publish", "topic/a", I},
      {"negated condition missing key holds (IAM)",
       allow("iot:Publish", "*", R"({"StringNotEquals":{"iot:Connection.Thing.Attributes[nope]":"3"}})"),
       "iot:Publish", "topic/a", A},
      {"IfExists missing key holds",
       allow("iot:Publish", "*", R"({"StringEqualsIfExists":{"iot:Connection.Thing.Attributes[nope]":"3"}})"),
       "iot:Publish", "topic/a", A},
      {"IfExists present key checked",
       allow("iot:Publish", "*", R"({"StringEqualsIfExists":{"iot:Connection.Thing.Attributes[floor]":"4"}})"),
       "iot:Publish", "topic/a", I},
      {"IsAttached Bool true", allow("iot:Connect", "*",
                                     R"({"Bool":{"iot:Connection.Thing.IsAttached":"true"}})"),
       "iot:Connect", "client/locker-101", A},
      {"IsAttached Bool json true", allow("iot:Connect", "*",
                                          R"({"Bool":{"iot:Connection.Thing.IsAttached":true}})"),
       "iot:Connect", "client/locker-101", A},
      {"IsAttached false", allow("iot:Connect", "*",
                                 R"({"Bool":{"iot:Connection.Thing.IsAttached":"true"}})"),
       "iot:Connect", "client/locker-101", I,
       [](RequestContext& c) {
         c.thing.reset();
         c.thing_is_attached = false;
       }},
      {"Deny when not attached", policy({statement(kAllow, q("iot:Connect"), any),
                                         statement(kDeny, q("iot:Connect"), any,
                                                   R"({"Bool":{"iot:Connection.Thing.IsAttached":"false"}})")}),
       "iot:Connect", "client/x", D,
       [](RequestContext& c) {
         c.thing.reset();
         c.thing_is_attached = false;
       }},
      {"two keys AND", allow("iot:Connect", "*",
                             R"({"StringEquals":{"iot:ClientId":"locker-101","iot:Connection.Thing.ThingTypeName":"Other"}})"),
       "iot:Connect", "client/locker-101", I},
      {"two operators AND", allow("iot:Connect", "*",
                                  R"({"StringEquals":{"iot:ClientId":"locker-101"},"StringLike":{"aws:SourceIp":"10.*"}})"),
       "iot:Connect", "client/locker-101", I},
      {"IpAddress in block", allow("iot:Connect", "*",
                                   R"({"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}})"),
       "iot:Connect", "client/locker-101", A},
      {"IpAddress outside", allow("iot:Connect", "*",
                                  R"({"IpAddress":{"aws:SourceIp":"198.51.100.0/24"}})"),
       "iot:Connect", "client/locker-101", I},
      {"IpAddress exact", allow("iot:Connect", "*", R"({"IpAddress":{"aws:SourceIp":"203.0.113.7"}})"),
       "iot:Connect", "client/locker-101", A},
      {"IpAddress /32 other", allow("iot:Connect", "*",
                                    R"({"IpAddress":{"aws:SourceIp":"203.0.113.8/32"}})"),
       "iot:Connect", "client/locker-101", I},
      {"IpAddress /0", allow("iot:Connect", "*", R"({"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}})"),
       "iot:Connect", "client/locker-101", A},
      {"IpAddress list", allow("iot:Connect", "*",
                               R"({"IpAddress":{"aws:SourceIp":["10.0.0.0/8","203.0.113.0/25"]}})"),
       "iot:Connect", "client/locker-101", A},
      {"NotIpAddress", allow("iot:Connect", "*", R"({"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}})"),
       "iot:Connect", "client/locker-101", A},
      {"NotIpAddress inside", allow("iot:Connect", "*",
                                    R"({"NotIpAddress":{"aws:SourceIp":"203.0.0.0/8"}})"),
       "iot:Connect", "client/locker-101", I},
      {"IPv6 block", allow("iot:Connect", "*", R"({"IpAddress":{"aws:SourceIp":"2001:db8::/32"}})"),
       "iot:Connect", "client/locker-101", A, [](RequestContext& c) { c.source_ip = "2001:db8::5"; }},
      {"IPv6 outside", allow("iot:Connect", "*", R"({"IpAddress":{"aws:SourceIp":"2001:db9::/32"}})"),
       "iot:Connect", "client/locker-101", I, [](RequestContext& c) { c.source_ip = "2001:db8::5"; }},
      {"IPv4-mapped IPv6 source", allow("iot:Connect", "*",
                                        R"({"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}})"),
       "iot:Connect", "client/locker-101", A,
       [](RequestContext& c) { c.source_ip = "::ffff:203.0.113.9"; }},
      {"ArnLike", allow("iot:Publish", "*", R"({"ArnLike":{"aws:SourceArn":"arn:*"}})"),
       "iot:Publish", "topic/a", I},
      {"ArnEquals on substituted value",
       allow("iot:Publish", "*", R"({"ArnEquals":{"iot:ClientId":"locker-*"}})"), "iot:Publish",
       "topic/a", A},
      {"NumericEquals", allow("iot:Publish", "*",
                              R"({"NumericEquals":{"iot:Connection.Thing.Attributes[floor]":3}})"),
       "iot:Publish", "topic/a", A},
      {"NumericLessThan", allow("iot:Publish", "*",
                                R"({"NumericLessThan":{"iot:Connection.Thing.Attributes[floor]":"2"}})"),
       "iot:Publish", "topic/a", I},
      {"NumericGreaterThanEquals", allow("iot:Publish", "*",
                                         R"({"NumericGreaterThanEquals":{"iot:Connection.Thing.Attributes[floor]":"3"}})"),
       "iot:Publish", "topic/a", A},
      {"Numeric on text fails", allow("iot:Publish", "*",
                                      R"({"NumericEquals":{"iot:Connection.Thing.Attributes[site]":"3"}})"),
       "iot:Publish", "topic/a", I},
      {"Null true when absent", allow("iot:Publish", "*",
                                      R"({"Null":{"iot:Connection.Thing.Attributes[nope]":"true"}})"),
       "iot:Publish", "topic/a", A},
      {"Null false when present", allow("iot:Publish", "*",
                                        R"({"Null":{"iot:Connection.Thing.Attributes[site]":"false"}})"),
       "iot:Publish", "topic/a", A},
      {"Null true when present", allow("iot:Publish", "*",
                                       R"({"Null":{"iot:Connection.Thing.Attributes[site]":"true"}})"),
       "iot:Publish", "topic/a", I},
      // --- multi-valued keys ---
      {"ConnectAttributes ForAnyValue PersistentConnect",
       allow("iot:Connect", "*", R"({"ForAnyValue:StringEquals":{"iot:ConnectAttributes":["PersistentConnect"]}})"),
       "iot:Connect", "client/locker-101", A,
       [](RequestContext& c) { c.connect_attributes = std::vector<std::string>{"PersistentConnect"}; }},
      {"ConnectAttributes ForAnyValue none",
       allow("iot:Connect", "*", R"({"ForAnyValue:StringEquals":{"iot:ConnectAttributes":["PersistentConnect"]}})"),
       "iot:Connect", "client/locker-101", I},
      {"ConnectAttributes ForAllValues subset",
       allow("iot:Connect", "*", R"({"ForAllValues:StringEquals":{"iot:ConnectAttributes":["PersistentConnect","LastWill"]}})"),
       "iot:Connect", "client/locker-101", A,
       [](RequestContext& c) { c.connect_attributes = std::vector<std::string>{"LastWill"}; }},
      {"ConnectAttributes ForAllValues empty is vacuous",
       allow("iot:Connect", "*", R"({"ForAllValues:StringEquals":{"iot:ConnectAttributes":["PersistentConnect"]}})"),
       "iot:Connect", "client/locker-101", A},
      {"ConnectAttributes ForAllValues not subset",
       allow("iot:Connect", "*", R"({"ForAllValues:StringEquals":{"iot:ConnectAttributes":["PersistentConnect"]}})"),
       "iot:Connect", "client/locker-101", I,
       [](RequestContext& c) {
         c.connect_attributes = std::vector<std::string>{"PersistentConnect", "LastWill"};
       }},
      {"Deny LastWill", policy({statement(kAllow, q("iot:Connect"), any),
                                statement(kDeny, q("iot:Connect"), any,
                                          R"({"ForAnyValue:StringEquals":{"iot:ConnectAttributes":"LastWill"}})")}),
       "iot:Connect", "client/locker-101", D,
       [](RequestContext& c) { c.connect_attributes = std::vector<std::string>{"LastWill"}; }},
      {"ForAllValues StringNotEquals",
       allow("iot:Connect", "*", R"({"ForAllValues:StringNotEquals":{"iot:ConnectAttributes":"LastWill"}})"),
       "iot:Connect", "client/locker-101", A,
       [](RequestContext& c) { c.connect_attributes = std::vector<std::string>{"PersistentConnect"}; }},
      {"ForAllValues StringNotEquals fails",
       allow("iot:Connect", "*", R"({"ForAllValues:StringNotEquals":{"iot:ConnectAttributes":"LastWill"}})"),
       "iot:Connect", "client/locker-101", I,
       [](RequestContext& c) {
         c.connect_attributes = std::vector<std::string>{"PersistentConnect", "LastWill"};
       }},
      {"ForAnyValue StringNotEquals",
       allow("iot:Connect", "*", R"({"ForAnyValue:StringNotEquals":{"iot:ConnectAttributes":"LastWill"}})"),
       "iot:Connect", "client/locker-101", A,
       [](RequestContext& c) {
         c.connect_attributes = std::vector<std::string>{"PersistentConnect", "LastWill"};
       }},
      {"OU List ForAnyValue", allow("iot:Publish", "*",
                                    R"({"ForAnyValue:StringEquals":{"iot:Certificate.Subject.OrganizationalUnit.List":"Berlin"}})"),
       "iot:Publish", "topic/a", A},
      {"OU List ForAllValues", allow("iot:Publish", "*",
                                     R"({"ForAllValues:StringEquals":{"iot:Certificate.Subject.OrganizationalUnit.List":"Berlin"}})"),
       "iot:Publish", "topic/a", I},
      {"OU List ForAllValues both", allow("iot:Publish", "*",
                                          R"({"ForAllValues:StringLike":{"iot:Certificate.Subject.OrganizationalUnit.List":["Berlin","Lock*"]}})"),
       "iot:Publish", "topic/a", A},
      {"AvailableKeys", allow("iot:Publish", "*",
                              R"({"ForAnyValue:StringEquals":{"iot:Certificate.AvailableKeys":"iot:Certificate.Subject.Country"}})"),
       "iot:Publish", "topic/a", A},
      {"connect attributes only on connect",
       allow("iot:Publish", "*", R"({"ForAnyValue:StringEquals":{"iot:ConnectAttributes":"LastWill"}})"),
       "iot:Publish", "topic/a", I,
       [](RequestContext& c) { c.connect_attributes = std::vector<std::string>{"LastWill"}; }},
      // --- the article's policies ---
      {"claim policy: create-from-csr",
       policy({statement(kAllow, q("iot:Connect"), any),
               statement(kAllow, R"(["iot:Publish","iot:Receive"])",
                         "[" + q(res("topic/$aws/certificates/create-from-csr/*")) + "," +
                             q(res("topic/$aws/provisioning-templates/LockerTemplate/provision/*")) + "]"),
               statement(kAllow, q("iot:Subscribe"),
                         "[" + q(res("topicfilter/$aws/certificates/create-from-csr/*")) + "," +
                             q(res("topicfilter/$aws/provisioning-templates/LockerTemplate/provision/*")) +
                             "]")}),
       "iot:Publish", "topic/$aws/certificates/create-from-csr/json", A},
      {"claim policy: accepted subscription",
       policy({statement(kAllow, q("iot:Subscribe"),
                         q(res("topicfilter/$aws/certificates/create-from-csr/*")))}),
       "iot:Subscribe", "topicfilter/$aws/certificates/create-from-csr/json/accepted", A},
      {"claim policy: other template refused",
       policy({statement(kAllow, R"(["iot:Publish","iot:Receive"])",
                         q(res("topic/$aws/provisioning-templates/LockerTemplate/provision/*")))}),
       "iot:Publish", "topic/$aws/provisioning-templates/Other/provision/json", I},
      {"claim policy: device topic refused",
       policy({statement(kAllow, R"(["iot:Publish","iot:Receive"])",
                         q(res("topic/$aws/certificates/create-from-csr/*")))}),
       "iot:Publish", "topic/lockers/locker-101/state", I},
      {"device policy: own commands",
       policy({statement(kAllow, q("iot:Subscribe"),
                         q(res("topicfilter/lockers/${iot:Connection.Thing.ThingName}/*")))}),
       "iot:Subscribe", "topicfilter/lockers/locker-101/commands", A},
      {"device policy: other's commands",
       policy({statement(kAllow, q("iot:Subscribe"),
                         q(res("topicfilter/lockers/${iot:Connection.Thing.ThingName}/*")))}),
       "iot:Subscribe", "topicfilter/lockers/locker-102/commands", I},
      {"device policy: all lockers wildcard filter refused",
       policy({statement(kAllow, q("iot:Subscribe"),
                         q(res("topicfilter/lockers/${iot:Connection.Thing.ThingName}/*")))}),
       "iot:Subscribe", "topicfilter/lockers/+/commands", I},
  };
  return v;
}

struct BadCase {
  const char* document;
  const char* expected_fragment;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}
void PrintTo(const BadCase& c, std::ostream* os) {
  *os << c.document;
}

class PolicyCase : public ::testing::TestWithParam<Case> {};

TEST_P(PolicyCase, Decides) {
  const Case& c = GetParam();
  auto doc = parse_document(c.document);
  ASSERT_TRUE(doc.is_ok()) << doc.status().to_string() << "\n" << c.document;
  PolicySet set = {{"p", "1", std::make_shared<Document>(*doc)}};
  RequestContext ctx = locker();
  if (c.adjust) c.adjust(ctx);
  Verdict v = evaluate(set, c.action, arn(c.resource), ctx);
  EXPECT_EQ(to_string(v.decision), to_string(c.expected)) << c.document << "\n" << v.explain();
  // The bound fast path agrees with evaluate() for the MQTT actions.
  for (int a = 0; a < static_cast<int>(MqttAction::kCount); ++a) {
    auto action = static_cast<MqttAction>(a);
    if (action_name(action) != c.action) continue;
    // Bound without and with the ARN prefix (the broker's fast path): the same decisions.
    for (const std::string& prefix : {std::string(), std::string(kArn)}) {
      Grant g(set, ctx, prefix);
      EXPECT_EQ(to_string(g.check(action, arn(c.resource)).decision), to_string(c.expected))
          << "prefix '" << prefix << "'";
      EXPECT_EQ(g.allows(action, arn(c.resource)), c.expected == Decision::kAllowed);
    }
  }
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  std::string s = std::to_string(info.index) + "_";
  for (const char* p = info.param.name; *p; ++p)
    s += std::isalnum(static_cast<unsigned char>(*p)) ? *p : '_';
  return s;
}

INSTANTIATE_TEST_SUITE_P(Table, PolicyCase, ::testing::ValuesIn(cases()), case_name);

// --- malformed documents: refused with the place and the reason ---

class MalformedPolicy : public ::testing::TestWithParam<BadCase> {};

TEST_P(MalformedPolicy, RefusedWithReason) {
  auto r = parse_document(GetParam().document);
  ASSERT_FALSE(r.is_ok()) << GetParam().document;
  EXPECT_EQ(r.status().code(), ErrorCode::kMalformedPolicy);
  EXPECT_NE(r.status().message().find(GetParam().expected_fragment), std::string::npos)
      << r.status().message();
}

const BadCase kBad[] = {
    {"", "not valid JSON"},
    {"{", "not valid JSON"},
    {"[]", "must be a JSON object"},
    {"\"x\"", "must be a JSON object"},
    {R"({"Version":"2012-10-17"})", "Statement is required"},
    {R"({"Version":"2012-10-17","Statement":[]})", "Statement: must not be empty"},
    {R"({"Version":"2012-10-17","Statement":"x"})", "must be an object or a list"},
    {R"({"Version":"2013-01-01","Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*"}})",
     "Version: must be"},
    {R"({"Version":2012,"Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*"}})",
     "Version: must be a string"},
    {R"({"Version":"2012-10-17","Statement":[1]})", "Statement[0]: a statement must be an object"},
    {R"({"Version":"2012-10-17","Statement":[{"Action":"iot:Publish","Resource":"*"}]})",
     "Statement[0]: Effect is required"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Resource":"*"}]})",
     "Action is required"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish"}]})",
     "Resource is required"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"allow","Action":"iot:Publish","Resource":"*"}]})",
     "Statement[0].Effect: must be \"Allow\" or \"Deny\""},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publsh","Resource":"*"}]})",
     "Statement[0].Action: unknown action 'iot:Publsh'"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iot:Connect","iot:Foo"],"Resource":"*"}]})",
     "Statement[0].Action[1]: unknown action"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"fleetkey:RotateCert","Resource":"*"}]})",
     "Statement[0].Action: unknown action 'fleetkey:RotateCert'"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"Publish","Resource":"*"}]})",
     "not of the form service:action"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":5,"Resource":"*"}]})",
     "Statement[0].Action: must be a string or a list of strings"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":[],"Resource":"*"}]})",
     "must not be an empty list"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"topic/a"}]})",
     "must be \"*\" or an ARN"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot"}]})",
     "is not an ARN"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":["*",1]}]})",
     "Statement[0].Resource[1]: must be a string"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:r:1:topic/${iot:ClientId"}]})",
     "unterminated policy variable"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:r:1:topic/${iot:Client Id}"}]})",
     "contains the character ' '"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:r:1:topic/${}"}]})",
     "empty policy variable"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:r:1:topic/${ClientId}"}]})",
     "has no namespace"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"*","Condition":{"StringEqual":{"iot:ClientId":"a"}}}]})",
     "unknown condition operator 'StringEqual'"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2020-01-01T00:00:00Z"}}}]})",
     "not supported by fleetkey"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"*","Condition":{"StringEquals":"x"}}]})",
     "Statement[0].Condition.StringEquals: must be a non-empty object"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"*","Condition":{"StringEquals":{"ClientId":"a"}}}]})",
     "has no namespace"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"*","Condition":{"StringEquals":{"iot:ClientId":{"a":1}}}}]})",
     "a condition value must be a string, number or boolean"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"*","Condition":{"Bool":{"iot:Connection.Thing.IsAttached":"yes"}}}]})",
     "takes true or false"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"*","Condition":{"NumericEquals":{"iot:ClientId":"three"}}}]})",
     "takes a number"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"not-an-ip"}}}]})",
     "takes an IP address"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"*","Condition":[]}]})",
     "Statement[0].Condition: must be an object"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"iot:Publish","Resource":"*"}]})",
     "has no Principal"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Actions":"iot:Publish","Resource":"*"}]})",
     "unknown statement element 'Actions'"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","NotAction":"iot:Connect","Resource":"*"}]})",
     "either Action or NotAction"},
    {R"({"Version":"2012-10-17","Statement":[{"Sid":"a b","Effect":"Allow","Action":"iot:Publish","Resource":"*"}]})",
     "Sid may contain only letters and digits"},
    {R"({"Version":"2012-10-17","Statements":[]})", "unknown top-level element 'Statements'"},
    {R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"*","Condition":{"ForAnyValue:Null":{"iot:ClientId":"true"}}}]})",
     "cannot take a qualifier"},
};

INSTANTIATE_TEST_SUITE_P(Table, MalformedPolicy, ::testing::ValuesIn(kBad));

TEST(PolicyDocument, SharedParsesOncePerTextWhileHeld) {
  const std::string a = R"({"Version":"2012-10-17","Statement":[
    {"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]})";
  const std::string b = R"({"Version":"2012-10-17","Statement":[
    {"Effect":"Deny","Action":"iot:Connect","Resource":"*"}]})";
  auto a1 = parse_document_shared(a);
  auto a2 = parse_document_shared(a);
  auto b1 = parse_document_shared(b);
  ASSERT_TRUE(a1.is_ok() && a2.is_ok() && b1.is_ok());
  EXPECT_EQ(a1->get(), a2->get());  // one parsed document for one text
  EXPECT_NE(a1->get(), b1->get());
  EXPECT_EQ((*b1)->statements.at(0).effect, Effect::kDeny);
  // Released by everyone, then asked again: parsed again, same content.
  *a1 = nullptr;
  *a2 = nullptr;
  auto a3 = parse_document_shared(a);
  ASSERT_TRUE(a3.is_ok());
  EXPECT_EQ((*a3)->statements.at(0).effect, Effect::kAllow);
  // A malformed text is refused the same way parse_document refuses it.
  auto bad = parse_document_shared("{\"Statement\": 1}");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().message(), parse_document("{\"Statement\": 1}").status().message());
}

TEST(PolicyDocument, SizeLimitCountsNonWhitespace) {
  std::string big = R"({"Version":"2012-10-17","Statement":[)";
  std::string st =
      R"({"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:r:1:topic/aaaaaaaaaaaaaaaaaaaa"})";
  while (big.size() + st.size() < 2040) big += st + ",";
  big += st + "]}";
  ASSERT_GT(count_non_whitespace(big), 2048u);
  auto r = parse_document(big);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("at most 2048"), std::string::npos);
  // Whitespace is not counted: a 2,000-character document padded with spaces is fine.
  std::string ok = allow("iot:Publish", "*");
  ok.insert(1, std::string(5000, ' '));
  EXPECT_TRUE(parse_document(ok).is_ok());
}

TEST(PolicyDocument, OtherServicesAndWildcardActionsAreAccepted) {
  EXPECT_TRUE(parse_document(allow("greengrass:*", "*")).is_ok());
  EXPECT_TRUE(parse_document(allow("iot:Get*", "*")).is_ok());
  EXPECT_TRUE(parse_document(allow("iot:UpdateThingShadow", "*")).is_ok());
}

TEST(PolicyEvaluation, ExplainsTheDecidingStatement) {
  auto doc = parse_document(
      policy({R"({"Sid":"AllowAll","Effect":"Allow","Action":"iot:*","Resource":"*"})",
              R"({"Sid":"NoSecrets","Effect":"Deny","Action":"iot:Publish","Resource":")" +
                  arn("topic/secret") + R"("})"}));
  ASSERT_TRUE(doc.is_ok());
  PolicySet set = {{"device-policy", "3", std::make_shared<Document>(*doc)}};
  Verdict deny = evaluate(set, "iot:Publish", arn("topic/secret"), locker());
  EXPECT_EQ(deny.explain(), "denied by policy device-policy statement 1 (NoSecrets)");
  Verdict ok = evaluate(set, "iot:Publish", arn("topic/x"), locker());
  EXPECT_EQ(ok.explain(), "allowed by policy device-policy statement 0 (AllowAll)");
  Verdict none = evaluate({}, "iot:Publish", arn("topic/x"), locker());
  EXPECT_EQ(none.explain(), "no statement allowed it");
}

TEST(PolicyEvaluation, ReportsMissingContextValues) {
  auto doc = parse_document(allow("iot:Publish", arn("topic/${iot:Connection.Thing.ThingName}")));
  ASSERT_TRUE(doc.is_ok());
  PolicySet set = {{"p", "1", std::make_shared<Document>(*doc)}};
  RequestContext ctx = locker();
  ctx.thing.reset();
  Verdict v = evaluate(set, "iot:Publish", arn("topic/locker-101"), ctx);
  EXPECT_EQ(v.decision, Decision::kImplicitDeny);
  ASSERT_EQ(v.missing_context.size(), 1u);
  EXPECT_EQ(v.missing_context[0], "iot:Connection.Thing.ThingName");
}

TEST(PolicyEvaluation, PoliciesCombineAcrossDocuments) {
  auto a = parse_document(allow("iot:Publish", "*"));
  auto d = parse_document(policy({statement(kDeny, q("iot:Publish"), q(arn("topic/x")))}));
  ASSERT_TRUE(a.is_ok() && d.is_ok());
  PolicySet set = {{"allow", "1", std::make_shared<Document>(*a)},
                   {"deny", "1", std::make_shared<Document>(*d)}};
  Verdict v = evaluate(set, "iot:Publish", arn("topic/x"), locker());
  EXPECT_EQ(v.decision, Decision::kExplicitDeny);
  EXPECT_EQ(v.policy_name, "deny");
  EXPECT_TRUE(evaluate(set, "iot:Publish", arn("topic/y"), locker()).allowed());
}

TEST(PolicyPattern, BacktracksWithoutBlowingUp) {
  Pattern p = Pattern::compile("a*a*a*a*a*a*a*a*b");
  EXPECT_FALSE(p.matches(std::string(200, 'a')));
  EXPECT_TRUE(p.matches(std::string(200, 'a') + "b"));
}

}  // namespace
}  // namespace fk::policy
