// Behaviour events, shopper tastes and ranking profiles: the engine's writes that
// never touch images or the vector index.
#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "catalog/store.h"
#include "common/error.h"
#include "embed/embedder.h"
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

}  // namespace

EventReport Engine::record_events(const std::vector<catalog::Event>& events) {
  const std::string identity = active_model();
  std::lock_guard<std::mutex> lock(signals_mutex_);
  catalog::Store& store = *signals_;
  EventReport report;
  std::unordered_map<std::string, std::vector<float>> vectors;  // per product, for this batch
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
    ++report.accepted;

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
  tx.commit();
  return report;
}

bool Engine::forget_user(const std::string& user_id) {
  std::lock_guard<std::mutex> lock(signals_mutex_);
  catalog::Store& store = *signals_;
  catalog::Store::Transaction tx(store);
  const auto events = store.events_of(user_id);
  for (const auto& event : events) {
    auto popularity = store.popularity(event.product_id);
    if (!popularity) continue;  // the product is gone, and its popularity with it
    const double share =
        catalog::event_weight(event.type) *
        catalog::decay_factor(event.time_ms, popularity->at_ms, catalog::kPopularityHalfLifeDays);
    popularity->score = std::max(0.0, popularity->score - share);
    store.set_popularity(event.product_id, *popularity);
  }
  const std::size_t removed = store.delete_events_of(user_id);
  const bool had_taste = store.delete_taste(user_id);
  tx.commit();
  return removed > 0 || had_taste;
}

std::optional<UserSummary> Engine::user(const std::string& user_id) const {
  std::lock_guard<std::mutex> lock(reader_mutex_);
  UserSummary summary;
  summary.events = reader_->events_of(user_id).size();
  summary.has_taste = reader_->taste(user_id).has_value();
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
