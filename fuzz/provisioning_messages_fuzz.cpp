// Fuzzes the fleet provisioning request decoders (JSON and CBOR) and the ownership token check.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "provisioning/messages.h"
#include "provisioning/ownership_token.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  using fk::provisioning::Format;
  for (Format f : {Format::kJson, Format::kCbor}) {
    (void)fk::provisioning::decode_create_keys(f, in);
    (void)fk::provisioning::decode_csr_request(f, in);
    auto r = fk::provisioning::decode_register_thing(f, in);
    if (r.is_ok()) {
      static const fk::provisioning::OwnershipTokens tokens(std::string(32, 'k'));
      (void)tokens.verify(r->certificate_ownership_token, "claim", 0);
    }
  }
  (void)fk::provisioning::parse_request_topic(in);
  (void)fk::provisioning::parse_rotation_topic(in);
  static const fk::provisioning::OwnershipTokens tokens(std::string(32, 'k'));
  (void)tokens.verify(in, "claim", 0);
  return 0;
}
