// Fuzzes the device SDK's provisioning and rotation machines with arbitrary replies (JSON and
// CBOR) on each reply topic, in the states that wait for them: they must never crash, and a
// reply they cannot decode must never move the saved record forward.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "fleetkey/provisioning.h"
#include "fleetkey/rotation.h"

namespace {

using fleetkey::Action;
using fleetkey::Event;

fleetkey::Provisioner at_request(fleetkey::PayloadFormat f, bool registered_step) {
  fleetkey::ProvisioningConfig c;
  c.template_name = "T";
  c.parameters = {{"SerialNumber", "1"}};
  c.claim_client_id = "claim";
  c.format = f;
  c.expected_thing_name = "thing-1";
  fleetkey::ProvisioningRecord r;
  r.stage = registered_step ? fleetkey::Stage::kCertificateIssued : fleetkey::Stage::kKeyReady;
  r.private_key_pem = "k";
  r.csr_pem = "csr";
  if (registered_step) {
    r.certificate_pem = "c";
    r.ownership_token = "t";
  }
  fleetkey::Provisioner p(c, r);
  (void)p.start(0);
  Event e;
  e.type = Event::Type::kConnected;
  (void)p.on(e, 1);
  e.type = Event::Type::kSubscribed;
  (void)p.on(e, 2);
  return p;
}

// A Rotator whose request is sent, waiting for the reply.
fleetkey::Rotator rotation_at_request(fleetkey::PayloadFormat f) {
  fleetkey::RotationConfig c;
  c.format = f;
  c.common_name = "thing-1";
  fleetkey::RotationRecord r;
  r.stage = fleetkey::RotationStage::kKeyReady;
  r.private_key_pem = "k";
  r.csr_pem = "csr";
  r.previous_certificate_pem = "old";
  r.previous_private_key_pem = "old-key";
  fleetkey::Rotator rot(c, r);
  (void)rot.start(0, "old", "old-key", true);
  Event e;
  e.type = Event::Type::kSubscribed;
  (void)rot.on(e, 1);
  return rot;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string payload(reinterpret_cast<const char*>(data), size);
  for (auto f : {fleetkey::PayloadFormat::kJson, fleetkey::PayloadFormat::kCbor}) {
    for (bool reg : {false, true}) {
      for (const char* outcome : {"/accepted", "/rejected"}) {
        fleetkey::Provisioner p = at_request(f, reg);
        const auto before = p.record().stage;
        Event e;
        e.type = Event::Type::kMessage;
        e.topic = (reg ? p.register_topic() : p.certificate_topic()) + outcome;
        e.payload = payload;
        auto actions = p.on(e, 3);
        bool saves = false;
        for (const Action& a : actions) saves = saves || a.type == Action::Type::kSave;
        // The record moves forward only with a save, and only on an accepted reply.
        if (p.record().stage != before && (!saves || std::string(outcome) == "/rejected"))
          std::abort();
      }
    }
  }
  for (auto f : {fleetkey::PayloadFormat::kJson, fleetkey::PayloadFormat::kCbor}) {
    for (const char* outcome : {"/accepted", "/rejected"}) {
      fleetkey::Rotator rot = rotation_at_request(f);
      if (rot.state() != fleetkey::RotationState::kSendRequest) std::abort();
      Event e;
      e.type = Event::Type::kMessage;
      e.topic = rot.request_topic() + outcome;
      e.payload = payload;
      auto actions = rot.on(e, 3);
      bool saves = false;
      for (const Action& a : actions) saves = saves || a.type == Action::Type::kSave;
      const auto stage = rot.record().stage;
      // Issued only with a save, only on an accepted reply that carried a certificate.
      if (stage == fleetkey::RotationStage::kIssued &&
          (!saves || std::string(outcome) == "/rejected" || rot.record().certificate_pem.empty()))
        std::abort();
      // A refusal may drop the rotation (with a save), never keep a half record.
      if (stage == fleetkey::RotationStage::kNone && !saves) std::abort();
    }
  }
  return 0;
}
