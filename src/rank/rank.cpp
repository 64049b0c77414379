#include "rank/rank.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "common/error.h"

namespace lookalike::rank {
using nlohmann::json;

namespace {

constexpr const char* kComponentNames[kComponentCount] = {"visual", "popularity", "rating", "stock",
                                                          "price",  "recency",    "taste",  "colour", "text"};

Error invalid(const std::string& message) { return Error(ErrorKind::kInvalidInput, "profile: " + message); }

double number_in(const json& value, const std::string& field, double min, double max, bool min_exclusive) {
  if (!value.is_number()) throw invalid(field + " must be a number");
  const double v = value.get<double>();
  if (!std::isfinite(v) || v < min || v > max || (min_exclusive && v == min)) {
    throw invalid(field + (min_exclusive ? " must be above " + json(min).dump() + " and at most "
                                          : " must be from " + json(min).dump() + " to ") +
                  json(max).dump());
  }
  return v;
}

const char* stock_policy_name(StockPolicy policy) { return policy == StockPolicy::kHide ? "hide" : "demote"; }

}  // namespace

const char* component_name(Component component) {
  return component < kComponentCount ? kComponentNames[component] : "unknown";
}

Profile default_profile() { return Profile{}; }

Profile visual_profile() {
  Profile profile;
  profile.name = kVisualProfile;
  profile.weights = {1, 0, 0, 0, 0, 0, 0, 0};
  return profile;
}

Profile text_only_profile(const Profile& profile) {
  Profile out = profile;
  out.weights[kText] = profile.weights[kVisual];
  out.weights[kVisual] = 0;
  return out;
}

bool valid_profile_name(const std::string& name) {
  return !name.empty() && name.size() <= kMaxProfileNameBytes &&
         std::all_of(name.begin(), name.end(), [](unsigned char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                  c == '-';
         });
}

Profile parse_profile(const std::string& name, const std::string& json_text) {
  if (!valid_profile_name(name)) {
    throw invalid("the name must be 1 to 64 letters, digits, '_' or '-', not \"" + name.substr(0, 80) + "\"");
  }
  json doc = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) throw invalid("not valid JSON");
  if (!doc.is_object()) throw invalid("must be a JSON object");
  Profile profile = default_profile();
  profile.name = name;
  for (const auto& [key, value] : doc.items()) {
    if (key == "name") {
      if (!value.is_string() || value.get<std::string>() != name) {
        throw invalid("\"name\" must be the profile's name, " + name);
      }
    } else if (key == "weights") {
      if (!value.is_object()) throw invalid("weights must be an object of numbers");
      for (const auto& [component, weight] : value.items()) {
        auto* it = std::find_if(std::begin(kComponentNames), std::end(kComponentNames),
                                [&](const char* n) { return component == n; });
        if (it == std::end(kComponentNames)) {
          throw invalid("unknown weight \"" + component.substr(0, 64) +
                        "\" (known: visual, popularity, rating, stock, price, recency, taste, colour, text)");
        }
        profile.weights[static_cast<std::size_t>(it - std::begin(kComponentNames))] =
            number_in(weight, "weights." + component, 0, kMaxWeight, false);
      }
    } else if (key == "out_of_stock") {
      const std::string policy = value.is_string() ? value.get<std::string>() : "";
      if (policy == "demote") {
        profile.out_of_stock = StockPolicy::kDemote;
      } else if (policy == "hide") {
        profile.out_of_stock = StockPolicy::kHide;
      } else {
        throw invalid("out_of_stock must be \"demote\" or \"hide\"");
      }
    } else if (key == "rating_prior") {
      if (!value.is_object()) throw invalid("rating_prior must be an object {\"mean\", \"count\"}");
      for (const auto& [field, v] : value.items()) {
        if (field == "mean") {
          profile.rating_prior_mean = number_in(v, "rating_prior.mean", 0, 5, false);
        } else if (field == "count") {
          profile.rating_prior_count = number_in(v, "rating_prior.count", 0, 1e6, false);
        } else {
          throw invalid("unknown key \"" + field.substr(0, 64) + "\" in rating_prior");
        }
      }
    } else if (key == "popularity_half_saturation") {
      profile.popularity_half_saturation = number_in(value, key, 0, 1e9, true);
    } else if (key == "price_tolerance") {
      profile.price_tolerance = number_in(value, key, 0, 1e3, true);
    } else if (key == "recency_half_life_days") {
      profile.recency_half_life_days = number_in(value, key, 0, 1e5, true);
    } else if (key == "taste_attribute_share") {
      profile.taste_attribute_share = number_in(value, key, 0, 1, false);
    } else if (key == "candidate_depth") {
      if (!value.is_number_integer()) throw invalid("candidate_depth must be an integer");
      profile.candidate_depth = static_cast<int>(number_in(value, key, 1, kMaxCandidateDepth, false));
    } else {
      throw invalid("unknown key \"" + key.substr(0, 64) + "\"");
    }
  }
  return profile;
}

