// Behaviour events, shopper tastes and ranking profiles: the engine's writes that
// never touch images or the vector index.
#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <set>
#include <unordered_map>
#include <utility>

#include "catalog/store.h"
#include "common/error.h"
#include "embed/embedder.h"
#include "search/behaviour_board.h"
#include "search/engine.h"

namespace lookalike::search {

namespace {

// The mean of a product's stored vectors made by `model`, normalised; empty when it has none.
std::vector<float> product_vector(const catalog::Store& store, const std::string& product_id,
                                  const std::string& model) {
  std::vector<float> mean;
  std::size_t n = 0;
  for (const auto& image : store.images_of(product_id, /*with_embeddings=*/true)) {
    if (image.model != model || image.embedding.empty()) continue;
    if (mean.empty()) mean.assign(image.embedding.size(), 0.f);
    if (image.embedding.size() != mean.size()) continue;
    for (std::size_t i = 0; i < mean.size(); ++i) mean[i] += image.embedding[i];
    ++n;
  }
  double norm = 0;
  for (float v : mean) norm += static_cast<double>(v) * v;
  if (n == 0 || norm <= 0) return {};
  const float scale = static_cast<float>(1.0 / std::sqrt(norm));
  for (float& v : mean) v *= scale;
  return mean;
}

// Adds one event's vector to a taste, decaying what was there to the later of the two times.
void add_to_taste(catalog::Taste& taste, const catalog::Event& event, const std::vector<float>& vector) {
  const double w = catalog::event_weight(event.type);
  if (taste.vector.size() != vector.size()) {
    taste.vector.assign(vector.size(), 0.f);
    taste.weight = 0;
    taste.at_ms = event.time_ms;
  }
  double old_scale = 1, new_scale = w;
  if (event.time_ms >= taste.at_ms) {
    old_scale = catalog::decay_factor(taste.at_ms, event.time_ms, catalog::kTasteHalfLifeDays);
    taste.at_ms = event.time_ms;
  } else {
    new_scale = w * catalog::decay_factor(event.time_ms, taste.at_ms, catalog::kTasteHalfLifeDays);
  }
  for (std::size_t i = 0; i < vector.size(); ++i) {
    taste.vector[i] = static_cast<float>(taste.vector[i] * old_scale + vector[i] * new_scale);
  }
  taste.weight = taste.weight * old_scale + new_scale;
}

// The attribute half of one shopper's taste while a batch of events is recorded:
// their stored rows, updated in memory and written back once at the end.
struct AffinityRows {
  std::map<std::pair<std::string, std::string>, catalog::Affinity> rows;
  std::set<std::pair<std::string, std::string>> changed;
};

// Adds one event to the shopper's affinity with each of the product's taste values,
// decaying what was there to the later of the two times (as add_to_taste does).
void add_to_affinities(AffinityRows& affinities, const catalog::Event& event,
                       const std::array<std::string, rank::kTasteKinds.size()>& values) {
  const double w = catalog::event_weight(event.type);
  for (std::size_t k = 0; k < values.size(); ++k) {
    if (values[k].empty()) continue;
    const auto key = std::make_pair(std::string(rank::kTasteKinds[k]), values[k]);
    auto [it, fresh] =
        affinities.rows.try_emplace(key, catalog::Affinity{key.first, key.second, 0, event.time_ms});
    catalog::Affinity& a = it->second;
    if (fresh || event.time_ms >= a.at_ms) {
      a.weight = a.weight * catalog::decay_factor(a.at_ms, event.time_ms, catalog::kTasteHalfLifeDays) + w;
      a.at_ms = event.time_ms;
    } else {
      a.weight += w * catalog::decay_factor(event.time_ms, a.at_ms, catalog::kTasteHalfLifeDays);
    }
    affinities.changed.insert(key);
  }
}

}  // namespace

EventReport Engine::record_events(const std::vector<catalog::Event>& events) {
  const std::string identity = active_model();
  std::lock_guard<std::mutex> lock(signals_mutex_);
  catalog::Store& store = *signals_;
  EventReport report;
  std::unordered_map<std::string, std::vector<float>> vectors;  // per product, for this batch
  // Per product, its taste values (brand, colour, material, price band), for this batch.
  std::unordered_map<std::string, std::array<std::string, rank::kTasteKinds.size()>> values;
  std::unordered_map<std::string, AffinityRows> affinities;  // per shopper, for this batch
  std::unordered_map<std::string, catalog::Popularity> popularity_now;  // per product, for the board
  catalog::Store::Transaction tx(store);
  for (std::size_t i = 0; i < events.size(); ++i) {
    const catalog::Event& event = events[i];
    // Popularity first: it is what refuses an unknown product, before anything is written.
    catalog::Popularity popularity =
        store.popularity(event.product_id).value_or(catalog::Popularity{0, event.time_ms});
    const double w = catalog::event_weight(event.type);
    if (event.time_ms >= popularity.at_ms) {
      popularity.score = popularity.score * catalog::decay_factor(popularity.at_ms, event.time_ms,
                                                                  catalog::kPopularityHalfLifeDays) +
                         w;
      popularity.at_ms = event.time_ms;
    } else {
      popularity.score +=
          w * catalog::decay_factor(event.time_ms, popularity.at_ms, catalog::kPopularityHalfLifeDays);
    }
    try {
      store.set_popularity(event.product_id, popularity);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::kNotFound) throw;
      report.rejected.emplace_back(i, e.what());
      continue;
    }
    store.add_event(event);
    popularity_now[event.product_id] = popularity;
    ++report.accepted;

    auto product_values = values.find(event.product_id);
    if (product_values == values.end()) {
      const auto signals = store.ranking_signals(event.product_id);
      product_values = values
                           .emplace(event.product_id,
                                    rank::taste_values(signals->brand, signals->attributes, signals->price))
                           .first;
    }
    auto shopper = affinities.find(event.user_id);
    if (shopper == affinities.end()) {
      shopper = affinities.emplace(event.user_id, AffinityRows{}).first;
      for (auto& row : store.affinities(event.user_id)) {
        shopper->second.rows.emplace(std::make_pair(row.kind, row.value), std::move(row));
      }
      if (shopper->second.rows.empty()) {
        // A shopper with no attribute taste yet, whose earlier events (if any, e.g. from
        // before attribute tastes existed) are counted too: rebuilt from the whole history,
        // this event included.
        for (const auto& past : store.events_of(event.user_id)) {
          auto signals = store.ranking_signals(past.product_id);
          if (!signals) continue;  // deleted since
          add_to_affinities(shopper->second, past,
                            rank::taste_values(signals->brand, signals->attributes, signals->price));
        }
      } else {
        add_to_affinities(shopper->second, event, product_values->second);
      }
    } else {
      add_to_affinities(shopper->second, event, product_values->second);
    }

    auto found = vectors.find(event.product_id);
    if (found == vectors.end()) {
      found = vectors.emplace(event.product_id, product_vector(store, event.product_id, identity)).first;
    }
    if (found->second.empty()) continue;  // a product without a look adds nothing to taste
    auto taste = store.taste(event.user_id);
    if (taste && taste->model == identity) {
      add_to_taste(*taste, event, found->second);
    } else {
      // New, or made by another model: rebuilt from the shopper's whole history.
      taste = catalog::Taste{identity, {}, 0, 0};
      for (const auto& past : store.events_of(event.user_id)) {
        auto v = past.product_id == event.product_id ? found->second
                                                     : product_vector(store, past.product_id, identity);
        if (!v.empty()) add_to_taste(*taste, past, v);
      }
    }
    if (!taste->vector.empty()) store.set_taste(event.user_id, *taste);
  }
  for (const auto& [user_id, shopper] : affinities) {
    for (const auto& key : shopper.changed) store.set_affinity(user_id, shopper.rows.at(key));
  }
  tx.commit();
  behaviour_->set_popularity({popularity_now.begin(), popularity_now.end()});
  return report;
}

