// What one node reads from another (routed messages, client-id records, heartbeats, subjects):
// bounded decoding never crashes, and what decodes survives a round trip.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cluster/records.h"
#include "cluster/subjects.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  if (auto e = fk::cluster::decode_envelope(in, 128 * 1024)) {
    auto again = fk::cluster::decode_envelope(
        fk::cluster::encode_envelope(e->node, e->id, *e->message), 128 * 1024);
    if (!again || again->message->topic != e->message->topic ||
        again->message->payload != e->message->payload)
      __builtin_trap();
  }
  if (auto r = fk::cluster::decode_session(in)) {
    auto again = fk::cluster::decode_session(
        fk::cluster::encode_session(r->session, r->epoch, r->takeovers));
    if (!again || again->session.subscriptions != r->session.subscriptions ||
        again->epoch != r->epoch)
      __builtin_trap();
  }
  (void)fk::cluster::decode_node(in);
  if (auto topic = fk::cluster::subject_to_topic(in)) {
    // Every topic a subject names maps to a subject naming it again.
    if (fk::cluster::subject_to_topic(fk::cluster::topic_to_subject(*topic)) != topic)
      __builtin_trap();
  }
  return 0;
}