std::string profile_json(const Profile& profile) {
  json weights = json::object();
  for (std::size_t c = 0; c < kComponentCount; ++c) weights[kComponentNames[c]] = profile.weights[c];
  json doc{{"name", profile.name},
           {"weights", weights},
           {"out_of_stock", stock_policy_name(profile.out_of_stock)},
           {"rating_prior", {{"mean", profile.rating_prior_mean}, {"count", profile.rating_prior_count}}},
           {"popularity_half_saturation", profile.popularity_half_saturation},
           {"price_tolerance", profile.price_tolerance},
           {"recency_half_life_days", profile.recency_half_life_days},
           {"candidate_depth", profile.candidate_depth},
           {"taste_attribute_share", profile.taste_attribute_share}};
  return doc.dump();
}

double bayesian_rating(double rating, std::int64_t count, double prior_mean, double prior_count) {
  const double n = static_cast<double>(std::max<std::int64_t>(count, 0));
  if (n + prior_count <= 0) return prior_mean;
  return (n * rating + prior_count * prior_mean) / (n + prior_count);
}

double price_distance(double price, const PriceTarget& target) {
  double best = HUGE_VAL;
  if (target.target && *target.target > 0) best = std::abs(price - *target.target) / *target.target;
  if (target.min || target.max) {
    double d = 0;
    if (target.min && price < *target.min) d = (*target.min - price) / std::max(*target.min, 1e-9);
    if (target.max && price > *target.max) d = (price - *target.max) / std::max(*target.max, 1e-9);
    best = std::min(best, d);
  }
  return best == HUGE_VAL ? 0 : best;
}

std::string price_band(double price) {
  if (!(price > 0) || !std::isfinite(price)) return "";
  return std::to_string(static_cast<long long>(std::floor(std::log(price) / std::log(1.5))));
}

std::array<std::string, kTasteKinds.size()> taste_values(const std::string& brand,
                                                         const std::map<std::string, std::string>& attributes,
                                                         double price) {
  auto attribute = [&](const char* key) {
    auto it = attributes.find(key);
    return it == attributes.end() ? std::string() : it->second;
  };
  return {brand, attribute("color"), attribute("material"), price_band(price)};
}

namespace {

std::optional<std::size_t> kind_index(const std::string& kind) {
  for (std::size_t i = 0; i < kTasteKinds.size(); ++i) {
    if (kind == kTasteKinds[i]) return i;
  }
  return std::nullopt;
}

}  // namespace

void AttributeTaste::add(const std::string& kind, const std::string& value, double weight) {
  const auto k = kind_index(kind);
  if (!k || !(weight > 0) || value.empty()) return;
  weights_[*k][value] += weight;
  totals_[*k] += weight;
}

bool AttributeTaste::empty() const {
  return std::none_of(totals_.begin(), totals_.end(), [](double t) { return t > 0; });
}

double AttributeTaste::share(const std::string& kind, const std::string& value) const {
  const auto k = kind_index(kind);
  if (!k || !(totals_[*k] > 0)) return 0;
  auto it = weights_[*k].find(value);
  return it == weights_[*k].end() ? 0 : it->second / totals_[*k];
}

double AttributeTaste::affinity(const std::array<std::string, kTasteKinds.size()>& values) const {
  double sum = 0;
  int kinds = 0;
  for (std::size_t k = 0; k < kTasteKinds.size(); ++k) {
    if (!(totals_[k] > 0)) continue;
    ++kinds;
    sum += share(kTasteKinds[k], values[k]);
  }
  return kinds > 0 ? sum / kinds : 0;
}

Ranges ranges_of(const std::vector<Candidate>& candidates) {
  Ranges r{HUGE_VAL, -HUGE_VAL, HUGE_VAL, -HUGE_VAL, HUGE_VAL, -HUGE_VAL};
  for (const auto& c : candidates) {
    r.visual_min = std::min(r.visual_min, c.visual);
    r.visual_max = std::max(r.visual_max, c.visual);
    if (c.taste) {
      r.taste_min = std::min(r.taste_min, *c.taste);
      r.taste_max = std::max(r.taste_max, *c.taste);
    }
    if (c.taste_affinity) {
      r.affinity_min = std::min(r.affinity_min, *c.taste_affinity);
      r.affinity_max = std::max(r.affinity_max, *c.taste_affinity);
    }
    if (c.text) r.text_max = std::max(r.text_max, *c.text);
  }
  return r;
}

namespace {

double rescale(double v, double min, double max) {
  if (!(max > min)) return 1;
  return std::clamp((v - min) / (max - min), 0.0, 1.0);
}

}  // namespace

