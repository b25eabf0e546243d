#include "base/metrics.h"

#include <cmath>
#include <cstdio>

namespace fk::metrics {
namespace {

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.15g", v);
  return buf;
}

std::string with_labels(const std::string& name, const Labels& labels,
                        const std::string& extra_name = {}, const std::string& extra_value = {}) {
  std::string out = name;
  if (labels.empty() && extra_name.empty()) return out;
  out += '{';
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out += ',';
    first = false;
    out += k + "=\"" + escape_label_value(v) + '"';
  }
  if (!extra_name.empty()) {
    if (!first) out += ',';
    out += extra_name + "=\"" + extra_value + '"';
  }
  out += '}';
  return out;
}

}  // namespace

void Histogram::observe(double seconds) {
  if (!(seconds >= 0)) seconds = 0;
  std::size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_micros_.fetch_add(static_cast<std::uint64_t>(seconds * 1e6), std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  std::uint64_t running = 0;
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = running;
  }
  s.count = running;
  s.sum = static_cast<double>(sum_micros_.load(std::memory_order_relaxed)) / 1e6;
  return s;
}

std::string escape_label_value(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void Exposition::header(const std::string& name, const std::string& help, const char* type) {
  if (name == last_family_) return;
  last_family_ = name;
  out_ += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void Exposition::counter(const std::string& name, const std::string& help, double value,
                         const Labels& labels) {
  header(name, help, "counter");
  out_ += with_labels(name, labels) + " " + number(value) + "\n";
}

void Exposition::gauge(const std::string& name, const std::string& help, double value,
                       const Labels& labels) {
  header(name, help, "gauge");
  out_ += with_labels(name, labels) + " " + number(value) + "\n";
}

void Exposition::histogram(const std::string& name, const std::string& help, const Histogram& h,
                           const Labels& labels) {
  header(name, help, "histogram");
  const auto s = h.snapshot();
  for (std::size_t i = 0; i < Histogram::kBounds.size(); ++i)
    out_ += with_labels(name + "_bucket", labels, "le", number(Histogram::kBounds[i])) + " " +
            std::to_string(s.cumulative[i]) + "\n";
  out_ +=
      with_labels(name + "_bucket", labels, "le", "+Inf") + " " + std::to_string(s.count) + "\n";
  out_ += with_labels(name + "_sum", labels) + " " + number(s.sum) + "\n";
  out_ += with_labels(name + "_count", labels) + " " + std::to_string(s.count) + "\n";
}

void Exposition::counters(const std::string& name, const std::string& help,
                          const LabeledCounter& c) {
  header(name, help, "counter");
  c.each([&](const Labels& labels, const Counter& v) {
    out_ += with_labels(name, labels) + " " + std::to_string(v.value()) + "\n";
  });
}

void Exposition::histograms(const std::string& name, const std::string& help,
                            const LabeledHistogram& h) {
  header(name, help, "histogram");
  h.each([&](const Labels& labels, const Histogram& v) { histogram(name, help, v, labels); });
}

}  // namespace fk::metrics
