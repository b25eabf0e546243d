// KeyedRateLimiter: a token bucket per key (a claim certificate, a connection, a certificate),
// for requests that cost the server signatures or commits. Memory is
// bounded: past 100,000 keys the table starts again (keys are often the device's choice).
//
// Thread-safety: take() may be called from any thread.
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <unordered_map>

namespace fk::provisioning {

class KeyedRateLimiter {
 public:
  // False when `key` is over `per_second` (<= 0: no limit); a new or rested key has `burst`
  // tokens (at least 1).
  bool take(const std::string& key, double per_second, double burst);

 private:
  struct Bucket {
    double tokens = 0;
    std::chrono::steady_clock::time_point refreshed;
  };
  std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace fk::provisioning
