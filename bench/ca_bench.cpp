// Certificates issued per second by the CA: from CSRs (P-256 and RSA 2048 device keys, each
// CSR's signature verified, then signed by the issuing CA) and with server-made keys.
// bench/run.sh sets these against `openssl speed` on the same machine.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>

#include "base/log.h"
#include "crypto/openssl/openssl_certificate_authority.h"
#include "crypto/x509.h"

namespace {

using namespace fk;  // NOLINT(google-build-using-namespace)

crypto::CertificateAuthority& ca_with(crypto::KeySpec key) {
  static std::map<std::string, std::unique_ptr<crypto::OpensslCertificateAuthority>> cas;
  auto& slot = cas[crypto::to_string(key)];
  if (!slot) {
    log::set_min_level(log::Level::kError);
    auto dir = std::filesystem::temp_directory_path() /
               ("fk_ca_bench_" + crypto::to_string(key) + "_" + std::to_string(::getpid()));
    crypto::CaConfig config;
    config.ca_key = key;
    slot = std::move(crypto::OpensslCertificateAuthority::load_or_create(dir.string(), config,
                                                                         SystemClock::instance())
                         .value());
    std::filesystem::remove_all(dir);
  }
  return *slot;
}

std::string csr_for(crypto::KeySpec key) {
  auto pair = crypto::generate_key_pair(key);
  return crypto::make_csr(pair->private_key_pem, "locker-controller-101").value();
}

void issue_from_csr(benchmark::State& state, crypto::KeySpec device_key, crypto::KeySpec ca_key) {
  static std::map<std::string, std::string> csrs;
  auto& ca = ca_with(ca_key);
  std::string csr;
  {
    static std::mutex mu;
    std::lock_guard<std::mutex> lock(mu);
    auto& slot = csrs[crypto::to_string(device_key)];
    if (slot.empty()) slot = csr_for(device_key);
    csr = slot;
  }
  for (auto _ : state) {
    auto c = ca.issue_from_csr(csr, {});
    if (!c.is_ok()) state.SkipWithError(c.status().message().c_str());
    benchmark::DoNotOptimize(c);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_IssueFromCsr_P256(benchmark::State& s) {
  issue_from_csr(s, crypto::KeySpec::ec_p256(), crypto::KeySpec::ec_p256());
}
void BM_IssueFromCsr_RSA2048(benchmark::State& s) {
  issue_from_csr(s, crypto::KeySpec::rsa(2048), crypto::KeySpec::ec_p256());
}
void BM_IssueFromCsr_P256_RsaCa3072(benchmark::State& s) {
  issue_from_csr(s, crypto::KeySpec::ec_p256(), crypto::KeySpec::rsa(3072));
}

void BM_IssueWithNewKey(benchmark::State& state, crypto::KeySpec key) {
  auto& ca = ca_with(crypto::KeySpec::ec_p256());
  for (auto _ : state) {
    auto c = ca.issue_with_new_key(key, {});
    if (!c.is_ok()) state.SkipWithError(c.status().message().c_str());
    benchmark::DoNotOptimize(c);
  }
  state.SetItemsProcessed(state.iterations());
}
void BM_IssueWithNewKey_RSA2048(benchmark::State& s) {
  BM_IssueWithNewKey(s, crypto::KeySpec::rsa(2048));
}
void BM_IssueWithNewKey_P256(benchmark::State& s) {
  BM_IssueWithNewKey(s, crypto::KeySpec::ec_p256());
}

BENCHMARK(BM_IssueFromCsr_P256)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_IssueFromCsr_RSA2048)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_IssueFromCsr_P256_RsaCa3072)->Threads(1)->UseRealTime();
BENCHMARK(BM_IssueWithNewKey_P256)->Threads(1)->UseRealTime();
BENCHMARK(BM_IssueWithNewKey_RSA2048)->Threads(1)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
