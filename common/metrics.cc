#include "common/metrics.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace meshid {

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), buckets_(new std::atomic<uint64_t>[bounds_.size()]) {
  std::sort(bounds_.begin(), bounds_.end());
  for (size_t i = 0; i < bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::Observe(double v) {
  auto it = std::lower_bound(bounds_.begin(), bounds_.end(), v);
  if (it != bounds_.end()) buckets_[it - bounds_.begin()].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

MetricsRegistry::Series& MetricsRegistry::FindOrAdd(const std::string& name, const std::string& help,
                                                    const std::string& type, const MetricLabels& labels) {
  Family& family = families_[name];
  if (family.type.empty()) {
    family.help = help;
    family.type = type;
  }
  for (auto& series : family.series) {
    if (series->labels == labels) return *series;
  }
  family.series.push_back(std::make_unique<Series>());
  family.series.back()->labels = labels;
  return *family.series.back();
}

Counter& MetricsRegistry::AddCounter(const std::string& name, const std::string& help, const MetricLabels& labels) {
  absl::MutexLock lock(&mu_);
  Series& s = FindOrAdd(name, help, "counter", labels);
  if (!s.counter) s.counter = std::make_unique<Counter>();
  return *s.counter;
}

Gauge& MetricsRegistry::AddGauge(const std::string& name, const std::string& help, const MetricLabels& labels) {
  absl::MutexLock lock(&mu_);
  Series& s = FindOrAdd(name, help, "gauge", labels);
  if (!s.gauge) s.gauge = std::make_unique<Gauge>();
  return *s.gauge;
}

void MetricsRegistry::AddComputedGauge(const std::string& name, const std::string& help,
                                       std::function<double()> compute, const MetricLabels& labels) {
  absl::MutexLock lock(&mu_);
  FindOrAdd(name, help, "gauge", labels).compute = std::move(compute);
}

Histogram& MetricsRegistry::AddHistogram(const std::string& name, const std::string& help,
                                         std::vector<double> upper_bounds, const MetricLabels& labels) {
  absl::MutexLock lock(&mu_);
  Series& s = FindOrAdd(name, help, "histogram", labels);
  if (!s.histogram) s.histogram = std::make_unique<Histogram>(std::move(upper_bounds));
  return *s.histogram;
}

namespace {

std::string EscapeLabelValue(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string FormatLabels(const MetricLabels& labels, const std::string& extra_key = "",
                         const std::string& extra_value = "") {
  std::vector<std::string> parts;
  for (const auto& [k, v] : labels) parts.push_back(absl::StrCat(k, "=\"", EscapeLabelValue(v), "\""));
  if (!extra_key.empty()) parts.push_back(absl::StrCat(extra_key, "=\"", extra_value, "\""));
  if (parts.empty()) return "";
  return absl::StrCat("{", absl::StrJoin(parts, ","), "}");
}

std::string FormatValue(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return absl::StrCat(static_cast<int64_t>(v));
  return absl::StrCat(v);
}

}  // namespace

std::string MetricsRegistry::RenderPrometheus() const {
  absl::MutexLock lock(&mu_);
  std::string out;
  for (const auto& [name, family] : families_) {
    absl::StrAppend(&out, "# HELP ", name, " ", family.help, "\n# TYPE ", name, " ", family.type, "\n");
    for (const auto& s : family.series) {
      if (s->histogram) {
        const Histogram& h = *s->histogram;
        uint64_t cumulative = 0;
        for (size_t i = 0; i < h.upper_bounds().size(); ++i) {
          cumulative += h.bucket_count(i);
          absl::StrAppend(&out, name, "_bucket", FormatLabels(s->labels, "le", FormatValue(h.upper_bounds()[i])), " ",
                          cumulative, "\n");
        }
        absl::StrAppend(&out, name, "_bucket", FormatLabels(s->labels, "le", "+Inf"), " ", h.count(), "\n");
        absl::StrAppend(&out, name, "_sum", FormatLabels(s->labels), " ", FormatValue(h.sum()), "\n");
        absl::StrAppend(&out, name, "_count", FormatLabels(s->labels), " ", h.count(), "\n");
        continue;
      }
      double v = s->counter ? s->counter->value() : s->gauge ? s->gauge->value() : s->compute ? s->compute() : 0;
      absl::StrAppend(&out, name, FormatLabels(s->labels), " ", FormatValue(v), "\n");
    }
  }
  return out;
}

}  // namespace meshid
