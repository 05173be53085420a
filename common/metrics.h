// A small Prometheus metrics registry: counters, gauges (set or computed) and histograms,
// rendered in the text exposition format. Registration happens at start-up; updates are
// lock-free atomics and safe from any thread.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace meshid {

using MetricLabels = std::map<std::string, std::string>;

class Counter {
 public:
  void Increment(double v = 1) { value_.fetch_add(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double v) { value_.fetch_add(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double v);
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  double sum() const { return sum_.load(std::memory_order_relaxed); }
  const std::vector<double>& upper_bounds() const { return bounds_; }
  uint64_t bucket_count(size_t i) const { return buckets_[i].load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // non-cumulative, one per bound
  std::atomic<uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

class MetricsRegistry {
 public:
  // Returned references stay valid for the registry's lifetime. Registering the same name and
  // labels twice returns the same series.
  Counter& AddCounter(const std::string& name, const std::string& help, const MetricLabels& labels = {});
  Gauge& AddGauge(const std::string& name, const std::string& help, const MetricLabels& labels = {});
  // The callback runs on every scrape, on the scraping thread.
  void AddComputedGauge(const std::string& name, const std::string& help, std::function<double()> compute,
                        const MetricLabels& labels = {});
  Histogram& AddHistogram(const std::string& name, const std::string& help, std::vector<double> upper_bounds,
                          const MetricLabels& labels = {});

  std::string RenderPrometheus() const;

 private:
  struct Series {
    MetricLabels labels;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::function<double()> compute;
    std::unique_ptr<Histogram> histogram;
  };
  struct Family {
    std::string help;
    std::string type;
    std::vector<std::unique_ptr<Series>> series;
  };
  Series& FindOrAdd(const std::string& name, const std::string& help, const std::string& type,
                    const MetricLabels& labels) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, Family> families_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshid
