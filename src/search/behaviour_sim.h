// Offline ranking evaluation with a seeded behaviour simulator (issue 4, "Measured:
// Ranking"): simulated shoppers with hidden preferences search with photos, engage
// with what they see, and their later engagement is the ground truth that the
// rankings are scored against with NDCG@k.
//
// The simulated world (every number below is a constant in behaviour_sim.cpp):
//
// - Shoppers. Each wants 2 categories (drawn among the query file's categories that
//   the catalog has) and has hidden preferences: 2 favourite brands, 1 favourite
//   colour (attributes.color; when no product has a colour, attributes.material
//   stands in, and the report says so), and 1 price band of 3 (budget, middle,
//   premium: the thirds of its category's prices). How much each preference matters
//   to a shopper is drawn per shopper, uniform in 0.5..1.5.
// - Products. Each has a hidden appeal, normal with sd 0.5, the same for every
//   shopper (what popularity should discover), drawn from the seed and its id.
// - Sessions. Each shopper has `sessions_per_user` sessions at times uniform over 35
//   days. In a session they pick one of the `photos_per_category` query photos of a
//   wanted category (shoppers share trending photos, so their results overlap), see
//   the `depth` nearest products by look and judge each with a hidden utility
//     U = 1.5 look + b_brand [favourite brand] + b_colour [favourite colour]
//         + b_price [in their price band] + 0.3 (rating - 3.5) + appeal + noise,
//   look being the similarity rescaled over the seen products (0..1), noise normal
//   with sd 0.5 per product and session. They then go down a funnel: view with
//   probability s(U - 2.8), then click s(U - 3.2), add to cart s(U - 3.6), purchase
//   s(U - 3.8), where s(x) = 1 / (1 + e^(-3x)); nothing out of stock is carted or bought.
//   Each step reached is an event, a few seconds apart.
// - Time split. Sessions in the first 28 days are history, the last 7 the future.
//   History events are recorded through Engine::record_events, placed so that the
//   split is now, so that popularity and taste are built the real way; then each
//   future session's photo is searched with three rankings over the same depth
//   candidates: "visual" (look alone), "business" (the default profile, no shopper)
//   and "personal" (the default profile with the shopper's id).
// - Score. Each product the shopper engaged with in that future session gets a grade
//   (view 1, click 2, add to cart 3, purchase 4); NDCG@k = DCG / ideal DCG with gain
//   2^grade - 1 and discount log2(rank + 1). Sessions without engagement are not
//   scored. A shopper's score is the mean over their scored sessions; the figures
//   are means over shoppers, and each uplift has a 95% interval from the paired
//   per-shopper differences (mean +- 1.96 sd / sqrt(n)).
//
// The same seed, catalog and engine state give the same events and figures. The
// simulated shoppers (ids "sim-SEED-N") are forgotten at the end (their events,
// tastes and share of popularity removed) unless keep_events is set.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace lookalike::search {

class Engine;

struct RankingEvalOptions {
  std::uint64_t seed = 1;
  std::size_t users = 300;
  std::size_t sessions_per_user = 10;
  std::size_t photos_per_category = 20;  // query photos per category the shoppers choose from
  int depth = 100;                       // products a shopper sees per session; candidates re-ranked
  int k = 10;                            // NDCG cut-off
  bool keep_events = false;              // leave the shoppers and their events in the data folder
  std::function<void(const std::string&)> on_message;  // may be empty
};

struct Uplift {
  double mean = 0;      // mean over shoppers of (ranking b - ranking a)
  double ci95 = 0;      // half-width of the 95% interval of the mean
  double relative = 0;  // mean / (ranking a's mean NDCG)
};

struct RankingEvalReport {
  std::uint64_t seed = 0;
  std::string colour_attribute;  // "color", or "material" standing in, or "" when neither exists
  std::size_t users = 0;
  std::size_t users_scored = 0;  // shoppers with at least one scored future session
  std::size_t history_sessions = 0;
  std::size_t future_sessions = 0;
  std::size_t scored_sessions = 0;  // future sessions with engagement
  std::size_t history_events = 0;   // recorded through the engine
  std::size_t future_events = 0;    // the ground truth, never recorded
  double ndcg_visual = 0, ndcg_business = 0, ndcg_personal = 0;
  Uplift business_over_visual, personal_over_business, personal_over_visual;
  double seconds = 0;
  // Every simulated event, history then future, for determinism checks: one line
  // "user type product time_offset_ms" per event.
  std::vector<std::string> event_log;
};

// Runs the simulation and evaluation on the engine's catalog. queries_file is JSONL
// {"image": path relative to the file, "category": ...}. Writes (and, unless
// keep_events, removes) events in the engine's data folder. Throws Error(kInvalidInput)
// for bad options, a query file without usable photos of catalog categories, or when
// the shoppers of this seed already exist in the folder (a run with keep_events).
RankingEvalReport evaluate_ranking(Engine& engine, const std::filesystem::path& queries_file,
                                   const RankingEvalOptions& options);

}  // namespace lookalike::search
