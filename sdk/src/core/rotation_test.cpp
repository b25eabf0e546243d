// The rotation state machine against a simulated device (flash, connection) and server (which
// answers as fleetkeyd does): the happy path, every refusal, and a power cut after every action.
#include "fleetkey/rotation.h"

#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/test_payloads.h"

namespace fleetkey {
namespace {

using nlohmann::json;
using AT = Action::Type;
using ET = Event::Type;

RotationConfig config(PayloadFormat f = PayloadFormat::kJson) {
  RotationConfig c;
  c.format = f;
  c.common_name = "locker-101";
  c.response_timeout_ms = 5000;
  c.retry.initial_delay_ms = 1000;
  c.retry.max_delay_ms = 8000;
  c.retry.max_attempts = 5;
  c.jitter_seed = 7;
  return c;
}

using test::decode;
using test::encode;

// fleetkeyd's rotation as the device sees it: one pending new certificate per CSR (the same CSR
// gets the same certificate), the old certificate INACTIVE at the new one's first connect.
struct Server {
  std::map<std::string, std::string> status = {{"cert-old", "ACTIVE"}};  // certificate -> status
  std::map<std::string, std::string> by_csr;                             // CSR -> certificate
  std::string reply_to(const std::string& csr) {
    auto [it, fresh] = by_csr.try_emplace(csr, "cert-new-" + std::to_string(by_csr.size() + 1));
    if (fresh) status[it->second] = "ACTIVE";
    return it->second;
  }
  bool connect(const std::string& cert) {
    if (status[cert] != "ACTIVE") return false;
    if (cert != "cert-old" && status["cert-old"] == "ACTIVE") status["cert-old"] = "INACTIVE";
    return true;
  }
};

// A device: what survives a power cut (flash: the saved record and the committed identity),
// and a Rotator run against the Server until it stops or the power goes.
struct Device {
  RotationConfig cfg = config();
  RotationRecord flash;                    // the saved rotation record
  std::string identity_cert = "cert-old";  // the committed identity (device.cert.pem)
  std::string identity_key = "key-old";
  int keys_made = 0;
  Server* server = nullptr;