Score score(const Profile& profile, const PriceTarget& price, const Candidate& c, const Ranges& ranges) {
  Score s;
  auto set = [&](Component component, double value) {
    s.parts[component] = Part{value, profile.weights[component]};
  };
  s.similarity = c.visual;
  s.taste_similarity = c.taste;
  set(kVisual, rescale(c.visual, ranges.visual_min, ranges.visual_max));
  const double p = std::max(c.popularity, 0.0);
  set(kPopularity, p / (p + profile.popularity_half_saturation));
  s.rating_average =
      bayesian_rating(c.rating, c.rating_count, profile.rating_prior_mean, profile.rating_prior_count);
  set(kRating, (s.rating_average - profile.rating_prior_mean) / 5.0);
  const bool out_of_stock = c.stock <= 0;
  s.hidden = out_of_stock && profile.out_of_stock == StockPolicy::kHide;
  const bool demoted = out_of_stock && profile.out_of_stock == StockPolicy::kDemote;
  s.family_in_stock = demoted && c.family_in_stock;
  set(kStock, demoted && !c.family_in_stock ? -1.0 : 0.0);
  if (price.any()) {
    s.price_fit = std::exp(-price_distance(c.price, price) / profile.price_tolerance);
    set(kPrice, *s.price_fit - 1.0);
  } else {
    set(kPrice, 0);
  }
  set(kRecency, c.age_days ? std::exp2(-std::max(*c.age_days, 0.0) / profile.recency_half_life_days) : 0.0);
  s.taste_affinity = c.taste_affinity;
  const double m = profile.taste_attribute_share;
  s.taste_attribute_share = m;
  if (c.taste && m < 1) s.taste_look = rescale(*c.taste, ranges.taste_min, ranges.taste_max);
  if (c.taste_affinity && m > 0) {
    s.taste_attributes = rescale(*c.taste_affinity, ranges.affinity_min, ranges.affinity_max);
  }
  double taste = 0;
  if (s.taste_look && s.taste_attributes) {
    taste = (1 - m) * *s.taste_look + m * *s.taste_attributes;
  } else if (s.taste_look || s.taste_attributes) {
    taste = s.taste_look ? *s.taste_look : *s.taste_attributes;
  }
  set(kTaste, taste);
  if (c.colour) s.colour_similarity = std::clamp(*c.colour, 0.0, 1.0);
  set(kColour, s.colour_similarity.value_or(0.0));
  s.text_relevance = c.text;
  set(kText, c.text && ranges.text_max > 0 ? std::clamp(*c.text / ranges.text_max, 0.0, 1.0) : 0.0);
  for (const auto& part : s.parts) s.total += part.contribution();
  return s;
}

std::string explain_json(const Score& s) {
  auto round6 = [](double v) { return std::round(v * 1e6) / 1e6; };
  json components = json::object();
  for (std::size_t c = 0; c < kComponentCount; ++c) {
    const Part& part = s.parts[c];
    components[kComponentNames[c]] = {{"value", round6(part.value)},
                                      {"weight", round6(part.weight)},
                                      {"contribution", round6(part.contribution())}};
  }
  json doc{{"score", round6(s.total)},
           {"components", components},
           {"similarity", round6(s.similarity)},
           {"rating_average", round6(s.rating_average)}};
  if (s.price_fit) doc["price_fit"] = round6(*s.price_fit);
  if (s.taste_similarity) doc["taste_similarity"] = round6(*s.taste_similarity);
  if (s.taste_affinity) doc["taste_affinity"] = round6(*s.taste_affinity);
  if (s.taste_look || s.taste_attributes) {
    json parts = json::object();
    parts["look"] = s.taste_look ? json(round6(*s.taste_look)) : json(nullptr);
    parts["attributes"] = s.taste_attributes ? json(round6(*s.taste_attributes)) : json(nullptr);
    parts["attribute_share"] = round6(s.taste_attribute_share);
    doc["taste_parts"] = parts;
  }
  if (s.colour_similarity) doc["colour_similarity"] = round6(*s.colour_similarity);
  if (s.text_relevance) doc["text_relevance"] = round6(*s.text_relevance);
  if (s.family_in_stock) doc["family_in_stock"] = true;
  return doc.dump();
}

std::vector<Ranked> rerank(const Profile& profile, const PriceTarget& price,
                           const std::vector<Candidate>& candidates) {
  std::vector<Ranked> ranked;
  ranked.reserve(candidates.size());
  const Ranges ranges = ranges_of(candidates);
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    Score s = score(profile, price, candidates[i], ranges);
    if (!s.hidden) ranked.push_back(Ranked{i, s});
  }
  std::stable_sort(ranked.begin(), ranked.end(), [&](const Ranked& a, const Ranked& b) {
    if (a.score.total != b.score.total) return a.score.total > b.score.total;
    return candidates[a.index].visual > candidates[b.index].visual;
  });
  return ranked;
}

}  // namespace lookalike::rank
