// Fuzzes the policy parser and, for documents it accepts, evaluation and the bound Grant.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "policy/document.h"
#include "policy/evaluator.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto doc = fk::policy::parse_document(text);
  if (!doc.is_ok()) return 0;
  fk::policy::PolicySet set = {{"fuzz", "1", std::make_shared<fk::policy::Document>(*doc)}};
  fk::policy::RequestContext ctx;
  ctx.client_id = "locker-101";
  ctx.source_ip = "203.0.113.7";
  ctx.thing = fk::policy::ThingFacts{"locker-101", "Locker", {{"site", "berlin"}}};
  ctx.thing_is_attached = true;
  ctx.certificate = fk::policy::CertificateFacts{
      {{"CN", "locker-101"}, {"OU", "a"}, {"OU", "b"}}, {{"CN", "ca"}}, {}, {}, "0a"};
  ctx.connect_attributes = std::vector<std::string>{"PersistentConnect"};
  const std::string arn = "arn:aws:iot:eu-west-1:123456789012:";
  (void)fk::policy::evaluate(set, "iot:Connect", arn + "client/locker-101", ctx);
  fk::policy::Grant grant(set, ctx);
  for (const char* r : {"topic/a/b", "topicfilter/a/#", "topic/$aws/x", "client/locker-101"}) {
    for (int a = 0; a < static_cast<int>(fk::policy::MqttAction::kCount); ++a) {
      auto action = static_cast<fk::policy::MqttAction>(a);
      auto v = grant.check(action, arn + r);
      if (v.allowed() != grant.allows(action, arn + r)) __builtin_trap();
    }
  }
  return 0;
}
