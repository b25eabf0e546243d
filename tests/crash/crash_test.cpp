// Crash test: a child process writes multi-record registry changes in a loop and is killed
// with SIGKILL at random moments. After each kill the store is reopened and must hold every
// acknowledged change, whole, and no part of any other change.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <set>

#include "registry/arn.h"
#include "storage/sqlite/sqlite_store.h"

namespace fk::storage {
namespace {

struct Child {
  pid_t pid;
  int out;
};

Child spawn_writer(const std::string& dir, long first) {
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::close(fds[0]);
    ::close(fds[1]);
    std::string first_s = std::to_string(first);
    ::execl(FK_CRASH_WRITER, FK_CRASH_WRITER, dir.c_str(), first_s.c_str(), "4",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fds[1]);
  return {pid, fds[0]};
}

// Reads the child's lines for `ms` milliseconds (or until READY when `until_ready`); returns
// the acknowledged indexes.
std::set<long> read_acks(int fd, int ms, bool& ready, bool until_ready = false) {
  std::set<long> acks;
  std::string pending;
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < end && !(until_ready && ready)) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5) <= 0) continue;
    char buf[4096];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    pending.append(buf, static_cast<std::size_t>(n));
    std::size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      if (line == "READY") ready = true;
      if (line.rfind("ACK ", 0) == 0) acks.insert(std::stol(line.substr(4)));
    }
  }
  return acks;
}

TEST(CrashTest, KillNineLeavesWholeChangesAndLosesNoAcknowledgedOne) {
  std::string dir =
      (std::filesystem::temp_directory_path() / ("fk_crash_" + std::to_string(::getpid())))
          .string();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  registry::ArnScope arns;
  std::mt19937 rng(std::random_device{}());
  std::set<long> acked;
  std::size_t last_count = 0;
  const int kRounds = 8;
  for (int round = 0; round < kRounds; ++round) {
    Child child = spawn_writer(dir, round * 1000000L);
    bool ready = false;
    // Wait for start-up, then let it write for a random while before the kill.
    auto got = read_acks(child.out, 10000, ready, /*until_ready=*/true);
    ASSERT_TRUE(ready) << "writer did not start";
    int ms = std::uniform_int_distribution<int>(20, 400)(rng);
    auto more = read_acks(child.out, ms, ready);
    got.insert(more.begin(), more.end());
    ::kill(child.pid, SIGKILL);
    // Lines already in the pipe were acknowledged before the kill: read them all.
    auto rest = read_acks(child.out, 50, ready);
    got.insert(rest.begin(), rest.end());
    int status = 0;
    ::waitpid(child.pid, &status, 0);
    ::close(child.out);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the writer ended by itself (status " << status << ")";
    acked.insert(got.begin(), got.end());

    auto store = SqliteStore::open(dir + "/registry.db");
    ASSERT_TRUE(store.is_ok()) << store.status().to_string();
    ASSERT_TRUE((*store)->check_integrity().is_ok());
    auto t = (*store)->begin_read();
    ASSERT_TRUE(t.is_ok());
    Transaction& r = **t;
    auto things = r.list_things(ThingQuery{});
    ASSERT_TRUE(things.is_ok());
    std::set<long> present;
    for (const auto& thing : *things) {
      present.insert(std::stol(thing.name.substr(4)));
      // Every stored thing is whole: one principal, whose certificate exists, is ACTIVE and
      // has the device policy attached.
      auto principals = r.list_thing_principals(thing.name, Page{});
      ASSERT_TRUE(principals.is_ok());
      ASSERT_EQ(principals->size(), 1u) << thing.name << " is half-made";
      auto parsed = registry::parse_arn(arns, principals->front());
      ASSERT_TRUE(parsed.is_ok());
      auto cert = r.get_certificate(parsed->id);
      ASSERT_TRUE(cert.is_ok() && cert->has_value()) << thing.name << ": certificate missing";
      EXPECT_EQ((*cert)->status, CertificateStatus::kActive);
      auto policies = r.list_target_policies(principals->front(), Page{});
      ASSERT_TRUE(policies.is_ok());
      EXPECT_EQ(*policies, std::vector<std::string>{"device"}) << thing.name;
    }
    // No certificate without its thing.
    auto certs = r.list_certificates(CertificateQuery{});
    ASSERT_TRUE(certs.is_ok());
    EXPECT_EQ(certs->size(), things->size());
    for (long a : acked) EXPECT_TRUE(present.count(a)) << "acknowledged change " << a << " lost";
    EXPECT_GE(things->size(), last_count);
    last_count = things->size();
  }
  EXPECT_GT(acked.size(), 0u);
  std::printf("crash test: %d kills, %zu acknowledged changes, %zu stored\n", kRounds, acked.size(),
              last_count);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace fk::storage
