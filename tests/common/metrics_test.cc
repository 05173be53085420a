#include "common/metrics.h"

#include <gtest/gtest.h>

namespace meshid {
namespace {

TEST(Metrics, RendersPrometheusText) {
  MetricsRegistry registry;
  registry.AddCounter("requests", "Requests.").Increment(3);
  registry.AddCounter("errors", "Errors.", {{"reason", "a\"b"}}).Increment();
  registry.AddGauge("temperature", "Temp.").Set(1.5);
  registry.AddComputedGauge("answer", "Computed.", [] { return 42.0; });
  Histogram& h = registry.AddHistogram("latency", "Latency.", {0.1, 1});
  h.Observe(0.05);
  h.Observe(0.5);
  h.Observe(5);
  std::string text = registry.RenderPrometheus();
  EXPECT_NE(text.find("# TYPE requests counter\nrequests 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("errors{reason=\"a\\\"b\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("temperature 1.5"), std::string::npos) << text;
  EXPECT_NE(text.find("answer 42"), std::string::npos) << text;
  EXPECT_NE(text.find("latency_bucket{le=\"0.1\"} 1\nlatency_bucket{le=\"1\"} 2\nlatency_bucket{le=\"+Inf\"} 3\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("latency_count 3"), std::string::npos) << text;
}

TEST(Metrics, SameNameAndLabelsIsSameSeries) {
  MetricsRegistry registry;
  Counter& a = registry.AddCounter("c", "C.", {{"k", "v"}});
  Counter& b = registry.AddCounter("c", "C.", {{"k", "v"}});
  EXPECT_EQ(&a, &b);
}

}  // namespace
}  // namespace meshid
