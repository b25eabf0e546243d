// Registry transactions per second with durability on: SQLite (WAL, synchronous=FULL: every
// commit is fsynced) and, when FK_BENCH_POSTGRES_URL names a server, PostgreSQL (synchronous
// commit; the cluster-wide writer lock taken per transaction). One transaction = what
// provisioning a device writes: thing + certificate + policy attachment + thing principal.
//   Sequential: one caller, each write waits for its own commit (one fsync per change).
//   Concurrent: N callers at once; the group committer puts many changes in one commit.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "base/log.h"
#include "crypto/openssl/openssl_certificate_authority.h"
#include "crypto/x509.h"
#include "registry/registry.h"
#include "storage/postgres/postgres_store.h"
#include "storage/sqlite/sqlite_store.h"

namespace {

using namespace fk;  // NOLINT(google-build-using-namespace)

struct Fixture {
  std::string dir;
  std::unique_ptr<crypto::OpensslCertificateAuthority> ca;
  std::unique_ptr<storage::Store> store;
  std::unique_ptr<registry::Registry> registry;
  std::atomic<long> next{0};

  explicit Fixture(bool postgres = false) {
    log::set_min_level(log::Level::kError);
    dir = (std::filesystem::temp_directory_path() /
           ("fk_registry_bench_" + std::to_string(::getpid())))
              .string();
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    ca = std::move(crypto::OpensslCertificateAuthority::load_or_create(dir + "/ca", {},
                                                                       SystemClock::instance())
                       .value());
    if (postgres) {
      static int n = 0;
      storage::PostgresOptions o;
      o.url = std::getenv("FK_BENCH_POSTGRES_URL");
      o.schema = "bench_" + std::to_string(::getpid()) + "_" + std::to_string(++n);
      store = std::move(storage::PostgresStore::open(o).value());
    } else {
      store = std::move(storage::SqliteStore::open(dir + "/registry.db").value());
    }
    registry = std::make_unique<registry::Registry>(*store, *ca, SystemClock::instance());
    (void)registry->write([](registry::Txn& t) {
      return t
          .create_policy("device",
                         R"({"Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]})")
          .status();
    });
  }
  ~Fixture() {
    registry.reset();
    store.reset();
    std::filesystem::remove_all(dir);
  }

  Status provision_one() {
    long i = next++;
    std::string name = "dev-" + std::to_string(i);
    crypto::CertificateInfo info;
    info.certificate_id = crypto::random_hex(32);
    info.pem =
        "-----BEGIN CERTIFICATE-----\n" + std::string(600, 'A') + "\n-----END CERTIFICATE-----\n";
    info.subject = "CN=" + name;
    return registry->write([&](registry::Txn& t) -> Status {
      FK_RETURN_IF_ERROR(t.create_thing({name, "", {{"serial", std::to_string(i)}}}).status());
      FK_ASSIGN_OR_RETURN(
          auto cert, t.record_certificate({info, "bench", storage::CertificateStatus::kActive}));
      std::string arn = registry->config().arns.certificate(cert.certificate_id);
      FK_RETURN_IF_ERROR(t.attach_policy("device", arn));
      return t.attach_thing_principal(name, arn);
    });
  }
};

bool with_postgres(benchmark::State& state, bool postgres) {
  if (postgres && std::getenv("FK_BENCH_POSTGRES_URL") == nullptr) {
    state.SkipWithError("FK_BENCH_POSTGRES_URL is not set");
    return false;
  }
  return true;
}

void BM_RegistryTxn_Sequential(benchmark::State& state, bool postgres) {
  if (!with_postgres(state, postgres)) return;
  Fixture f(postgres);
  std::uint64_t commits_before = f.registry->commits();
  for (auto _ : state) {
    Status st = f.provision_one();
    if (!st.is_ok()) state.SkipWithError(st.message().c_str());
  }
  double commits = static_cast<double>(f.registry->commits() - commits_before);
  state.counters["txn_per_commit"] =
      commits > 0 ? static_cast<double>(state.iterations()) / commits : 0;
  state.SetItemsProcessed(state.iterations());
}

// `range(0)` callers in parallel, each doing writes back to back.
void BM_RegistryTxn_Concurrent(benchmark::State& state, bool postgres) {
  if (!with_postgres(state, postgres)) return;
  Fixture f(postgres);
  const int callers = static_cast<int>(state.range(0));
  const int per_caller = 200;
  std::int64_t total = 0;
  std::uint64_t commits_before = f.registry->commits();
  for (auto _ : state) {
    std::vector<std::thread> threads;
    for (int c = 0; c < callers; ++c) {
      threads.emplace_back([&] {
        for (int i = 0; i < per_caller; ++i) (void)f.provision_one();
      });
    }
    for (auto& t : threads) t.join();
    total += callers * per_caller;
  }
  double commits = static_cast<double>(f.registry->commits() - commits_before);
  state.counters["txn_per_commit"] = commits > 0 ? static_cast<double>(total) / commits : 0;
  state.SetItemsProcessed(total);
}

BENCHMARK_CAPTURE(BM_RegistryTxn_Sequential, sqlite, false)->UseRealTime()->MinTime(3.0);
BENCHMARK_CAPTURE(BM_RegistryTxn_Concurrent, sqlite, false)
    ->Arg(8)
    ->Arg(64)
    ->Arg(256)
    ->UseRealTime()
    ->Iterations(1);
BENCHMARK_CAPTURE(BM_RegistryTxn_Sequential, postgres, true)->UseRealTime()->MinTime(3.0);
BENCHMARK_CAPTURE(BM_RegistryTxn_Concurrent, postgres, true)
    ->Arg(8)
    ->Arg(64)
    ->Arg(256)
    ->UseRealTime()
    ->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
