// Internal to the search module: each product's popularity and first-seen time, the
// behaviour signals that re-ranking reads per candidate and that the metadata table
// does not hold, mirrored from the store in memory, so that a re-ranked search makes
// no store lookup per candidate.
//
// They live apart from the copy-on-write metadata table because events change them
// one product at a time, often: copying a 60,000-row table per event batch would
// cost more than the lookups it saves. Instead the board is changed in place under
// its lock, a whole batch at once, so a search that holds a Reader sees a batch of
// events entirely or not at all.
#pragma once

#include <cstdint>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "catalog/store.h"

namespace lookalike::search {

struct BehaviourSignals {
  std::optional<catalog::Popularity> popularity;  // none: no events yet
  std::optional<std::int64_t> first_seen_ms;
};

class BehaviourBoard {
 public:
  // Replaces every entry with the store's (Store::for_each_behaviour).
  void load(const catalog::Store& store);
  // Re-reads the entries of these products from the store; a product no longer
  // stored loses its entry.
  void reload(const catalog::Store& store, const std::vector<std::string>& product_ids);
  // Sets the popularity of several products, all in one step.
  void set_popularity(const std::vector<std::pair<std::string, catalog::Popularity>>& changes);

  // Holds the board (shared) while one search's candidates are scored.
  class Reader {
   public:
    explicit Reader(const BehaviourBoard& board) : board_(board), lock_(board.mutex_) {}
    // nullptr when the product has no entry (not stored when the board last heard of it).
    const BehaviourSignals* find(const std::string& product_id) const {
      auto it = board_.signals_.find(product_id);
      return it == board_.signals_.end() ? nullptr : &it->second;
    }

   private:
    const BehaviourBoard& board_;
    std::shared_lock<std::shared_mutex> lock_;
  };

 private:
  mutable std::shared_mutex mutex_;
  std::unordered_map<std::string, BehaviourSignals> signals_;
};

}  // namespace lookalike::search
