// TimelineRecorder over a real registry (memory store): batching, the per-device bound and its
// note, actors never left out, flush, and pruning by size and age.
#include "app/timeline_recorder.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "crypto/openssl/openssl_certificate_authority.h"
#include "storage/memory/memory_store.h"

namespace fk::app {
namespace {

class TimelineRecorderTest : public ::testing::Test {
 protected:
  TimelineRecorderTest()
      : dir_(std::filesystem::temp_directory_path() /
             ("fk_timeline_" + std::to_string(::getpid()) + "_" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name())),
        clock_(1795000000) {
    auto ca = crypto::OpensslCertificateAuthority::load_or_create(dir_.string(), {}, clock_);
    EXPECT_TRUE(ca.is_ok());
    ca_ = std::move(*ca);
    reg_ = std::make_unique<registry::Registry>(store_, *ca_, clock_);
  }
  ~TimelineRecorderTest() override { std::filesystem::remove_all(dir_); }

  std::vector<DeviceEvent> events_of(const std::string& certificate_id) {
    std::vector<DeviceEvent> out;
    EXPECT_TRUE(reg_->read([&](registry::Txn& t) -> Status {
                      storage::TimelineQuery q;
                      q.certificate_ids = {certificate_id};
                      q.limit = 100000;
                      FK_ASSIGN_OR_RETURN(out, t.store().list_timeline(q));
                      return Status::ok();
                    })
                    .is_ok());
    return out;
  }
  static DeviceEvent refused(const std::string& cert, const std::string& client) {
    DeviceEvent e;
    e.certificate_id = cert;
    e.client_id = client;
    e.event = "connect_refused";
    e.reason = "certificate_not_active";
    return e;
  }

  std::filesystem::path dir_;
  ManualClock clock_;
  storage::MemoryStore store_;
  std::unique_ptr<crypto::OpensslCertificateAuthority> ca_;
  std::unique_ptr<registry::Registry> reg_;
};

TEST_F(TimelineRecorderTest, KeepsABurstPerDeviceThenSaysHowManyWereLeftOut) {
  TimelineConfig config;
  config.per_device_per_minute = 10;
  TimelineRecorder recorder(*reg_, clock_, config);
  for (int i = 0; i < 25; ++i) recorder.record(refused("flapping", "locker-1"));
  // Another client id of the same (claim) certificate is another device.
  for (int i = 0; i < 3; ++i) recorder.record(refused("flapping", "locker-2"));
  // What an operator or the server does is never left out.
  for (int i = 0; i < 15; ++i) {
    DeviceEvent e = refused("flapping", "locker-1");
    e.event = "certificate_status";
    e.actor = "AKIAEXAMPLE";
    recorder.record(e);
  }
  recorder.flush();
  auto all = events_of("flapping");
  std::size_t locker1 = 0, locker2 = 0, statuses = 0;
  for (const auto& e : all) {
    if (e.event == "certificate_status")
      ++statuses;
    else if (e.client_id == "locker-1")
      ++locker1;
    else if (e.client_id == "locker-2")
      ++locker2;
    EXPECT_GT(e.at_ms, 0);  // stamped
  }
  EXPECT_EQ(locker1, 10u);
  EXPECT_EQ(locker2, 3u);
  EXPECT_EQ(statuses, 15u);
  // The next event of that device that is kept names what was left out (once).
  std::size_t notes = 0;
  for (const auto& e : all)
    if (e.detail.find("15 earlier events of this device not kept") != std::string::npos) ++notes;
  EXPECT_EQ(notes, 1u);
  metrics::Exposition out;
  recorder.write_metrics(out);
  EXPECT_NE(out.text().find("fleetkey_timeline_events_total{result=\"rate_limited\"} 15"),
            std::string::npos)
      << out.text();
}

TEST_F(TimelineRecorderTest, PrunesBySizeAndAge) {
  TimelineConfig config;
  config.max_events = 100;
  config.retention_days = 1;
  config.per_device_per_minute = 6000;
  TimelineRecorder recorder(*reg_, clock_, config);
  for (int i = 0; i < 150; ++i) {
    DeviceEvent e = refused("c" + std::to_string(i % 30), "d");
    e.at_ms = (clock_.now() - 3 * 86400) * 1000 + i;  // the first 50: three days old
    if (i >= 50) e.at_ms = clock_.now() * 1000 + i;
    recorder.record(e);
  }
  recorder.flush();
  auto gone = recorder.prune();
  ASSERT_TRUE(gone.is_ok()) << gone.status().to_string();
  EXPECT_EQ(*gone, 50);  // by age: the old ones; by size: 100 left, the bound
  std::size_t left = 0;
  for (int c = 0; c < 30; ++c) left += events_of("c" + std::to_string(c)).size();
  EXPECT_EQ(left, 100u);
  clock_.advance(2 * 86400);  // now everything is past a day old
  gone = recorder.prune();
  ASSERT_TRUE(gone.is_ok());
  EXPECT_EQ(*gone, 100);
}

TEST_F(TimelineRecorderTest, AFullQueueDropsAndCounts) {
  TimelineConfig config;
  config.queue_limit = 5;
  config.per_device_per_minute = 6000;
  {
    TimelineRecorder recorder(*reg_, clock_, config);
    // Recorded faster than the writer's 200 ms batches: past 5 waiting, dropped.
    for (int i = 0; i < 200; ++i) recorder.record(refused("q" + std::to_string(i), "d"));
    metrics::Exposition out;
    recorder.write_metrics(out);
    EXPECT_NE(out.text().find("result=\"queue_full\"}"), std::string::npos) << out.text();
  }  // the destructor writes what waits
  std::size_t kept = 0;
  for (int i = 0; i < 200; ++i) kept += events_of("q" + std::to_string(i)).size();
  EXPECT_GE(kept, 5u);
  EXPECT_LT(kept, 200u);
}

}  // namespace
}  // namespace fk::app
