#include "search/behaviour_sim.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <unordered_map>

#include "catalog/event.h"
#include "common/error.h"
#include "image/image.h"
#include "rank/rank.h"
#include "search/engine.h"
#include "search/eval.h"

namespace lookalike::search {

namespace {

// The simulated world (documented in behaviour_sim.h).
constexpr std::size_t kWantedCategories = 2;
constexpr std::size_t kFavouriteBrands = 2;
constexpr double kLookWeight = 1.5;
constexpr double kRatingWeight = 0.3;
constexpr double kRatingCentre = 3.5;
constexpr double kAppealSd = 0.5;
constexpr double kNoiseSd = 0.5;
constexpr double kMinSensitivity = 0.5, kMaxSensitivity = 1.5;
constexpr double kFunnelSteepness = 3;
// Thresholds of the funnel: view, click, add to cart, purchase.
constexpr double kThresholds[] = {2.8, 3.2, 3.6, 3.8};
constexpr catalog::EventType kFunnel[] = {catalog::EventType::kView, catalog::EventType::kClick,
                                          catalog::EventType::kAddToCart, catalog::EventType::kPurchase};
constexpr std::int64_t kDayMs = 86400000;
constexpr std::int64_t kWindowMs = 35 * kDayMs;
constexpr std::int64_t kSplitMs = 28 * kDayMs;  // sessions after this are the future
constexpr std::int64_t kStepMs = 4000;          // between a shopper's events in one session

// Portable draws (the standard distributions may differ between libraries).
class Random {
 public:
  explicit Random(std::uint64_t seed) : engine_(seed) {}
  double uniform() { return double(engine_() >> 11) / double(1ULL << 53); }  // [0, 1)
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(uniform() * double(n)) % n; }
  double normal() {  // Box-Muller
    const double u = 1 - uniform(), v = uniform();
    return std::sqrt(-2 * std::log(u)) * std::cos(2 * M_PI * v);
  }

 private:
  std::mt19937_64 engine_;
};

// A stable hash of a string (FNV-1a), for per-product draws that do not depend on order.
std::uint64_t hash_of(const std::string& text, std::uint64_t seed) {
  std::uint64_t h = 1469598103934665603ULL ^ (seed * 0x9e3779b97f4a7c15ULL);
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ULL;
  return h;
}

struct Item {
  std::string brand;
  std::string colour;  // value of the colour attribute (or its stand-in)
  std::string category;
  int band = 1;  // 0 budget, 1 middle, 2 premium: the third of its category's prices
  double rating = 0;
  bool in_stock = true;
  double appeal = 0;
};

struct Shopper {
  std::string id;
  std::vector<std::string> categories;
  std::vector<std::string> brands;
  std::string colour;
  int band = 1;
  double brand_weight = 1, colour_weight = 1, band_weight = 1;
};

struct Session {
  std::size_t shopper = 0;
  std::int64_t at_ms = 0;  // since the start of the window
  std::size_t photo = 0;
};

struct Engagement {
  std::string product_id;
  int grade = 0;  // steps of the funnel reached, 1..4
};

double funnel_probability(double utility, double threshold) {
  return 1 / (1 + std::exp(-kFunnelSteepness * (utility - threshold)));
}

double ndcg(const std::vector<ProductHit>& ranking, const std::vector<Engagement>& truth, int k) {
  std::unordered_map<std::string, int> grade;
  for (const auto& e : truth) grade[e.product_id] = std::max(grade[e.product_id], e.grade);
  auto gain = [](int g) { return std::exp2(g) - 1; };
  double dcg = 0;
  for (std::size_t i = 0; i < ranking.size() && i < static_cast<std::size_t>(k); ++i) {
    auto it = grade.find(ranking[i].product_id);
    if (it != grade.end()) dcg += gain(it->second) / std::log2(double(i) + 2);
  }
  std::vector<int> ideal;
  for (const auto& [id, g] : grade) ideal.push_back(g);
  std::sort(ideal.rbegin(), ideal.rend());
  double idcg = 0;
  for (std::size_t i = 0; i < ideal.size() && i < static_cast<std::size_t>(k); ++i) {
    idcg += gain(ideal[i]) / std::log2(double(i) + 2);
  }
  return idcg > 0 ? dcg / idcg : 0;
}

Uplift uplift(const std::vector<double>& a, const std::vector<double>& b) {
  Uplift u;
  const double n = double(a.size());
  if (a.empty()) return u;
  double mean_a = 0, sum = 0, sum_sq = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    mean_a += a[i];
    sum += b[i] - a[i];
  }
  mean_a /= n;
  u.mean = sum / n;
  for (std::size_t i = 0; i < a.size(); ++i) sum_sq += (b[i] - a[i] - u.mean) * (b[i] - a[i] - u.mean);
  if (a.size() > 1) u.ci95 = 1.96 * std::sqrt(sum_sq / (n - 1)) / std::sqrt(n);
  u.relative = mean_a > 0 ? u.mean / mean_a : 0;
  return u;
}

