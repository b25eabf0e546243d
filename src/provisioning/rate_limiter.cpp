#include "provisioning/rate_limiter.h"

#include <algorithm>

namespace fk::provisioning {

bool KeyedRateLimiter::take(const std::string& key, double per_second, double burst) {
  if (per_second <= 0) return true;
  const auto now = std::chrono::steady_clock::now();
  burst = std::max(burst, 1.0);
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, fresh] = buckets_.try_emplace(key);
  Bucket& b = it->second;
  if (fresh) {
    b.tokens = burst;
  } else {
    const double elapsed = std::chrono::duration<double>(now - b.refreshed).count();
    b.tokens = std::min(burst, b.tokens + elapsed * per_second);
  }
  b.refreshed = now;
  const bool allowed = b.tokens >= 1;
  if (allowed) b.tokens -= 1;
  if (buckets_.size() > 100'000) buckets_.clear();  // `b` is not used after
  return allowed;
}

}  // namespace fk::provisioning
