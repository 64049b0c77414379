// The /metrics counters and their Prometheus text exposition (format 0.0.4).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

namespace lookalike::search {
struct EngineInfo;
}

namespace lookalike::server {

// Thread-safe. Route labels are route patterns ("/v1/products/{id}") or "none",
// never raw paths, so the number of series stays bounded.
class Metrics {
 public:
  static constexpr std::array<double, 12> kBuckets{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                   0.1,   0.25,   0.5,   1,    2.5,   5};

  void observe(const std::string& route, const std::string& method, int status, double seconds);
  void count_overload_refusal();
  void add_ingest(std::size_t images, std::size_t skipped);

  // info: the engine's counts, or null while it is not ready (then the catalog
  // and index gauges are left out).
  std::string render(const search::EngineInfo* info) const;

 private:
  struct Histogram {
    std::array<std::uint64_t, kBuckets.size()> buckets{};  // non-cumulative
    std::uint64_t count = 0;
    double sum = 0;
  };
  mutable std::mutex mutex_;
  std::map<std::tuple<std::string, std::string, int>, std::uint64_t> requests_;
  std::map<std::string, Histogram> durations_;
  std::uint64_t overload_refusals_ = 0;
  std::uint64_t ingest_images_ = 0;
  std::uint64_t ingest_skipped_ = 0;
};

}  // namespace lookalike::server
