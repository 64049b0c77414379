#include "search/behaviour_board.h"

#include <mutex>

namespace lookalike::search {

void BehaviourBoard::load(const catalog::Store& store) {
  // Read before locking: searches keep the old entries meanwhile.
  std::unordered_map<std::string, BehaviourSignals> all;
  store.for_each_behaviour([&](const std::string& id, const std::optional<catalog::Popularity>& popularity,
                               const std::optional<std::int64_t>& first_seen_ms) {
    all.emplace(id, BehaviourSignals{popularity, first_seen_ms});
  });
  std::unique_lock<std::shared_mutex> lock(mutex_);
  signals_ = std::move(all);
}

void BehaviourBoard::reload(const catalog::Store& store, const std::vector<std::string>& product_ids) {
  std::vector<std::pair<std::string, std::optional<BehaviourSignals>>> read;
  for (const auto& id : product_ids) {
    // Every stored product has a first-seen time (a trigger writes it on insert, and
    // it goes with the product): without one the product is gone.
    std::optional<BehaviourSignals> entry;
    if (auto first_seen_ms = store.first_seen(id))
      entry = BehaviourSignals{store.popularity(id), first_seen_ms};
    read.emplace_back(id, std::move(entry));
  }
  std::unique_lock<std::shared_mutex> lock(mutex_);
  for (auto& [id, entry] : read) {
    if (entry) {
      signals_[id] = std::move(*entry);
    } else {
      signals_.erase(id);
    }
  }
}

void BehaviourBoard::set_popularity(const std::vector<std::pair<std::string, catalog::Popularity>>& changes) {
  std::unique_lock<std::shared_mutex> lock(mutex_);
  for (const auto& [id, popularity] : changes) signals_[id].popularity = popularity;
}

}  // namespace lookalike::search
