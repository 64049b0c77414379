#include "search/robustness.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "common/error.h"
#include "common/hash.h"
#include "search/engine.h"

namespace lookalike::search {
namespace {

constexpr std::size_t kBatchItems = 64;  // products distorted and searched together
constexpr int kDepth = 10;

// FNV-1a: a product's photos depend on its id and the seed only, so they stay
// the same whatever the sample size.
std::uint64_t hash_id(const std::string& id) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : id) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

// A seeded sample of n ids (Fisher-Yates on the sorted ids, stopped after n draws).
std::vector<std::string> sample(std::vector<std::string> ids, std::size_t n, std::uint64_t seed) {
  std::sort(ids.begin(), ids.end());
  n = std::min(n, ids.size());
  std::uint64_t state = splitmix64(seed);
  for (std::size_t i = 0; i < n; ++i) {
    state = splitmix64(state);
    std::size_t j = i + static_cast<std::size_t>(state % (ids.size() - i));
    std::swap(ids[i], ids[j]);
  }
  ids.resize(n);
  return ids;
}

struct Tally {
  std::size_t queries = 0, at_1 = 0, at_10 = 0;
  void count(const QueryResult& result, const std::string& product) {
    ++queries;
    for (std::size_t rank = 0; rank < result.hits.size() && rank < std::size_t(kDepth); ++rank) {
      if (result.hits[rank].product_id != product) continue;
      if (rank == 0) ++at_1;
      ++at_10;
      break;
    }
  }
  RobustnessRow row(std::string name) const {
    RobustnessRow r;
    r.distortion = std::move(name);
    r.queries = queries;
    if (queries > 0) {
      r.recall_at_1 = double(at_1) / double(queries);
      r.recall_at_10 = double(at_10) / double(queries);
    }
    return r;
  }
};

}  // namespace

RobustnessReport evaluate_robustness(const Engine& engine, const RobustnessOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<image::Distortion> distortions;
  if (options.control) distortions.push_back(image::Distortion::kNone);
  for (auto d : options.distortions.empty() ? image::suite_distortions() : options.distortions) {
    if (d != image::Distortion::kNone) distortions.push_back(d);
  }

  RobustnessReport report;
  const auto picked = sample(engine.product_ids(), options.items, options.seed);
  std::vector<std::pair<std::string, image::Image>> items;
  for (const auto& id : picked) {
    auto source = engine.image_source(id, 0);
    if (!source) continue;  // a product without photos cannot be photographed
    try {
      items.emplace_back(id, image::load_file(*source, engine.limits()));
    } catch (const Error&) {
      ++report.unreadable;
    }
  }
  if (items.empty()) {
    throw Error(ErrorKind::kInvalidInput, "the catalog has no product with a readable image to distort");
  }
  report.items = items.size();

  std::vector<Tally> tallies(distortions.size());
  const std::size_t total = items.size() * distortions.size();
  std::size_t done = 0;
  for (std::size_t begin = 0; begin < items.size(); begin += kBatchItems) {
    const std::size_t end = std::min(items.size(), begin + kBatchItems);
    for (std::size_t d = 0; d < distortions.size(); ++d) {
      std::vector<image::Image> queries;
      for (std::size_t i = begin; i < end; ++i) {
        queries.push_back(
            image::distort(items[i].second, distortions[d], splitmix64(options.seed) ^ hash_id(items[i].first)));
      }
      // The exact product must come back, not a colour variant standing for its family.
      SearchOptions ungrouped;
      ungrouped.group_variants = false;
      ungrouped.match = options.match;
      auto results = engine.search(queries, kDepth, /*with_details=*/false, ungrouped);
      for (std::size_t i = begin; i < end; ++i) tallies[d].count(results[i - begin], items[i].first);
      done += end - begin;
      if (options.on_progress) options.on_progress(done, total);
    }
  }

  Tally overall;
  for (std::size_t d = 0; d < distortions.size(); ++d) {
    report.rows.push_back(tallies[d].row(image::to_string(distortions[d])));
    if (distortions[d] == image::Distortion::kNone) continue;
    overall.queries += tallies[d].queries;
    overall.at_1 += tallies[d].at_1;
    overall.at_10 += tallies[d].at_10;
  }
  report.overall = overall.row("overall");
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace lookalike::search
