// The re-ranking step of a search: gathers each candidate's current signals from the
// store and hands them to rank::rerank. Kept apart from candidate generation
// (engine.cpp), which only decides how deep to look.
#include <algorithm>
#include <cmath>
#include <optional>

#include "catalog/store.h"
#include "common/error.h"
#include "embed/embedder.h"
#include "filter/filter.h"
#include "search/behaviour_board.h"
#include "search/engine.h"
#include "search/variants.h"

namespace lookalike::search {

namespace {

double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size() || a.empty()) return 0;
  double dot = 0, na = 0, nb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    dot += static_cast<double>(a[i]) * b[i];
    na += static_cast<double>(a[i]) * a[i];
    nb += static_cast<double>(b[i]) * b[i];
  }
  return na > 0 && nb > 0 ? dot / std::sqrt(na * nb) : 0;
}

constexpr double kMsPerDay = 86400e3;

}  // namespace

Engine::ReaderLease::ReaderLease(const Engine& engine) : engine_(engine) {
  {
    std::lock_guard<std::mutex> lock(engine.ranking_readers_mutex_);
    if (!engine.ranking_readers_.empty()) {
      store_ = std::move(engine.ranking_readers_.back());
      engine.ranking_readers_.pop_back();
      return;
    }
  }
  store_ =
      catalog::Store::open(engine.dir_ / "catalog.db");  // the data folder's store (engine.cpp: kStoreFile)
}

Engine::ReaderLease::~ReaderLease() {
  std::lock_guard<std::mutex> lock(engine_.ranking_readers_mutex_);
  engine_.ranking_readers_.push_back(std::move(store_));
}

std::optional<Engine::PreparedRanking> Engine::prepare_ranking(const RankRequest* ranking, int k) const {
  if (!ranking) return std::nullopt;
  if (k < 1 || k > kMaxK) {
    throw Error(ErrorKind::kInvalidInput, "k must be between 1 and " + std::to_string(kMaxK));
  }
  if (ranking->depth < 0 || ranking->depth > rank::kMaxCandidateDepth) {
    throw Error(ErrorKind::kInvalidInput,
                "depth must be between 1 and " + std::to_string(rank::kMaxCandidateDepth));
  }
  // The visual profile is the look order itself: nothing to re-rank, and the score stays the cosine.
  if (ranking->profile == rank::kVisualProfile) return std::nullopt;
  PreparedRanking prepared{
      ranking->custom_profile ? *ranking->custom_profile : ranking_profile(ranking->profile), 0};
  const int depth = ranking->depth > 0 ? ranking->depth : prepared.profile.candidate_depth;
  prepared.depth = std::min(std::max(depth, k), kMaxK);
  return prepared;
}