double mean_of(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return v.empty() ? 0 : sum / double(v.size());
}

}  // namespace

RankingEvalReport evaluate_ranking(Engine& engine, const std::filesystem::path& queries_file,
                                   const RankingEvalOptions& options) {
  if (options.users == 0 || options.sessions_per_user == 0 || options.photos_per_category == 0) {
    throw Error(ErrorKind::kInvalidInput,
                "eval-ranking: users, sessions and photos per category must be at least 1");
  }
  if (options.k < 1 || options.depth < options.k || options.depth > rank::kMaxCandidateDepth) {
    throw Error(ErrorKind::kInvalidInput, "eval-ranking: k must be at least 1 and depth from k to " +
                                              std::to_string(rank::kMaxCandidateDepth));
  }
  const auto start = std::chrono::steady_clock::now();
  auto say = [&](const std::string& m) {
    if (options.on_message) options.on_message(m);
  };
  RankingEvalReport report;
  report.seed = options.seed;
  const std::string prefix = "sim-" + std::to_string(options.seed) + "-";
  if (engine.user(prefix + "0")) {
    throw Error(ErrorKind::kInvalidInput, "eval-ranking: the shoppers of seed " +
                                              std::to_string(options.seed) +
                                              " are already in this data folder (a run with --keep-events); "
                                              "use another seed or a fresh copy");
  }

  // The catalog as the simulation sees it.
  std::unordered_map<std::string, Item> items;
  std::map<std::string, std::vector<double>> prices_by_category;
  std::map<std::string, std::size_t> brand_count;
  std::size_t with_color = 0, with_material = 0;
  std::vector<std::pair<std::string, catalog::Product>> products;
  for (const auto& id : engine.product_ids()) {
    auto p = engine.product(id);
    if (!p) continue;
    prices_by_category[p->category].push_back(p->price);
    ++brand_count[p->brand];
    with_color += p->attributes.count("color");
    with_material += p->attributes.count("material");
    products.emplace_back(id, std::move(*p));
  }
  report.colour_attribute = with_color > 0 ? "color" : with_material > 0 ? "material" : "";
  if (report.colour_attribute != "color") {
    say(report.colour_attribute.empty()
            ? "no product has a color or material attribute: shoppers have no colour preference"
            : "no product has a color attribute: shoppers' colour preference is for attributes.material "
              "instead");
  }
  for (auto& [category, prices] : prices_by_category) std::sort(prices.begin(), prices.end());
  std::map<std::string, std::size_t> colour_count;
  for (auto& [id, p] : products) {
    Item item;
    item.brand = p.brand;
    item.category = p.category;
    if (!report.colour_attribute.empty()) {
      auto it = p.attributes.find(report.colour_attribute);
      if (it != p.attributes.end()) item.colour = it->second;
    }
    if (!item.colour.empty()) ++colour_count[item.colour];
    const auto& prices = prices_by_category[p.category];
    const double below = double(std::lower_bound(prices.begin(), prices.end(), p.price) - prices.begin()) /
                         double(prices.size());
    item.band = below < 1.0 / 3 ? 0 : below < 2.0 / 3 ? 1 : 2;
    item.rating = p.rating;
    item.in_stock = p.stock > 0;
    Random appeal(hash_of(id, options.seed));
    item.appeal = kAppealSd * appeal.normal();
    items.emplace(id, std::move(item));
  }
  std::vector<std::string> brands, colours;
  for (const auto& [brand, n] : brand_count) {
    if (!brand.empty()) brands.push_back(brand);
  }
  for (const auto& [colour, n] : colour_count) colours.push_back(colour);

  // Query photos: per catalog category, the first photos_per_category of a seeded shuffle.
  auto queries = read_eval_queries(queries_file);
  Random random(options.seed);
  for (std::size_t i = queries.size(); i > 1; --i) std::swap(queries[i - 1], queries[random.below(i)]);
  std::map<std::string, std::vector<std::size_t>> photos_of;  // category -> indexes into photos
  std::vector<image::Image> photos;
  for (const auto& q : queries) {
    if (!prices_by_category.count(q.category)) continue;
    auto& mine = photos_of[q.category];
    if (mine.size() >= options.photos_per_category) continue;
    try {
      photos.push_back(image::load_file(q.image, engine.limits(), engine.query_min_side()));
      mine.push_back(photos.size() - 1);
    } catch (const Error& e) {
      say("skipped query photo " + q.image.string() + ": " + e.what());
    }
  }
  std::vector<std::string> categories;
  for (const auto& [category, indexes] : photos_of) {
    if (!indexes.empty()) categories.push_back(category);
  }
  if (categories.empty() || brands.empty()) {
    throw Error(ErrorKind::kInvalidInput, "eval-ranking: " + queries_file.string() +
                                              " has no readable photo of a category the catalog has");
  }
  const std::vector<float> vectors = engine.embed(photos);
  const std::size_t dim = static_cast<std::size_t>(engine.dim());

  // Shoppers and their sessions.
  std::vector<Shopper> shoppers(options.users);
  std::vector<Session> sessions;
  for (std::size_t u = 0; u < shoppers.size(); ++u) {
    Shopper& s = shoppers[u];
    s.id = prefix + std::to_string(u);
    std::vector<std::string> pool = categories;
    for (std::size_t i = 0; i < kWantedCategories && !pool.empty(); ++i) {
      const std::size_t j = random.below(pool.size());
      s.categories.push_back(pool[j]);
      pool.erase(pool.begin() + static_cast<long>(j));
    }
    pool = brands;
    for (std::size_t i = 0; i < kFavouriteBrands && !pool.empty(); ++i) {
      const std::size_t j = random.below(pool.size());
      s.brands.push_back(pool[j]);
      pool.erase(pool.begin() + static_cast<long>(j));
    }
    if (!colours.empty()) s.colour = colours[random.below(colours.size())];
    s.band = static_cast<int>(random.below(3));
    s.brand_weight = random.uniform(kMinSensitivity, kMaxSensitivity);
    s.colour_weight = random.uniform(kMinSensitivity, kMaxSensitivity);
    s.band_weight = random.uniform(kMinSensitivity, kMaxSensitivity);
    for (std::size_t i = 0; i < options.sessions_per_user; ++i) {
      Session session;
      session.shopper = u;
      session.at_ms = static_cast<std::int64_t>(random.uniform() * double(kWindowMs));
      const auto& wanted = photos_of[s.categories[random.below(s.categories.size())]];
      session.photo = wanted[random.below(wanted.size())];
      sessions.push_back(session);
    }
  }
  std::stable_sort(sessions.begin(), sessions.end(),
                   [](const Session& a, const Session& b) { return a.at_ms < b.at_ms; });

  // What each photo shows: the depth nearest products by look (the same for everyone).
  search::RankRequest visual;
  visual.profile = rank::kVisualProfile;
  visual.depth = options.depth;
  const auto slates = engine.search_vectors(vectors.data(), photos.size(), options.depth,
                                            /*with_details=*/false, {}, &visual);

  // Every session's engagement, drawn in time order from one generator.
  std::vector<std::vector<Engagement>> engaged(sessions.size());
  for (std::size_t s = 0; s < sessions.size(); ++s) {
    const Shopper& shopper = shoppers[sessions[s].shopper];
    const auto& hits = slates[sessions[s].photo].hits;
    double lo = HUGE_VAL, hi = -HUGE_VAL;
    for (const auto& hit : hits) {
      lo = std::min(lo, double(hit.similarity));
      hi = std::max(hi, double(hit.similarity));
    }
    for (const auto& hit : hits) {
      const Item& item = items.at(hit.product_id);
      const double look = hi > lo ? (hit.similarity - lo) / (hi - lo) : 1;
      const bool favourite_brand =
          std::find(shopper.brands.begin(), shopper.brands.end(), item.brand) != shopper.brands.end();
      const double utility =
          kLookWeight * look + (favourite_brand ? shopper.brand_weight : 0) +
          (!item.colour.empty() && item.colour == shopper.colour ? shopper.colour_weight : 0) +
          (item.band == shopper.band ? shopper.band_weight : 0) +
          kRatingWeight * (item.rating - kRatingCentre) + item.appeal + kNoiseSd * random.normal();
      int grade = 0;
      for (std::size_t step = 0; step < std::size(kThresholds); ++step) {
        if (step >= 2 && !item.in_stock) break;
        if (random.uniform() >= funnel_probability(utility, kThresholds[step])) break;
        grade = static_cast<int>(step) + 1;
      }
      if (grade > 0) engaged[s].push_back({hit.product_id, grade});
    }
  }

  // History through the engine, placed so that the split is now.
  const std::int64_t now = catalog::unix_now_ms();
  std::vector<catalog::Event> history;
  for (std::size_t s = 0; s < sessions.size(); ++s) {
    const bool future = sessions[s].at_ms >= kSplitMs;
    (future ? report.future_sessions : report.history_sessions) += 1;
    std::int64_t t = sessions[s].at_ms;
    for (const auto& e : engaged[s]) {
      for (int step = 0; step < e.grade; ++step) {
        char line[256];
        std::snprintf(line, sizeof line, "%s %s %s %lld", shoppers[sessions[s].shopper].id.c_str(),
                      catalog::event_type_name(kFunnel[step]), e.product_id.c_str(),
                      static_cast<long long>(t - kSplitMs));
        report.event_log.push_back(line);
        if (future) {
          ++report.future_events;
        } else {
          history.push_back(
              {kFunnel[step], e.product_id, shoppers[sessions[s].shopper].id, now - (kSplitMs - t)});
          ++report.history_events;
        }
        t += kStepMs;
      }
    }
  }
  say("recording " + std::to_string(history.size()) + " history events of " +
      std::to_string(shoppers.size()) + " shoppers");
  constexpr std::size_t kEventBatch = 10000;  // events per transaction
  for (std::size_t begin = 0; begin < history.size(); begin += kEventBatch) {
    const std::vector<catalog::Event> batch(
        history.begin() + static_cast<long>(begin),
        history.begin() + static_cast<long>(std::min(history.size(), begin + kEventBatch)));
    const auto recorded = engine.record_events(batch);
    if (!recorded.rejected.empty()) {
      throw Error(ErrorKind::kInternal,
                  "eval-ranking: an event was rejected: " + recorded.rejected[0].second);
    }
  }

  // The future, scored. Business ranking depends on the photo only; personal on the shopper too.
  search::RankRequest business;
  business.profile = rank::kDefaultProfile;
  business.depth = options.depth;
  const auto business_results = engine.search_vectors(vectors.data(), photos.size(), options.k,
                                                      /*with_details=*/false, {}, &business);
  std::vector<std::vector<double>> per_user(shoppers.size() * 3);  // visual, business, personal
  for (std::size_t s = 0; s < sessions.size(); ++s) {
    if (sessions[s].at_ms < kSplitMs || engaged[s].empty()) continue;
    ++report.scored_sessions;
    const std::size_t u = sessions[s].shopper, photo = sessions[s].photo;
    search::RankRequest personal = business;
    personal.user_id = shoppers[u].id;
    const auto mine = engine.search_vectors(vectors.data() + photo * dim, 1, options.k,
                                            /*with_details=*/false, {}, &personal);
    std::vector<ProductHit> look(
        slates[photo].hits.begin(),
        slates[photo].hits.begin() + static_cast<long>(std::min<std::size_t>(
                                         slates[photo].hits.size(), static_cast<std::size_t>(options.k))));
    per_user[u * 3 + 0].push_back(ndcg(look, engaged[s], options.k));
    per_user[u * 3 + 1].push_back(ndcg(business_results[photo].hits, engaged[s], options.k));
    per_user[u * 3 + 2].push_back(ndcg(mine.at(0).hits, engaged[s], options.k));
  }
  std::vector<double> visual_scores, business_scores, personal_scores;
  for (std::size_t u = 0; u < shoppers.size(); ++u) {
    if (per_user[u * 3].empty()) continue;
    visual_scores.push_back(mean_of(per_user[u * 3 + 0]));
    business_scores.push_back(mean_of(per_user[u * 3 + 1]));
    personal_scores.push_back(mean_of(per_user[u * 3 + 2]));
  }
  report.users = shoppers.size();
  report.users_scored = visual_scores.size();
  report.ndcg_visual = mean_of(visual_scores);
  report.ndcg_business = mean_of(business_scores);
  report.ndcg_personal = mean_of(personal_scores);
  report.business_over_visual = uplift(visual_scores, business_scores);
  report.personal_over_business = uplift(business_scores, personal_scores);
  report.personal_over_visual = uplift(visual_scores, personal_scores);

  if (!options.keep_events) {
    std::vector<std::string> ids;
    for (const auto& shopper : shoppers) ids.push_back(shopper.id);
    engine.forget_users(ids);
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace lookalike::search