bool Engine::forget_user(const std::string& user_id) { return forget_users({user_id}) > 0; }

std::size_t Engine::forget_users(const std::vector<std::string>& user_ids) {
  std::lock_guard<std::mutex> lock(signals_mutex_);
  catalog::Store& store = *signals_;
  catalog::Store::Transaction tx(store);
  std::unordered_map<std::string, catalog::Popularity> popularity_now;  // per product, for the board
  std::size_t known = 0;
  for (const auto& user_id : user_ids) {
    const auto events = store.events_of(user_id);
    for (const auto& event : events) {
      auto popularity = store.popularity(event.product_id);
      if (!popularity) continue;  // the product is gone, and its popularity with it
      const double share =
          catalog::event_weight(event.type) *
          catalog::decay_factor(event.time_ms, popularity->at_ms, catalog::kPopularityHalfLifeDays);
      popularity->score = std::max(0.0, popularity->score - share);
      store.set_popularity(event.product_id, *popularity);
      popularity_now[event.product_id] = *popularity;
    }
    const std::size_t removed = store.delete_events_of(user_id);
    const bool had_taste = store.delete_taste(user_id);
    const bool had_affinities = store.delete_affinities(user_id) > 0;
    if (removed > 0 || had_taste || had_affinities) ++known;
  }
  tx.commit();
  behaviour_->set_popularity({popularity_now.begin(), popularity_now.end()});
  return known;
}

