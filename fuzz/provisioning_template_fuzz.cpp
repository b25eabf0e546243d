// Fuzzes the provisioning template engine: parse, then evaluate what parses.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "provisioning/provisioning_template.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto t = fk::provisioning::ProvisioningTemplate::parse(in);
  if (!t.is_ok()) return 0;
  fk::provisioning::PseudoParameters pseudo{"id", {{"CommonName", "cn"}}};
  (void)t->evaluate({{"SerialNumber", "1"}, {"a", "x-y"}}, pseudo);
  (void)t->evaluate({}, pseudo);
  return 0;
}
