// Policy evaluations per second for typical IoT policies: the article's thing-scoped device
// policy and claim policy, a larger policy with conditions, through evaluate() (what
// TestAuthorization does: substitution and conditions per question) and through the bound
// Grant (what the broker asks on every PUBLISH, SUBSCRIBE and delivery).
#include <benchmark/benchmark.h>

#include "policy/document.h"
#include "policy/evaluator.h"

namespace {

using namespace fk::policy;

const std::string kArn = "arn:aws:iot:us-east-1:123456789012:";

PolicySet parse(const char* name, const char* text) {
  auto d = parse_document(text);
  if (!d.is_ok()) std::abort();
  return {{name, "1", std::make_shared<const Document>(std::move(*d))}};
}

const char* kDevice = R"({"Version":"2012-10-17","Statement":[
  {"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
  {"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":"arn:aws:iot:*:*:topic/lockers/${iot:Connection.Thing.ThingName}/*"},
  {"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:*:*:topicfilter/lockers/${iot:Connection.Thing.ThingName}/*"}]})";

const char* kClaim = R"({"Version":"2012-10-17","Statement":[
  {"Effect":"Allow","Action":"iot:Connect","Resource":"*"},
  {"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":["arn:aws:iot:*:*:topic/$aws/certificates/create-from-csr/*","arn:aws:iot:*:*:topic/$aws/provisioning-templates/LockerTemplate/provision/*"]},
  {"Effect":"Allow","Action":"iot:Subscribe","Resource":["arn:aws:iot:*:*:topicfilter/$aws/certificates/create-from-csr/*","arn:aws:iot:*:*:topicfilter/$aws/provisioning-templates/LockerTemplate/provision/*"]}]})";

const char* kLarge = R"({"Version":"2012-10-17","Statement":[
  {"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"Bool":{"iot:Connection.Thing.IsAttached":"true"},"IpAddress":{"aws:SourceIp":["10.0.0.0/8","203.0.113.0/24"]}}},
  {"Effect":"Deny","Action":"iot:*","Resource":"arn:aws:iot:*:*:topic/$aws/things/*/shadow/delete"},
  {"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":["arn:aws:iot:*:*:topic/lockers/${iot:Connection.Thing.ThingName}/*","arn:aws:iot:*:*:topic/sites/${iot:Connection.Thing.Attributes[site]}/*","arn:aws:iot:*:*:topic/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*"]},
  {"Effect":"Allow","Action":"iot:Subscribe","Resource":["arn:aws:iot:*:*:topicfilter/lockers/${iot:Connection.Thing.ThingName}/*","arn:aws:iot:*:*:topicfilter/sites/${iot:Connection.Thing.Attributes[site]}/*"],"Condition":{"StringLike":{"iot:Certificate.Subject.Organization":"Acme*"}}}]})";

RequestContext context() {
  RequestContext c;
  c.client_id = "locker-101";
  c.source_ip = "203.0.113.7";
  c.thing = ThingFacts{"locker-101", "LockerController", {{"site", "berlin"}}};
  c.thing_is_attached = true;
  c.certificate = CertificateFacts{{{"CN", "locker-101"}, {"O", "Acme Corp"}}, {}, {}, {}, "0a"};
  c.connect_attributes = std::vector<std::string>{};
  return c;
}

void run_evaluate(benchmark::State& state, const char* text, const char* action,
                  const std::string& resource) {
  PolicySet set = parse("p", text);
  RequestContext ctx = context();
  for (auto _ : state) {
    auto v = evaluate(set, action, resource, ctx);
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
}

void run_grant(benchmark::State& state, const char* text, MqttAction action,
               const std::string& resource) {
  PolicySet set = parse("p", text);
  Grant grant(set, context(), kArn);
  for (auto _ : state) benchmark::DoNotOptimize(grant.allows(action, resource));
  state.SetItemsProcessed(state.iterations());
}

void BM_Evaluate_DevicePublish(benchmark::State& s) {
  run_evaluate(s, kDevice, "iot:Publish", kArn + "topic/lockers/locker-101/state");
}
void BM_Evaluate_ClaimPublish(benchmark::State& s) {
  run_evaluate(s, kClaim, "iot:Publish", kArn + "topic/$aws/certificates/create-from-csr/json");
}
void BM_Evaluate_LargeSubscribeDenied(benchmark::State& s) {
  run_evaluate(s, kLarge, "iot:Subscribe", kArn + "topicfilter/lockers/+/commands");
}
void BM_Grant_DevicePublish(benchmark::State& s) {
  run_grant(s, kDevice, MqttAction::kPublish, kArn + "topic/lockers/locker-101/state");
}
void BM_Grant_ClaimPublish(benchmark::State& s) {
  run_grant(s, kClaim, MqttAction::kPublish, kArn + "topic/$aws/certificates/create-from-csr/json");
}
void BM_Grant_LargeReceive(benchmark::State& s) {
  run_grant(s, kLarge, MqttAction::kReceive, kArn + "topic/sites/berlin/alerts");
}
void BM_Grant_LargeDenied(benchmark::State& s) {
  run_grant(s, kLarge, MqttAction::kPublish, kArn + "topic/$aws/things/locker-101/shadow/delete");
}
void BM_BindGrant_Large(benchmark::State& state) {
  PolicySet set = parse("p", kLarge);
  RequestContext ctx = context();
  for (auto _ : state) {
    Grant g(set, ctx);
    benchmark::DoNotOptimize(g);
  }
  state.SetItemsProcessed(state.iterations());
}
void BM_Parse_Large(benchmark::State& state) {
  for (auto _ : state) {
    auto d = parse_document(kLarge);
    benchmark::DoNotOptimize(d);
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_Evaluate_DevicePublish);
BENCHMARK(BM_Evaluate_ClaimPublish);
BENCHMARK(BM_Evaluate_LargeSubscribeDenied);
BENCHMARK(BM_Grant_DevicePublish);
BENCHMARK(BM_Grant_ClaimPublish);
BENCHMARK(BM_Grant_LargeReceive);
BENCHMARK(BM_Grant_LargeDenied);
BENCHMARK(BM_BindGrant_Large);
BENCHMARK(BM_Parse_Large);

}  // namespace

BENCHMARK_MAIN();
