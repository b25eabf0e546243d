// Child process of the crash test: writes multi-record registry changes (thing + certificate +
// policy attachment + thing principal, one transaction each) from several threads through the
// group committer, and prints "ACK <n>" only after write() returned ok, i.e. after the commit
// is durable. The parent kills it with SIGKILL at random moments.
//
// usage: fk_crash_writer DATA_DIR FIRST_INDEX THREADS
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "crypto/openssl/openssl_certificate_authority.h"
#include "crypto/x509.h"
#include "registry/registry.h"
#include "storage/sqlite/sqlite_store.h"

int main(int argc, char** argv) {
  using namespace fk;  // NOLINT(google-build-using-namespace)
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s DATA_DIR FIRST_INDEX THREADS\n", argv[0]);
    return 2;
  }
  std::string dir = argv[1];
  long first = std::atol(argv[2]);
  int threads = std::atoi(argv[3]);
  auto ca =
      crypto::OpensslCertificateAuthority::load_or_create(dir + "/ca", {}, SystemClock::instance());
  auto store = storage::SqliteStore::open(dir + "/registry.db");
  if (!ca.is_ok() || !store.is_ok()) {
    std::fprintf(stderr, "open failed: %s %s\n", ca.status().to_string().c_str(),
                 store.status().to_string().c_str());
    return 1;
  }
  registry::Registry reg(**store, **ca, SystemClock::instance());
  const char* policy =
      R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]})";
  Status st = reg.write([&](registry::Txn& t) -> Status {
    auto p = t.store().get_policy("device");
    if (p.is_ok() && p->has_value()) return Status::ok();
    return t.create_policy("device", policy).status();
  });
  if (!st.is_ok()) {
    std::fprintf(stderr, "policy: %s\n", st.to_string().c_str());
    return 1;
  }
  std::printf("READY\n");
  std::fflush(stdout);

  std::mutex out_mu;
  std::atomic<long> next{first};
  std::vector<std::thread> workers;
  for (int w = 0; w < threads; ++w) {
    workers.emplace_back([&] {
      for (;;) {
        long i = next++;
        std::string name = "dev-" + std::to_string(i);
        crypto::CertificateInfo info;
        info.certificate_id = crypto::random_hex(32);
        info.pem = "-----BEGIN CERTIFICATE-----\n(crash test)\n-----END CERTIFICATE-----\n";
        info.subject = "CN=" + name;
        info.not_after = crypto::kAwsDefaultNotAfter;
        Status s = reg.write([&](registry::Txn& t) -> Status {
          FK_RETURN_IF_ERROR(t.create_thing({name, "", {{"serial", std::to_string(i)}}}).status());
          FK_ASSIGN_OR_RETURN(auto cert, t.record_certificate(
                                             {info, "crash", storage::CertificateStatus::kActive}));
          std::string arn = reg.config().arns.certificate(cert.certificate_id);
          FK_RETURN_IF_ERROR(t.attach_policy("device", arn));
          return t.attach_thing_principal(name, arn);
        });
        if (!s.is_ok()) {
          std::fprintf(stderr, "write %ld: %s\n", i, s.to_string().c_str());
          std::exit(1);
        }
        std::lock_guard<std::mutex> lock(out_mu);
        std::printf("ACK %ld\n", i);
        std::fflush(stdout);
      }
    });
  }
  for (auto& t : workers) t.join();
}
