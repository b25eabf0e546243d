// The provisioning state machine against a scripted transport: every state, every failure.
// No sockets, files or clock: events and times are fed by hand.
#include "fleetkey/provisioning.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/test_payloads.h"

namespace fleetkey {
namespace {

using nlohmann::json;
using AT = Action::Type;
using ET = Event::Type;

ProvisioningConfig config(PayloadFormat f = PayloadFormat::kJson,
                          KeySource k = KeySource::kDeviceCsr) {
  ProvisioningConfig c;
  c.template_name = "LockerTemplate";
  c.parameters = {{"SerialNumber", "SN-0001"}};
  c.claim_client_id = "claim-SN-0001";
  c.format = f;
  c.key_source = k;
  c.response_timeout_ms = 5000;
  c.retry.initial_delay_ms = 1000;
  c.retry.max_delay_ms = 8000;
  c.retry.max_attempts = 5;
  c.jitter_seed = 42;
  return c;
}

using test::decode;
using test::encode;

// Drives a Provisioner like a transport would, recording every action it asks for.
struct Script {
  Provisioner p;
  std::uint64_t now = 0;
  std::vector<Action> last;  // actions of the latest step
  std::vector<Action> all;
  std::vector<std::pair<std::uint64_t, Action>> connects;

  explicit Script(ProvisioningConfig c, ProvisioningRecord r = {})
      : p(std::move(c), std::move(r)) {}

