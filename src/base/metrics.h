// Metrics for Prometheus: counters, gauges and histograms that the parts update on their hot
// paths with relaxed atomics (no lock, no allocation), and a Registry that renders them in the
// Prometheus text exposition format (version 0.0.4) for GET /metrics.
//
// Labels are fixed when a series is made (a bounded set: an MQTT reason code's name, a
// provisioning operation and errorCode): a LabeledCounter makes each label set's series on first
// use and keeps it, with a cap on how many it will make (then "other").
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace fk::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void add(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

// Durations in seconds, with fixed buckets from 100 us to 10 s (what connects, handshakes,
// provisioning requests and commits take).
class Histogram {
 public:
  static constexpr std::array<double, 14> kBounds = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0};
  void observe(double seconds);
  // Cumulative counts per bound (then +Inf), the sum and the count, as Prometheus wants them.
  struct Snapshot {
    std::array<std::uint64_t, kBounds.size() + 1> cumulative{};
    double sum = 0;
    std::uint64_t count = 0;
  };
  Snapshot snapshot() const;

 private:
  std::array<std::atomic<std::uint64_t>, kBounds.size() + 1> buckets_{};
  std::atomic<std::uint64_t> sum_micros_{0};
};

// Series of one family by label values (made on first use, at most `max_series`).
template <typename T>
class Labeled {
 public:
  explicit Labeled(std::vector<std::string> label_names, std::size_t max_series = 200)
      : names_(std::move(label_names)), max_series_(max_series) {}
  T& with(const std::vector<std::string>& values) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = series_.find(values);
    if (it != series_.end()) return *it->second;
    std::vector<std::string> key = values;
    if (series_.size() >= max_series_) key.assign(names_.size(), "other");
    auto& slot = series_[key];
    if (!slot) slot = std::make_unique<T>();
    return *slot;
  }
  void each(const std::function<void(const Labels&, const T&)>& fn) const {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [values, series] : series_) {
      Labels labels;
      for (std::size_t i = 0; i < names_.size() && i < values.size(); ++i)
        labels.emplace_back(names_[i], values[i]);
      fn(labels, *series);
    }
  }

 private:
  const std::vector<std::string> names_;
  const std::size_t max_series_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<T>> series_;
};

using LabeledCounter = Labeled<Counter>;
using LabeledHistogram = Labeled<Histogram>;

// The text a scrape returns, family by family (HELP and TYPE once each).
class Exposition {
 public:
  void counter(const std::string& name, const std::string& help, double value,
               const Labels& labels = {});
  void gauge(const std::string& name, const std::string& help, double value,
             const Labels& labels = {});
  void histogram(const std::string& name, const std::string& help, const Histogram& h,
                 const Labels& labels = {});
  void counters(const std::string& name, const std::string& help, const LabeledCounter& c);
  void histograms(const std::string& name, const std::string& help, const LabeledHistogram& h);
  std::string text() const { return out_; }

 private:
  void header(const std::string& name, const std::string& help, const char* type);
  std::string out_;
  std::string last_family_;
};

// The label value as the exposition format wants it (backslash, quote and newline escaped).
std::string escape_label_value(const std::string& v);

}  // namespace fk::metrics