  // Runs until the machine stops (true) or `cut_after` actions were carried out (false).
  bool run(std::uint64_t cut_after, RotationState* final_state, std::uint64_t* actions_done) {
    Rotator r(cfg, flash);
    // At boot the device connects with the new certificate if the rotation got that far (the
    // machine asks for it), else with its committed identity.
    const bool up = server->connect(identity_cert);
    std::vector<Action> queue = r.start(0, identity_cert, identity_key, up);
    std::uint64_t done = 0;
    std::uint64_t now = 0;
    while (!queue.empty()) {
      Action a = queue.front();
      queue.erase(queue.begin());
      if (done++ == cut_after) {
        *actions_done = done;
        return false;  // the power goes before this action is carried out
      }
      std::vector<Action> more;
      Event e;
      switch (a.type) {
        case AT::kGenerateKey:
          ++keys_made;
          e.type = ET::kKeyGenerated;
          e.private_key_pem = "key-" + std::to_string(keys_made) + "-" + std::to_string(cut_after);
          e.csr_pem = "csr-" + std::to_string(keys_made) + "-" + std::to_string(cut_after);
          more = r.on(e, now);
          break;
        case AT::kSave:
          flash = r.record();
          e.type = ET::kSaved;
          more = r.on(e, now);
          break;
        case AT::kSubscribe:
          e.type = ET::kSubscribed;
          more = r.on(e, now);
          break;
        case AT::kPublish: {
          const json req = decode(cfg.format, a.payload);
          const std::string cert = server->reply_to(req["certificateSigningRequest"]);
          e.type = ET::kMessage;
          e.topic = r.request_topic() + "/accepted";
          e.payload = encode(cfg.format, {{"certificateId", cert},
                                          {"certificatePem", "PEM " + cert},
                                          {"previousCertificateId", "cert-old"},
                                          {"previousCertificateDeactivatesAt", 1800000000}});
          more = r.on(e, now);
          break;
        }
        case AT::kConnect: {
          const std::string cert = a.role == Role::kNewDevice ? r.record().certificate_pem.substr(4)
                                                              : r.record().previous_certificate_pem;
          const bool ok = server->connect(cert);
          e.type = ok ? ET::kConnected : ET::kConnectFailed;
          e.permanent = !ok;
          more = r.on(e, now);
          break;
        }
        case AT::kComplete:
          // Commit: the new identity is written, then the record cleared (a cut between the
          // two leaves the record, and the next boot completes again).
          identity_cert = r.record().certificate_pem.substr(4);
          identity_key = r.record().private_key_pem;
          if (done++ == cut_after) {
            *actions_done = done;
            return false;
          }
          flash = {};
          break;
        case AT::kStartTimer:
        case AT::kCancelTimer:
          break;
        case AT::kFail:
        case AT::kDisconnect:
          break;
      }
      now += 10;
      queue.insert(queue.end(), more.begin(), more.end());
    }
    *final_state = r.state();
    *actions_done = done;
    return true;
  }
};

TEST(Rotation, HappyPathAsksSavesSwitchesAndCompletes) {
  for (PayloadFormat f : {PayloadFormat::kJson, PayloadFormat::kCbor}) {
    Server server;
    Device d;
    d.cfg = config(f);
    d.server = &server;
    RotationState final_state{};
    std::uint64_t n = 0;
    ASSERT_TRUE(d.run(1000, &final_state, &n));
    EXPECT_EQ(final_state, RotationState::kComplete);
    EXPECT_EQ(d.identity_cert, "cert-new-1");
    EXPECT_EQ(server.status["cert-old"], "INACTIVE");
    EXPECT_EQ(server.status["cert-new-1"], "ACTIVE");
    EXPECT_EQ(d.flash.stage, RotationStage::kNone);
  }
}

TEST(Rotation, PowerCutAfterEveryActionEndsWithExactlyOneWorkingIdentity) {
  // How many actions a whole rotation takes.
  std::uint64_t total = 0;
  {
    Server server;
    Device d;
    d.server = &server;
    RotationState s{};
    ASSERT_TRUE(d.run(1000, &s, &total));
  }
  ASSERT_GT(total, 8u);
  for (std::uint64_t cut = 0; cut < total; ++cut) {
    SCOPED_TRACE("power cut before action " + std::to_string(cut));
    Server server;
    Device d;
    d.server = &server;
    RotationState s{};
    std::uint64_t n = 0;
    ASSERT_FALSE(d.run(cut, &s, &n));
    // Power back: the device resumes from its flash and finishes.
    ASSERT_TRUE(d.run(1000, &s, &n));
    EXPECT_EQ(s, RotationState::kComplete);
    EXPECT_EQ(d.flash.stage, RotationStage::kNone);
    // Exactly one working identity: the device's, ACTIVE; every other certificate not.
    std::set<std::string> active;
    for (const auto& [cert, st] : server.status)
      if (st == "ACTIVE") active.insert(cert);
    EXPECT_EQ(active, std::set<std::string>{d.identity_cert});
    EXPECT_NE(d.identity_cert, "cert-old");
    // The server issued at most one certificate: a resumed request sent the saved CSR again.
    EXPECT_LE(server.by_csr.size(), 1u);
  }
}

Event ev(ET type) {
  Event e;
  e.type = type;
  return e;
}

// Steps the machine by hand to a sent request.
struct Manual {
  Rotator r{config()};
  std::vector<Action> last;
  void to_request() {
    last = r.start(0, "cert-old-pem", "key-old-pem", true);
    ASSERT_EQ(last.at(0).type, AT::kGenerateKey);
    Event k;
    k.type = ET::kKeyGenerated;
    k.private_key_pem = "new-key";
    k.csr_pem = "new-csr";
    last = r.on(k, 0);
    ASSERT_EQ(last.at(0).type, AT::kSave);
    EXPECT_EQ(r.record().stage, RotationStage::kKeyReady);
    EXPECT_EQ(r.record().previous_certificate_pem, "cert-old-pem");
    last = r.on(ev(ET::kSaved), 0);
    ASSERT_EQ(last.at(0).type, AT::kSubscribe);
    EXPECT_EQ(last.at(0).topics,
              (std::vector<std::string>{"$fleetkey/certificates/rotate/json/accepted",
                                        "$fleetkey/certificates/rotate/json/rejected"}));
    last = r.on(ev(ET::kSubscribed), 0);
    ASSERT_EQ(last.at(0).type, AT::kPublish);
    EXPECT_EQ(last.at(0).topics.at(0), "$fleetkey/certificates/rotate/json");
    EXPECT_EQ(json::parse(last.at(0).payload)["certificateSigningRequest"], "new-csr");
    EXPECT_EQ(r.state(), RotationState::kSendRequest);
  }
  std::vector<Action> reply(const std::string& kind, const json& body) {
    Event e;
    e.type = ET::kMessage;
    e.topic = "$fleetkey/certificates/rotate/json/" + kind;
    e.payload = body.dump();
    return last = r.on(e, 100);
  }
};

bool has(const std::vector<Action>& actions, AT type) {
  for (const auto& a : actions)
    if (a.type == type) return true;
  return false;
}

TEST(Rotation, ARefusalDropsTheRotationAndKeepsTheIdentity) {
  Manual m;
  m.to_request();
  auto out = m.reply("rejected", {{"statusCode", 403},
                                  {"errorCode", "AccessDenied"},
                                  {"errorMessage", "no statement allowed it"}});
  ASSERT_TRUE(has(out, AT::kSave));
  EXPECT_EQ(m.r.record().stage, RotationStage::kNone);  // not asked again at the next boot
  out = m.r.on(ev(ET::kSaved), 0);
  ASSERT_TRUE(has(out, AT::kFail));
  EXPECT_EQ(m.r.state(), RotationState::kFailed);
  EXPECT_EQ(m.r.error().kind, ErrorKind::kRotationRejected);
  EXPECT_EQ(m.r.error().status_code, 403);
  EXPECT_NE(m.r.error().message.find("AccessDenied"), std::string::npos);
}

TEST(Rotation, ThrottlingAndTimeoutsAreRetriedWithBackoff) {
  Manual m;
  m.to_request();
  auto out = m.reply("rejected", {{"statusCode", 429}, {"errorCode", "Throttled"}});
  EXPECT_EQ(m.r.state(), RotationState::kBackoff);
  ASSERT_TRUE(has(out, AT::kStartTimer));
  out = m.r.on(ev(ET::kTimer), 2000);
  ASSERT_TRUE(has(out, AT::kPublish));
  out = m.r.on(ev(ET::kTimer), 9000);  // no reply: timeout
  EXPECT_EQ(m.r.state(), RotationState::kBackoff);
  EXPECT_EQ(m.r.error().kind, ErrorKind::kTimeout);
  // A garbled accepted reply is retried, not trusted.
  out = m.r.on(ev(ET::kTimer), 12000);
  out = m.reply("accepted", {{"certificatePem", "x"}});
  EXPECT_EQ(m.r.state(), RotationState::kBackoff);
  EXPECT_EQ(m.r.error().kind, ErrorKind::kBadReply);
  EXPECT_EQ(m.r.record().stage, RotationStage::kKeyReady);
}

TEST(Rotation, ARefusedNewCertificateFallsBackToThePreviousOne) {
  Manual m;
  m.to_request();
  auto out = m.reply("accepted", {{"certificateId", "new-id"},
                                  {"certificatePem", "new-pem"},
                                  {"previousCertificateDeactivatesAt", 1800000000}});
  ASSERT_TRUE(has(out, AT::kSave));
  EXPECT_EQ(m.r.record().stage, RotationStage::kIssued);
  EXPECT_EQ(m.r.record().previous_deactivates_at, 1800000000);
  out = m.r.on(ev(ET::kSaved), 0);
  ASSERT_TRUE(has(out, AT::kConnect));
  EXPECT_EQ(out.back().role, Role::kNewDevice);
  Event refused;
  refused.type = ET::kConnectFailed;
  refused.permanent = true;
  out = m.r.on(refused, 0);
  ASSERT_EQ(out.at(0).type, AT::kConnect);
  EXPECT_EQ(out.at(0).role, Role::kDevice);
  EXPECT_EQ(m.r.state(), RotationState::kFallback);
  out = m.r.on(ev(ET::kConnected), 0);
  ASSERT_TRUE(has(out, AT::kSave));
  EXPECT_EQ(m.r.record().stage, RotationStage::kNone);
  EXPECT_EQ(m.r.record().previous_certificate_pem, "cert-old-pem");
  out = m.r.on(ev(ET::kSaved), 0);
  EXPECT_EQ(m.r.state(), RotationState::kFailed);
  EXPECT_EQ(m.r.error().kind, ErrorKind::kDeviceRejected);
}

TEST(Rotation, ADroppedConnectionAsksAgainOnceConnected) {
  Manual m;
  m.to_request();
  auto out = m.r.on(ev(ET::kDisconnected), 0);
  EXPECT_EQ(m.r.state(), RotationState::kSubscribe);
  out = m.r.on(ev(ET::kConnected), 0);
  ASSERT_TRUE(has(out, AT::kSubscribe));
  out = m.r.on(ev(ET::kSubscribed), 0);
  ASSERT_TRUE(has(out, AT::kPublish));
  EXPECT_EQ(json::parse(out.at(0).payload)["certificateSigningRequest"], "new-csr");
}

TEST(Rotation, DueWithinTheRenewalWindow) {
  RotationConfig c = config();
  c.renew_before_seconds = 30 * 86400;
  EXPECT_FALSE(rotation_due(c, 1000 + 31 * 86400, 1000));
  EXPECT_TRUE(rotation_due(c, 1000 + 30 * 86400, 1000));
  EXPECT_TRUE(rotation_due(c, 500, 1000));  // expired already
}

}  // namespace
}  // namespace fleetkey