  const std::vector<Action>& keep(std::vector<Action> a) {
    last = std::move(a);
    for (const auto& x : last) {
      all.push_back(x);
      if (x.type == AT::kConnect) connects.emplace_back(now, x);
    }
    return last;
  }
  const std::vector<Action>& start() { return keep(p.start(now)); }
  const std::vector<Action>& feed(Event e) { return keep(p.on(e, now)); }
  const std::vector<Action>& simple(ET t, bool ok = true) {
    Event e;
    e.type = t;
    e.ok = ok;
    return feed(e);
  }
  const std::vector<Action>& message(const std::string& topic, const std::string& payload) {
    Event e;
    e.type = ET::kMessage;
    e.topic = topic;
    e.payload = payload;
    return feed(e);
  }
  const std::vector<Action>& connect_failed(bool permanent, ErrorKind kind = ErrorKind::kNetwork) {
    Event e;
    e.type = ET::kConnectFailed;
    e.permanent = permanent;
    e.error = {kind, "scripted failure", 0, ""};
    return feed(e);
  }
  // Fires the timer the machine asked for last, advancing the clock by its delay.
  const std::vector<Action>& fire() {
    const Action* t = find(AT::kStartTimer);
    EXPECT_NE(t, nullptr) << "no timer was started";
    now += t ? t->delay_ms : 0;
    return simple(ET::kTimer);
  }
  const Action* find(AT type) const {
    for (const auto& a : last)
      if (a.type == type) return &a;
    return nullptr;
  }
  bool has(AT type) const { return find(type) != nullptr; }
  // The key generation and save a platform does synchronously.
  const std::vector<Action>& key_generated() {
    Event e;
    e.type = ET::kKeyGenerated;
    e.private_key_pem = "-----BEGIN EC PRIVATE KEY-----\nk\n-----END EC PRIVATE KEY-----\n";
    e.csr_pem = "-----BEGIN CERTIFICATE REQUEST-----\nc\n-----END CERTIFICATE REQUEST-----\n";
    return feed(e);
  }
};

const std::string kCsrTopic = "$aws/certificates/create-from-csr/json";
const std::string kRegTopic = "$aws/provisioning-templates/LockerTemplate/provision/json";

json certificate_reply(bool with_key = false) {
  json j = {{"certificateId", "c0ffee"},
            {"certificatePem", "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"},
            {"certificateOwnershipToken", "token-1"}};
  if (with_key)
    j["privateKey"] = "-----BEGIN RSA PRIVATE KEY-----\ns\n-----END RSA PRIVATE KEY-----\n";
  return j;
}

// Runs the claim connection up to the point where the certificate request is published.
void to_certificate_request(Script& s) {
  s.start();
  s.simple(ET::kConnected);
  s.simple(ET::kSubscribed);
  s.key_generated();
  s.simple(ET::kSaved);
  ASSERT_EQ(s.p.state(), State::kSendRequest);
}

void to_register(Script& s) {
  to_certificate_request(s);
  s.message(kCsrTopic + "/accepted", certificate_reply().dump());
  s.simple(ET::kSaved);
  ASSERT_EQ(s.p.state(), State::kRegister);
}

TEST(Provisioner, WholeFlowWithADeviceMadeKeyInJson) {
  Script s(config());
  s.start();
  EXPECT_EQ(s.p.state(), State::kClaimConnect);
  ASSERT_TRUE(s.has(AT::kConnect));
  EXPECT_EQ(s.find(AT::kConnect)->role, Role::kClaim);
  EXPECT_EQ(s.find(AT::kConnect)->client_id, "claim-SN-0001");
  EXPECT_EQ(s.find(AT::kStartTimer)->delay_ms, 5000u);

  s.simple(ET::kConnected);
  EXPECT_EQ(s.p.state(), State::kSubscribe);
  ASSERT_TRUE(s.has(AT::kSubscribe));
  EXPECT_EQ(s.find(AT::kSubscribe)->topics,
            (std::vector<std::string>{kCsrTopic + "/accepted", kCsrTopic + "/rejected",
                                      kRegTopic + "/accepted", kRegTopic + "/rejected"}));

  s.simple(ET::kSubscribed);
  EXPECT_EQ(s.p.state(), State::kGenerateKeys);
  ASSERT_TRUE(s.has(AT::kGenerateKey));
  EXPECT_EQ(s.find(AT::kGenerateKey)->key_type, KeyType::kEcP256);

  s.key_generated();
  ASSERT_TRUE(s.has(AT::kSave)) << "the key is saved before the CSR leaves the device";
  EXPECT_EQ(s.p.record().stage, Stage::kKeyReady);
  EXPECT_FALSE(s.has(AT::kPublish));

  s.simple(ET::kSaved);
  EXPECT_EQ(s.p.state(), State::kSendRequest);
  ASSERT_TRUE(s.has(AT::kPublish));
  EXPECT_EQ(s.find(AT::kPublish)->topics[0], kCsrTopic);
  EXPECT_EQ(json::parse(s.find(AT::kPublish)->payload),
            (json{{"certificateSigningRequest", s.p.record().csr_pem}}));

  s.message(kCsrTopic + "/accepted", certificate_reply().dump());
  ASSERT_TRUE(s.has(AT::kSave));
  EXPECT_FALSE(s.has(AT::kPublish)) << "RegisterThing waits until the certificate is saved";
  EXPECT_EQ(s.p.record().stage, Stage::kCertificateIssued);
  EXPECT_EQ(s.p.record().ownership_token, "token-1");
  EXPECT_EQ(s.p.record().certificate_id, "c0ffee");

  s.simple(ET::kSaved);
  EXPECT_EQ(s.p.state(), State::kRegister);
  ASSERT_TRUE(s.has(AT::kPublish));
  EXPECT_EQ(s.find(AT::kPublish)->topics[0], kRegTopic);
  EXPECT_EQ(json::parse(s.find(AT::kPublish)->payload),
            (json{{"certificateOwnershipToken", "token-1"},
                  {"parameters", {{"SerialNumber", "SN-0001"}}}}));

  s.message(kRegTopic + "/accepted",
            json{{"thingName", "locker-controller-SN-0001"},
                 {"deviceConfiguration", {{"FallbackUrl", "https://example.com"}}}}
                .dump());
  ASSERT_TRUE(s.has(AT::kSave));
  EXPECT_EQ(s.p.record().stage, Stage::kRegistered);
  EXPECT_TRUE(s.p.record().ownership_token.empty()) << "a used token is not kept";
  EXPECT_EQ(s.p.record().device_configuration.at("FallbackUrl"), "https://example.com");

  s.simple(ET::kSaved);
  EXPECT_EQ(s.p.state(), State::kDeviceConnect);
  ASSERT_TRUE(s.has(AT::kDisconnect));
  ASSERT_TRUE(s.has(AT::kConnect));
  EXPECT_EQ(s.find(AT::kConnect)->role, Role::kDevice);
  EXPECT_EQ(s.find(AT::kConnect)->client_id, "locker-controller-SN-0001");

  s.simple(ET::kConnected);
  EXPECT_EQ(s.p.state(), State::kComplete);
  EXPECT_TRUE(s.has(AT::kComplete));
  EXPECT_EQ(s.p.error().kind, ErrorKind::kNone);
  // Done: later events change nothing.
  EXPECT_TRUE(s.simple(ET::kTimer).empty());
  EXPECT_EQ(s.p.state(), State::kComplete);
}

TEST(Provisioner, ServerMadeKeysInCbor) {
  Script s(config(PayloadFormat::kCbor, KeySource::kServerKeys));
  const std::string topic = "$aws/certificates/create/cbor";
  const std::string reg = "$aws/provisioning-templates/LockerTemplate/provision/cbor";
  s.start();
  s.simple(ET::kConnected);
  EXPECT_EQ(s.find(AT::kSubscribe)->topics[0], topic + "/accepted");
  s.simple(ET::kSubscribed);
  ASSERT_FALSE(s.has(AT::kGenerateKey));
  ASSERT_TRUE(s.has(AT::kPublish));
  EXPECT_EQ(s.find(AT::kPublish)->topics[0], topic);
  EXPECT_EQ(s.find(AT::kPublish)->payload, std::string("\xa0", 1)) << "an empty CBOR map";

  s.message(topic + "/accepted", encode(PayloadFormat::kCbor, certificate_reply(true)));
  ASSERT_TRUE(s.has(AT::kSave));
  EXPECT_EQ(s.p.record().private_key_pem, certificate_reply(true)["privateKey"]);
  s.simple(ET::kSaved);
  ASSERT_TRUE(s.has(AT::kPublish));
  EXPECT_EQ(
      decode(PayloadFormat::kCbor, s.find(AT::kPublish)->payload)["certificateOwnershipToken"],
      "token-1");
  s.message(reg + "/accepted", encode(PayloadFormat::kCbor, json{{"thingName", "t-1"}}));
  s.simple(ET::kSaved);
  s.simple(ET::kConnected);
  EXPECT_EQ(s.p.state(), State::kComplete);
  EXPECT_EQ(s.p.record().thing_name, "t-1");
}

TEST(Provisioner, ServerKeysReplyWithoutPrivateKeyIsBad) {
  Script s(config(PayloadFormat::kJson, KeySource::kServerKeys));
  s.start();
  s.simple(ET::kConnected);
  s.simple(ET::kSubscribed);
  s.message("$aws/certificates/create/json/accepted", certificate_reply(false).dump());
  EXPECT_EQ(s.p.state(), State::kBackoff);
  EXPECT_EQ(s.p.error().kind, ErrorKind::kBadReply);
  EXPECT_NE(s.p.error().message.find("privateKey"), std::string::npos);
}

TEST(Provisioner, ResumesFromEachSavedStage) {
  {  // key saved: no second key, the saved CSR goes out
    ProvisioningRecord r;
    r.stage = Stage::kKeyReady;
    r.private_key_pem = "k";
    r.csr_pem = "saved-csr";
    Script s(config(), r);
    s.start();
    s.simple(ET::kConnected);
    s.simple(ET::kSubscribed);
    ASSERT_FALSE(s.has(AT::kGenerateKey));
    ASSERT_TRUE(s.has(AT::kPublish));
    EXPECT_EQ(json::parse(s.find(AT::kPublish)->payload)["certificateSigningRequest"], "saved-csr");
  }
  {  // certificate saved: RegisterThing with the saved token, no new certificate
    ProvisioningRecord r;
    r.stage = Stage::kCertificateIssued;
    r.private_key_pem = "k";
    r.certificate_pem = "c";
    r.ownership_token = "saved-token";
    Script s(config(), r);
    s.start();
    s.simple(ET::kConnected);
    s.simple(ET::kSubscribed);
    ASSERT_TRUE(s.has(AT::kPublish));
    EXPECT_EQ(s.find(AT::kPublish)->topics[0], kRegTopic);
    EXPECT_EQ(json::parse(s.find(AT::kPublish)->payload)["certificateOwnershipToken"],
              "saved-token");
  }
  {  // registered: straight to the device connection, the claim is never used
    ProvisioningRecord r;
    r.stage = Stage::kRegistered;
    r.thing_name = "locker-controller-7";
    Script s(config(), r);
    s.start();
    ASSERT_TRUE(s.has(AT::kConnect));
    EXPECT_EQ(s.find(AT::kConnect)->role, Role::kDevice);
    EXPECT_EQ(s.find(AT::kConnect)->client_id, "locker-controller-7");
    s.simple(ET::kConnected);
    EXPECT_EQ(s.p.state(), State::kComplete);
  }
}

TEST(Provisioner, RejectedCertificateRequestFailsWithAwsFields) {
  Script s(config());
  to_certificate_request(s);
  s.message(kCsrTopic + "/rejected",
            json{{"statusCode", 400}, {"errorCode", "InvalidCsr"}, {"errorMessage", "key too weak"}}
                .dump());
  EXPECT_EQ(s.p.state(), State::kFailed);
  EXPECT_TRUE(s.has(AT::kFail));
  EXPECT_TRUE(s.has(AT::kDisconnect));
  EXPECT_EQ(s.p.error().kind, ErrorKind::kCertificateRejected);
  EXPECT_EQ(s.p.error().status_code, 400);
  EXPECT_EQ(s.p.error().error_code, "InvalidCsr");
  EXPECT_NE(s.p.error().message.find("key too weak"), std::string::npos);
}

TEST(Provisioner, ThrottledRequestIsRetriedAfterBackoff) {
  Script s(config());
  to_certificate_request(s);
  s.message(
      kCsrTopic + "/rejected",
      json{{"statusCode", 429}, {"errorCode", "Throttling"}, {"errorMessage", "slow"}}.dump());
  EXPECT_EQ(s.p.state(), State::kBackoff);
  ASSERT_TRUE(s.has(AT::kStartTimer));
  EXPECT_FALSE(s.has(AT::kDisconnect)) << "the connection is kept for the retry";
  const auto delay = s.find(AT::kStartTimer)->delay_ms;
  EXPECT_GE(delay, 500u);
  EXPECT_LE(delay, 1000u);
  s.fire();
  EXPECT_EQ(s.p.state(), State::kSendRequest);
  EXPECT_EQ(s.find(AT::kPublish)->topics[0], kCsrTopic);
}

TEST(Provisioner, RejectedRegisterThingFails) {
  Script s(config());
  to_register(s);
  s.message(kRegTopic + "/rejected", json{{"statusCode", 400},
                                          {"errorCode", "InvalidParameters"},
                                          {"errorMessage", "SerialNumber is not on the allow-list"}}
                                         .dump());
  EXPECT_EQ(s.p.state(), State::kFailed);
  EXPECT_EQ(s.p.error().kind, ErrorKind::kRegistrationRejected);
  EXPECT_EQ(s.p.error().error_code, "InvalidParameters");
  EXPECT_EQ(s.p.record().stage, Stage::kCertificateIssued) << "nothing saved on refusal";
}

TEST(Provisioner, FirstTokenRefusalIsNotMistakenForALostReply) {
  auto c = config();
  c.expected_thing_name = "locker-controller-SN-0001";
  Script s(c);
  to_register(s);
  s.message(kRegTopic + "/rejected", json{{"statusCode", 400},
                                          {"errorCode", "InvalidCertificateOwnershipToken"},
                                          {"errorMessage", "expired"}}
                                         .dump());
  EXPECT_EQ(s.p.state(), State::kFailed);
  EXPECT_EQ(s.p.error().kind, ErrorKind::kRegistrationRejected);
}

ProvisioningRecord issued() {
  ProvisioningRecord r;
  r.stage = Stage::kCertificateIssued;
  r.private_key_pem = "k";
  r.csr_pem = "csr";
  r.certificate_pem = "c";
  r.certificate_id = "id";
  r.ownership_token = "used-token";
  return r;
}

void resend_token_refused(Script& s) {
  s.start();
  s.simple(ET::kConnected);
  s.simple(ET::kSubscribed);
  s.message(kRegTopic + "/rejected",
            json{{"statusCode", 400},
                 {"errorCode", "InvalidCertificateOwnershipToken"},
                 {"errorMessage", "the certificate ownership token has already been used"}}
                .dump());
}

TEST(Provisioner, LostRegisterReplyIsProvenByConnectingAsTheThing) {
  auto c = config();
  c.expected_thing_name = "locker-controller-SN-0001";
  Script s(c, issued());
  resend_token_refused(s);
  EXPECT_EQ(s.p.state(), State::kDeviceConnect);
  ASSERT_TRUE(s.has(AT::kConnect));
  EXPECT_EQ(s.find(AT::kConnect)->role, Role::kDevice);
  EXPECT_EQ(s.find(AT::kConnect)->client_id, "locker-controller-SN-0001");
  s.simple(ET::kConnected);
  ASSERT_TRUE(s.has(AT::kSave));
  EXPECT_EQ(s.p.record().stage, Stage::kRegistered);
  EXPECT_EQ(s.p.record().thing_name, "locker-controller-SN-0001");
  s.simple(ET::kSaved);
  EXPECT_EQ(s.p.state(), State::kComplete);
  EXPECT_EQ(s.p.record().certificate_id, "id") << "the same identity, not a new one";
}

TEST(Provisioner, LostRegisterReplyWithInactiveCertificateStartsOverFromTheSavedKey) {
  auto c = config();
  c.expected_thing_name = "locker-controller-SN-0001";
  Script s(c, issued());
  resend_token_refused(s);
  s.connect_failed(/*permanent=*/true, ErrorKind::kClaimRejected);
  ASSERT_TRUE(s.has(AT::kSave));
  EXPECT_EQ(s.p.record().stage, Stage::kKeyReady);
  EXPECT_TRUE(s.p.record().certificate_pem.empty());
  EXPECT_TRUE(s.p.record().ownership_token.empty());
  EXPECT_EQ(s.p.record().private_key_pem, "k");
  s.simple(ET::kSaved);
  // The claim connected less than a second ago: the reconnect waits for the limit.
  if (s.p.state() == State::kBackoff) s.fire();
  ASSERT_TRUE(s.has(AT::kConnect));
  EXPECT_EQ(s.find(AT::kConnect)->role, Role::kClaim);
  s.simple(ET::kConnected);
  s.simple(ET::kSubscribed);
  EXPECT_FALSE(s.has(AT::kGenerateKey));
  EXPECT_EQ(json::parse(s.find(AT::kPublish)->payload)["certificateSigningRequest"], "csr");
}

TEST(Provisioner, LostRegisterReplyWithoutExpectedNameStopsWithOutcomeUnknown) {
  Script s(config(), issued());
  resend_token_refused(s);
  EXPECT_EQ(s.p.state(), State::kFailed);
  EXPECT_EQ(s.p.error().kind, ErrorKind::kOutcomeUnknown);
  EXPECT_NE(s.p.error().message.find("expected_thing_name"), std::string::npos);
  EXPECT_EQ(s.p.record().stage, Stage::kCertificateIssued) << "nothing thrown away";
}

TEST(Provisioner, TimeoutRetriesWithGrowingJitteredBackoffThenGivesUp) {
  Script s(config());
  to_certificate_request(s);
  std::vector<std::uint32_t> delays;
  for (int i = 0; i < 10 && s.p.state() != State::kFailed; ++i) {
    s.fire();  // the response timeout
    if (s.p.state() == State::kFailed) break;
    ASSERT_EQ(s.p.state(), State::kBackoff);
    EXPECT_EQ(s.p.error().kind, ErrorKind::kTimeout);
    delays.push_back(s.find(AT::kStartTimer)->delay_ms);
    s.fire();  // the backoff
    ASSERT_EQ(s.p.state(), State::kSendRequest);
    ASSERT_TRUE(s.has(AT::kPublish));
  }
  ASSERT_EQ(delays.size(), 4u) << "max_attempts = 5: four retries, then stop";
  for (std::size_t i = 0; i < delays.size(); ++i) {
    const std::uint32_t base = std::min<std::uint32_t>(8000, 1000u << i);
    EXPECT_GE(delays[i], base / 2) << i;
    EXPECT_LE(delays[i], base) << i;
  }
  EXPECT_EQ(s.p.state(), State::kFailed);
  EXPECT_EQ(s.p.error().kind, ErrorKind::kGaveUp);
  EXPECT_NE(s.p.error().message.find("no reply to"), std::string::npos);
}

TEST(Provisioner, JitterDiffersBetweenDevices) {
  std::set<std::uint32_t> first_delays;
  for (std::uint64_t seed = 1; seed <= 8; ++seed) {
    auto c = config();
    c.jitter_seed = seed;
    Script s(c);
    to_certificate_request(s);
    s.fire();
    first_delays.insert(s.find(AT::kStartTimer)->delay_ms);
  }
  EXPECT_GT(first_delays.size(), 4u) << "devices powered on together must spread out";
}

// Issue 15: on MQTT 3.1.1 a PUBLISH the claim policy does not allow closes the connection;
// the SDK used to retry that forever as a network error.
TEST(Provisioner, ClosedRightAfterEachRequestIsReportedAsNotAuthorized) {
  Script s(config());
  to_register(s);
  for (int i = 0; i < 3 && s.p.state() != State::kFailed; ++i) {
    s.now += 100;  // closed 100 ms after the RegisterThing went out
    s.simple(ET::kDisconnected);
    if (s.p.state() == State::kFailed) break;
    ASSERT_EQ(s.p.state(), State::kBackoff);
    while (!s.has(AT::kConnect)) s.fire();
    s.simple(ET::kConnected);
    s.simple(ET::kSubscribed);
    ASSERT_TRUE(s.has(AT::kPublish));
  }
  ASSERT_EQ(s.p.state(), State::kFailed);
  EXPECT_EQ(s.p.error().kind, ErrorKind::kNotAuthorized);
  EXPECT_NE(s.p.error().message.find("iot:Publish on " + kRegTopic), std::string::npos)
      << s.p.error().message;

  // A connection lost long after the request (a flaky network) stays a network error.
  Script slow(config());
  to_register(slow);
  for (int i = 0; i < 3; ++i) {
    slow.now += 5000;
    slow.simple(ET::kDisconnected);
    ASSERT_EQ(slow.p.state(), State::kBackoff) << i;
    EXPECT_EQ(slow.p.error().kind, ErrorKind::kNetwork);
    while (!slow.has(AT::kConnect)) slow.fire();
    slow.simple(ET::kConnected);
    slow.simple(ET::kSubscribed);
  }
}

TEST(Provisioner, ConnectionLostMidRequestReconnectsAndResumes) {
  Script s(config());
  to_register(s);  // certificate saved, RegisterThing sent
  Event lost;
  lost.type = ET::kDisconnected;
  lost.error = {ErrorKind::kNetwork, "reset by peer", 0, ""};
  s.feed(lost);
  EXPECT_EQ(s.p.state(), State::kBackoff);
  EXPECT_EQ(s.p.error().kind, ErrorKind::kNetwork);
  s.fire();
  if (s.p.state() == State::kBackoff) s.fire();  // the one-connect-per-second limit
  ASSERT_TRUE(s.has(AT::kConnect));
  EXPECT_EQ(s.find(AT::kConnect)->role, Role::kClaim);
  s.simple(ET::kConnected);
  s.simple(ET::kSubscribed);
  ASSERT_TRUE(s.has(AT::kPublish));
  EXPECT_EQ(s.find(AT::kPublish)->topics[0], kRegTopic) << "the same token, no new certificate";
}

TEST(Provisioner, NeverConnectsTwiceInOneSecondWithTheSameClientId) {
  Script s(config());
  s.start();
  for (int i = 0; i < 4; ++i) {
    s.connect_failed(false);
    ASSERT_EQ(s.p.state(), State::kBackoff);
    while (s.p.state() == State::kBackoff) s.fire();
  }
  ASSERT_GE(s.connects.size(), 5u);
  for (std::size_t i = 1; i < s.connects.size(); ++i)
    EXPECT_GE(s.connects[i].first - s.connects[i - 1].first, 1000u) << i;
}

TEST(Provisioner, PermanentRefusalsStopAtOnceWithTheirKind) {
  {
    Script s(config());
    s.start();
    s.connect_failed(true, ErrorKind::kClaimRejected);
    EXPECT_EQ(s.p.state(), State::kFailed);
    EXPECT_EQ(s.p.error().kind, ErrorKind::kClaimRejected);
  }
  {
    Script s(config());
    s.start();
    s.connect_failed(true, ErrorKind::kServerCertificate);
    EXPECT_EQ(s.p.error().kind, ErrorKind::kServerCertificate);
  }
  {  // the device certificate refused after registration: no second identity is made
    ProvisioningRecord r;
    r.stage = Stage::kRegistered;
    r.thing_name = "t";
    Script s(config(), r);
    s.start();
    s.connect_failed(true, ErrorKind::kClaimRejected);
    EXPECT_EQ(s.p.state(), State::kFailed);
    EXPECT_EQ(s.p.error().kind, ErrorKind::kDeviceRejected);
  }
  {
    Script s(config());
    s.start();
    s.simple(ET::kConnected);
    s.simple(ET::kSubscribed, /*ok=*/false);
    EXPECT_EQ(s.p.error().kind, ErrorKind::kNotAuthorized);
  }
  {
    Script s(config());
    to_certificate_request(s);
    s.simple(ET::kPublishFailed, false);
    EXPECT_EQ(s.p.error().kind, ErrorKind::kNotAuthorized);
  }
}

TEST(Provisioner, GarbledRepliesAreRetriedNotTrusted) {
  Script s(config());
  to_certificate_request(s);
  s.message(kCsrTopic + "/accepted", "{\"certificateId\": 1");
  EXPECT_EQ(s.p.state(), State::kBackoff);
  EXPECT_EQ(s.p.error().kind, ErrorKind::kBadReply);
  EXPECT_EQ(s.p.record().stage, Stage::kKeyReady);
  s.fire();
  s.message(kCsrTopic + "/accepted", json{{"certificateId", "x"}}.dump());
  EXPECT_EQ(s.p.error().kind, ErrorKind::kBadReply);
  EXPECT_NE(s.p.error().message.find("certificatePem"), std::string::npos);
  s.fire();
  s.message(kCsrTopic + "/rejected", "[]");
  EXPECT_EQ(s.p.error().kind, ErrorKind::kBadReply);
}

TEST(Provisioner, StrayMessagesAreIgnored) {
  Script s(config());
  to_certificate_request(s);
  EXPECT_TRUE(s.message("lockers/x/commands", "open").empty());
  EXPECT_TRUE(s.message(kRegTopic + "/accepted", json{{"thingName", "x"}}.dump()).empty());
  EXPECT_EQ(s.p.state(), State::kSendRequest);
}

TEST(Provisioner, StorageAndKeyFailuresStop) {
  {
    Script s(config());
    s.start();
    s.simple(ET::kConnected);
    s.simple(ET::kSubscribed);
    s.key_generated();
    Event e;
    e.type = ET::kSaved;
    e.ok = false;
    e.error = {ErrorKind::kStorage, "No space left on device", 0, ""};
    s.feed(e);
    EXPECT_EQ(s.p.state(), State::kFailed);
    EXPECT_EQ(s.p.error().kind, ErrorKind::kStorage);
    EXPECT_NE(s.p.error().message.find("No space"), std::string::npos);
  }
  {
    Script s(config());
    s.start();
    s.simple(ET::kConnected);
    s.simple(ET::kSubscribed);
    s.simple(ET::kKeyGenerated, false);
    EXPECT_EQ(s.p.error().kind, ErrorKind::kKeyGeneration);
  }
}

TEST(Provisioner, ConnectTimeoutClosesAndRetries) {
  Script s(config());
  s.start();
  s.fire();  // no CONNACK
  EXPECT_TRUE(s.has(AT::kDisconnect));
  EXPECT_EQ(s.p.state(), State::kBackoff);
  EXPECT_EQ(s.p.error().kind, ErrorKind::kTimeout);
}

// A server that drops the connection at one step, every time: the machine reconnects and
// resumes at that step until max_attempts, then stops with gave-up naming the lost connection.
TEST(Provisioner, AServerDroppingEveryStepEndsInGaveUpWithTheCause) {
  for (State drop_at : {State::kSubscribe, State::kSendRequest, State::kRegister}) {
    SCOPED_TRACE(to_string(drop_at));
    Script s(config());
    s.start();
    int drops = 0;
    for (int guard = 0; guard < 200 && s.p.state() != State::kFailed; ++guard) {
      switch (s.p.state()) {
        case State::kClaimConnect:
          s.simple(ET::kConnected);
          break;
        case State::kSubscribe:
        case State::kSendRequest:
        case State::kRegister:
          if (s.p.state() == drop_at) {
            ++drops;
            // Dropped a while after the request (a close right after it is a refusal:
            // ClosedRightAfterEachRequestIsReportedAsNotAuthorized).
            s.now += 4000;
            Event lost;
            lost.type = ET::kDisconnected;
            lost.error = {ErrorKind::kNetwork, "connection reset", 0, ""};
            s.feed(lost);
          } else if (s.p.state() == State::kSubscribe) {
            s.simple(ET::kSubscribed);
          } else if (s.p.state() == State::kSendRequest) {
            s.message(kCsrTopic + "/accepted", certificate_reply().dump());
            s.simple(ET::kSaved);
          }
          break;
        case State::kGenerateKeys:
          s.key_generated();
          s.simple(ET::kSaved);
          break;
        case State::kBackoff:
          s.fire();
          break;
        default:
          FAIL() << "unexpected state " << to_string(s.p.state());
      }
    }
    EXPECT_EQ(s.p.state(), State::kFailed);
    EXPECT_EQ(s.p.error().kind, ErrorKind::kGaveUp);
    EXPECT_NE(s.p.error().message.find("connection lost in state"), std::string::npos)
        << s.p.error().message;
    EXPECT_EQ(drops, 5) << "max_attempts = 5";
    // Progress was kept: no second key, no second certificate request after the first.
    std::size_t keys = 0, cert_requests = 0;
    for (const auto& a : s.all) {
      keys += a.type == AT::kGenerateKey;
      cert_requests += a.type == AT::kPublish && a.topics[0] == kCsrTopic;
    }
    EXPECT_EQ(keys, drop_at == State::kSubscribe ? 0u : 1u);
    if (drop_at == State::kRegister) {
      EXPECT_EQ(cert_requests, 1u);
    }
  }
}

TEST(Provisioner, ConnectionLostWhileTheKeyIsMadeReconnectsBeforeSending) {
  Script s(config());
  s.start();
  s.simple(ET::kConnected);
  s.simple(ET::kSubscribed);
  ASSERT_EQ(s.p.state(), State::kGenerateKeys);
  s.simple(ET::kDisconnected);
  EXPECT_TRUE(s.last.empty()) << "the key is still being made";
  s.key_generated();
  s.now += 1500;
  s.simple(ET::kSaved);
  ASSERT_TRUE(s.has(AT::kConnect)) << "no publish on a dead connection";
  EXPECT_FALSE(s.has(AT::kPublish));
  s.simple(ET::kConnected);
  s.simple(ET::kSubscribed);
  ASSERT_TRUE(s.has(AT::kPublish));
  EXPECT_EQ(s.find(AT::kPublish)->topics[0], kCsrTopic);
}

TEST(Provisioner, DeviceConnectNetworkFailuresAreRetriedAsTheDevice) {
  ProvisioningRecord r;
  r.stage = Stage::kRegistered;
  r.thing_name = "t";
  Script s(config(), r);
  s.start();
  s.connect_failed(false);
  EXPECT_EQ(s.p.state(), State::kBackoff);
  while (s.p.state() == State::kBackoff) s.fire();
  ASSERT_TRUE(s.has(AT::kConnect));
  EXPECT_EQ(s.find(AT::kConnect)->role, Role::kDevice);
  s.simple(ET::kConnected);
  EXPECT_EQ(s.p.state(), State::kComplete);
}

// The replies in ../shared/vectors (the shapes the official SDK accepted) drive the machine.
std::string read(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(Provisioner, AcceptsTheCapturedReplies) {
  const std::filesystem::path root = FK_VECTORS_DIR "/fleet-provisioning";
  struct Case {
    const char* scenario;
    PayloadFormat format;
    KeySource source;
    const char* cert_reply;
    const char* register_reply;
    const char* template_name;
  };
  const Case cases[] = {
      {"05-pubsub-mqtt311-csr-json", PayloadFormat::kJson, KeySource::kDeviceCsr,
       "009-claim-s2c-PUBLISH.payload.json", "017-claim-s2c-PUBLISH.payload.json", "FleetTemplate"},
      {"09-cbor-mqtt311-csr", PayloadFormat::kCbor, KeySource::kDeviceCsr,
       "009-claim-s2c-PUBLISH.payload.cbor", "017-claim-s2c-PUBLISH.payload.cbor", "FleetTemplate"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.scenario);
    const auto dir = root / c.scenario;
    ASSERT_TRUE(std::filesystem::exists(dir / c.cert_reply));
    auto cfg = config(c.format, c.source);
    cfg.template_name = c.template_name;
    Script s(cfg);
    to_certificate_request(s);
    s.message(s.p.certificate_topic() + "/accepted", read(dir / c.cert_reply));
    ASSERT_TRUE(s.has(AT::kSave)) << s.p.error().message;
    EXPECT_NE(s.p.record().certificate_pem.find("BEGIN CERTIFICATE"), std::string::npos);
    s.simple(ET::kSaved);
    s.message(s.p.register_topic() + "/accepted", read(dir / c.register_reply));
    ASSERT_TRUE(s.has(AT::kSave)) << s.p.error().message;
    EXPECT_FALSE(s.p.record().thing_name.empty());
    s.simple(ET::kSaved);
    s.simple(ET::kConnected);
    EXPECT_EQ(s.p.state(), State::kComplete);
  }
  // A captured rejection: its fields reach the error.
  Script s([] {
    auto c = config();
    c.template_name = "FleetTemplate";
    return c;
  }());
  to_certificate_request(s);
  s.message(s.p.certificate_topic() + "/accepted",
            read(root / "05-pubsub-mqtt311-csr-json/009-claim-s2c-PUBLISH.payload.json"));
  s.simple(ET::kSaved);
  for (const auto& f :
       std::filesystem::directory_iterator(root / "11-pubsub-mqtt311-register-rejected-json")) {
    if (f.path().filename().string().find("s2c-PUBLISH.payload.json") == std::string::npos)
      continue;
    const std::string body = read(f.path());
    if (body.find("errorCode") == std::string::npos) continue;
    s.message(s.p.register_topic() + "/rejected", body);
    EXPECT_EQ(s.p.state(), State::kFailed);
    EXPECT_EQ(s.p.error().error_code, "InvalidParameters");
  }
  EXPECT_EQ(s.p.state(), State::kFailed);
}

}  // namespace
}  // namespace fleetkey
