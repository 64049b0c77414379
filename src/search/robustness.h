// Instance robustness: does a distorted photo of a catalog item find that exact
// item? Each sampled product's first image is distorted (image/distort.h) and
// searched through the engine like a shopper's photo; the product itself must
// come back at rank 1 (Recall@1) or within the first 10 (Recall@10).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "embed/embedder.h"
#include "image/distort.h"

namespace lookalike::search {

class Engine;

struct RobustnessOptions {
  std::size_t items = 2000;  // products sampled (all when the catalog has fewer)
  std::uint64_t seed = 1;    // picks the products and draws every distortion's strength
  // Distortions to run, in report order; empty: image::suite_distortions().
  std::vector<image::Distortion> distortions;
  // Also search the undistorted (enlarged) images, reported as "none" and left
  // out of the overall figures: the ceiling set by exact duplicates in the catalog.
  bool control = true;
  // How the photos are searched: for their exact product (the default, what the
  // suite measures), or by look (the category-and-look weighting of a fused model).
  embed::Match match = embed::Match::kExact;
  std::function<void(std::size_t done, std::size_t total)> on_progress;  // queries
};

struct RobustnessRow {
  std::string distortion;  // image::to_string name
  std::size_t queries = 0;
  double recall_at_1 = 0;   // share of queries whose own product ranked first
  double recall_at_10 = 0;  // share whose own product was among the first 10
};

struct RobustnessReport {
  std::vector<RobustnessRow> rows;  // control first (when asked), then the distortions in order
  RobustnessRow overall;            // over every distortion's queries, control excluded
  std::size_t items = 0;            // products whose image could be read
  std::size_t unreadable = 0;       // sampled products whose first image could not be read
  double seconds = 0;               // distort + search, all queries
};

// Runs the suite against the engine's catalog. Deterministic for a given
// catalog, model, items and seed. Throws Error(kInvalidInput) when the catalog
// has no product with an image.
RobustnessReport evaluate_robustness(const Engine& engine, const RobustnessOptions& options);

}  // namespace lookalike::search