std::optional<UserSummary> Engine::user(const std::string& user_id) const {
  std::lock_guard<std::mutex> lock(reader_mutex_);
  UserSummary summary;
  summary.events = reader_->events_of(user_id).size();
  summary.has_taste = reader_->taste(user_id).has_value() || !reader_->affinities(user_id).empty();
  if (summary.events == 0 && !summary.has_taste) return std::nullopt;
  return summary;
}

rank::Profile Engine::ranking_profile(const std::string& name) const {
  if (name == rank::kVisualProfile) return rank::visual_profile();
  std::optional<std::string> stored;
  if (rank::valid_profile_name(name)) {
    std::lock_guard<std::mutex> lock(reader_mutex_);
    stored = reader_->get_profile(name);
  }
  if (stored) return rank::parse_profile(name, *stored);
  if (name == rank::kDefaultProfile) return rank::default_profile();
  throw Error(ErrorKind::kNotFound, "no ranking profile named " + name.substr(0, 80));
}

std::vector<rank::Profile> Engine::ranking_profiles() const {
  std::vector<std::string> names;
  {
    std::lock_guard<std::mutex> lock(reader_mutex_);
    names = reader_->profile_names();
  }
  std::vector<rank::Profile> profiles{ranking_profile(rank::kDefaultProfile), rank::visual_profile()};
  for (const auto& name : names) {
    if (name != rank::kDefaultProfile && name != rank::kVisualProfile)
      profiles.push_back(ranking_profile(name));
  }
  return profiles;
}

void Engine::put_ranking_profile(const rank::Profile& profile) {
  if (!rank::valid_profile_name(profile.name)) {
    throw Error(ErrorKind::kInvalidInput, "profile: the name must be 1 to 64 letters, digits, '_' or '-'");
  }
  if (profile.name == rank::kVisualProfile) {
    throw Error(ErrorKind::kInvalidInput, "the \"visual\" profile is built in and cannot be changed");
  }
  std::lock_guard<std::mutex> lock(signals_mutex_);
  signals_->put_profile(profile.name, rank::profile_json(profile));
}

bool Engine::delete_ranking_profile(const std::string& name) {
  if (name == rank::kVisualProfile) {
    throw Error(ErrorKind::kInvalidInput, "the \"visual\" profile is built in and cannot be deleted");
  }
  std::lock_guard<std::mutex> lock(signals_mutex_);
  return signals_->delete_profile(name);
}

}  // namespace lookalike::search