void Engine::finish_results(const Snapshot& snap, std::vector<QueryResult>& results, int k,
                            const RankRequest* ranking, const std::optional<PreparedRanking>& prepared,
                            bool with_details, const std::vector<image::ColourDescriptor>* query_colours,
                            bool group) const {
  // The final order is known: one hit per family when grouping, the first k.
  auto keep_k = [&](QueryResult& result) {
    if (group) {
      // Only a photo has a colour and a look for a variant to match; a search by text
      // alone (and any search not re-ranked) shows each family by its first hit.
      const bool by_photo = prepared && !result.text_only;
      group_variants(table_of(snap), static_cast<std::size_t>(k),
                     by_photo ? Representative::kBestPhoto : Representative::kFirst, result.hits);
    } else if (result.hits.size() > static_cast<std::size_t>(k)) {
      result.hits.resize(static_cast<std::size_t>(k));
    }
  };
  for (auto& result : results) {
    if (result.text_only) continue;  // no photo: no similarity
    for (auto& hit : result.hits) hit.similarity = hit.score;
  }
  if (!prepared) {
    for (auto& result : results) keep_k(result);
    if (with_details) fill_details(results);
    return;
  }
  const rank::Profile& profile = prepared->profile;
  const std::int64_t now = catalog::unix_now_ms();
  // The model of the vectors searched (every result of one call shares its snapshot).
  const std::string identity = results.empty() ? std::string() : results.front().model;
  const ReaderLease reader(*this);
  // Every candidate's signals from one state of the store, in one read transaction
  // rather than one per lookup (SQLite's lock and log check once, not ~100 times).
  const catalog::Store::ReadTransaction consistent(*reader);
  std::optional<catalog::Taste> taste;
  rank::AttributeTaste attribute_taste;
  if (!ranking->user_id.empty() && profile.weights[rank::kTaste] != 0) {
    taste = reader->taste(ranking->user_id);
    if (taste && (taste->model != identity || taste->weight <= 0)) taste.reset();
    // The attribute half, every row decayed to now so that the shares compare like with like.
    for (const auto& a : reader->affinities(ranking->user_id)) {
      attribute_taste.add(a.kind, a.value,
                          a.weight * catalog::decay_factor(a.at_ms, now, catalog::kTasteHalfLifeDays));
    }
  }
  const filter::Table& table = table_of(snap);
  for (std::size_t q = 0; q < results.size(); ++q) {
    auto& result = results[q];
    // The query's colour, compared with the colour of each candidate's best-matching image
    // (kept in the snapshot beside its vector, so no store lookup).
    const image::ColourDescriptor* query_colour = nullptr;
    if (query_colours && q < query_colours->size() && image::has_colour((*query_colours)[q])) {
      query_colour = &(*query_colours)[q];
    }
    std::vector<ProductHit> hits;
    std::vector<rank::Candidate> candidates;
    hits.reserve(result.hits.size());
    candidates.reserve(result.hits.size());
    // Held for this query's candidates only, so that event batches are not kept waiting.
    std::optional<BehaviourBoard::Reader> behaviour(std::in_place, *behaviour_);
    for (auto& hit : result.hits) {
      // Price, stock and rating from the snapshot's table, popularity and first-seen
      // time from the board: no store lookup, except for a shopper's taste below.
      const auto row = table.row_of(hit.product_id);
      if (!row || !table.alive(*row)) continue;
      rank::Candidate c;
      c.visual = hit.similarity;
      c.text = hit.text_relevance;
      c.price = table.price(*row);
      c.stock = table.stock(*row);
      if (group && c.stock <= 0) {
        for (std::uint32_t member : table.family(*row)) c.family_in_stock |= table.stock(member) > 0;
      }
      c.rating = table.rating(*row);
      c.rating_count = table.rating_count(*row);
      if (const BehaviourSignals* signals = behaviour->find(hit.product_id)) {
        if (signals->popularity) {
          c.popularity = signals->popularity->score * catalog::decay_factor(signals->popularity->at_ms, now,
                                                                            catalog::kPopularityHalfLifeDays);
        }
        if (signals->first_seen_ms)
          c.age_days = static_cast<double>(now - *signals->first_seen_ms) / kMsPerDay;
      }
      if (taste) {
        if (auto image = reader->get_image(hit.image_id, /*with_embedding=*/true)) {
          c.taste = cosine(image->embedding, taste->vector);
        }
      }
      if (!attribute_taste.empty()) {
        // The attributes as the events that built the taste saw them (the store's).
        if (auto signals = reader->ranking_signals(hit.product_id)) {
          c.taste_affinity = attribute_taste.affinity(
              rank::taste_values(signals->brand, signals->attributes, signals->price));
        }
      }
      if (query_colour) {
        if (const auto* colour = colour_of(snap, hit.image_id))
          c.colour = image::colour_similarity(*query_colour, *colour);
      }
      hits.push_back(std::move(hit));
      candidates.push_back(c);
    }
    behaviour.reset();
    const auto ranked = rank::rerank(result.text_only ? rank::text_only_profile(profile) : profile,
                                     ranking->price, candidates);
    result.hits.clear();
    for (const auto& r : ranked) {
      ProductHit& hit = hits[r.index];
      hit.score = static_cast<float>(r.score.total);
      hit.ranking = r.score;
      result.hits.push_back(std::move(hit));
    }
    keep_k(result);
    // Details for the k shown only: the candidates needed their signals, not their whole record.
    if (!with_details) continue;
    std::vector<ProductHit> shown;
    for (auto& hit : result.hits) {
      auto product = reader->get_product(hit.product_id);
      if (!product) continue;
      hit.product = std::move(*product);
      shown.push_back(std::move(hit));
    }
    result.hits = std::move(shown);
  }
}

}  // namespace lookalike::search
