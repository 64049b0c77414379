// Ranking: the pure scoring function (rank/rank.h), events and their decay
// (catalog/event.h), and the engine's use of both on a small real catalog:
// events, profiles, forgetting a shopper, price and stock changes without re-embedding.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "catalog/event.h"
#include "catalog/store.h"
#include "common/error.h"
#include "rank/rank.h"
#include "search/behaviour_sim.h"
#include "search/demo_catalog.h"
#include "search/engine.h"
#include "support/test_support.h"

namespace lookalike {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::contains;
using testing::error_from;
using testing::TempDir;

rank::Candidate plain(double visual) {
  rank::Candidate c;
  c.visual = visual;
  c.price = 50;
  c.stock = 10;
  c.rating = 4.0;
  c.rating_count = 100;
  return c;
}

std::vector<std::size_t> order(const std::vector<rank::Ranked>& ranked) {
  std::vector<std::size_t> out;
  for (const auto& r : ranked) out.push_back(r.index);
  return out;
}

std::size_t position_of(const std::vector<rank::Ranked>& ranked, std::size_t index) {
  for (std::size_t i = 0; i < ranked.size(); ++i) {
    if (ranked[i].index == index) return i;
  }
  return ranked.size();
}

// ---- the pure scoring function ----

TEST(Score, OneFiveStarReviewDoesNotBeatAThousandFourPointEights) {
  const auto profile = rank::default_profile();
  auto one_review = plain(0.9);
  one_review.rating = 5.0;
  one_review.rating_count = 1;
  auto thousand = plain(0.9);
  thousand.rating = 4.8;
  thousand.rating_count = 1000;
  const auto a = rank::score(profile, {}, one_review, {});
  const auto b = rank::score(profile, {}, thousand, {});
  // The prior (3.5 stars, worth 20 reviews) holds the single review near 3.5.
  EXPECT_NEAR(a.rating_average, (5.0 + 20 * 3.5) / 21, 1e-9);
  EXPECT_NEAR(b.rating_average, (4800.0 + 20 * 3.5) / 1020, 1e-9);
  EXPECT_GT(b.total, a.total);
  EXPECT_EQ(order(rank::rerank(profile, {}, {one_review, thousand})), (std::vector<std::size_t>{1, 0}));
  // A product nobody reviewed is neither lifted nor pushed down by its rating.
  auto unreviewed = plain(0.9);
  unreviewed.rating = 0;
  unreviewed.rating_count = 0;
  EXPECT_DOUBLE_EQ(rank::score(profile, {}, unreviewed, {}).parts[rank::kRating].value, 0.0);
}

// A similarity curve: evenly spread, so the 40th candidate is 30% of the candidates'
// spread below the 10th.
std::vector<rank::Candidate> similarity_curve(std::size_t n) {
  std::vector<rank::Candidate> candidates;
  for (std::size_t i = 0; i < n; ++i) candidates.push_back(plain(0.95 - 0.002 * static_cast<double>(i)));
  return candidates;
}

TEST(Score, APopularItemIsLiftedFromRankFortyIntoTheTopTen) {
  auto candidates = similarity_curve(100);
  const auto profile = rank::default_profile();
  EXPECT_EQ(position_of(rank::rerank(profile, {}, candidates), 39), 39u);  // nobody has events yet
  candidates[39].popularity = 100;                                         // e.g. ten purchases this week
  const auto ranked = rank::rerank(profile, {}, candidates);
  EXPECT_LT(position_of(ranked, 39), 10u);
  // The visual profile leaves it where its look puts it.
  EXPECT_EQ(position_of(rank::rerank(rank::visual_profile(), {}, candidates), 39), 39u);
}

TEST(Score, OutOfStockIsDemotedOrHidden) {
  auto candidates = similarity_curve(20);
  candidates[0].stock = 0;
  auto demote = rank::default_profile();
  const auto demoted = rank::rerank(demote, {}, candidates);
  ASSERT_EQ(demoted.size(), 20u);
  EXPECT_GT(position_of(demoted, 0), 0u);  // no longer first, but still there
  EXPECT_LT(position_of(demoted, 0), 20u);
  EXPECT_DOUBLE_EQ(demoted[position_of(demoted, 0)].score.parts[rank::kStock].contribution(),
                   -demote.weights[rank::kStock]);

  auto hide = demote;
  hide.out_of_stock = rank::StockPolicy::kHide;
  const auto hidden = rank::rerank(hide, {}, candidates);
  EXPECT_EQ(hidden.size(), 19u);
  EXPECT_EQ(position_of(hidden, 0), hidden.size());
  EXPECT_EQ(hidden.front().index, 1u);
}

// Grouped results: a sold-out variant whose family is in stock stands for a family
// the shopper can buy, so it keeps its place; the hide policy still hides it.
TEST(Score, SoldOutVariantOfAnInStockFamilyIsNotDemoted) {
  auto candidates = similarity_curve(20);
  candidates[0].stock = 0;
  candidates[0].family_in_stock = true;
  const auto profile = rank::default_profile();
  const auto ranked = rank::rerank(profile, {}, candidates);
  ASSERT_EQ(position_of(ranked, 0), 0u);
  const auto& score = ranked.front().score;
  EXPECT_EQ(score.parts[rank::kStock].contribution(), 0.0);
  EXPECT_TRUE(score.family_in_stock);
  EXPECT_NE(rank::explain_json(score).find("\"family_in_stock\":true"), std::string::npos);
  EXPECT_EQ(rank::explain_json(ranked[1].score).find("family_in_stock"), std::string::npos);

  auto hide = profile;
  hide.out_of_stock = rank::StockPolicy::kHide;
  EXPECT_EQ(position_of(rank::rerank(hide, {}, candidates), 0), 19u);  // not there
}

TEST(Score, ZeroWeightsGivePureVisualOrder) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<rank::Candidate> candidates;
  for (int i = 0; i < 200; ++i) {
    rank::Candidate c;
    c.visual = u(rng);
    c.price = 1 + 200 * u(rng);
    c.stock = static_cast<std::int64_t>(u(rng) * 3);  // a third out of stock
    c.rating = 5 * u(rng);
    c.rating_count = static_cast<std::int64_t>(1000 * u(rng));
    c.popularity = 100 * u(rng);
    c.age_days = 100 * u(rng);
    c.taste = u(rng);
    candidates.push_back(c);
  }
  rank::Profile profile;
  profile.weights = {1, 0, 0, 0, 0, 0, 0};
  rank::PriceTarget price;
  price.target = 20;
  const auto ranked = rank::rerank(profile, price, candidates);
  ASSERT_EQ(ranked.size(), candidates.size());
  for (std::size_t i = 1; i < ranked.size(); ++i) {
    EXPECT_GT(candidates[ranked[i - 1].index].visual, candidates[ranked[i].index].visual);
    EXPECT_DOUBLE_EQ(ranked[i].score.similarity, candidates[ranked[i].index].visual);
    EXPECT_EQ(ranked[i].score.parts[rank::kVisual].contribution(), ranked[i].score.total);
  }
  EXPECT_DOUBLE_EQ(ranked.front().score.total, 1.0);  // the most similar candidate
  EXPECT_DOUBLE_EQ(ranked.back().score.total, 0.0);   // the least
}

TEST(Score, ExplainPartsAddUpToTheScore) {
  rank::Candidate c = plain(0.8);
  c.popularity = 7;
  c.age_days = 12;
  c.taste = 0.4;
  c.stock = 0;
  rank::PriceTarget price;
  price.min = 10;
  price.max = 40;
  const auto s = rank::score(rank::default_profile(), price, c, {0.5, 1.0, 0.0, 0.8});
  double sum = 0;
  for (const auto& part : s.parts) sum += part.contribution();
  EXPECT_NEAR(sum, s.total, 1e-12);
  EXPECT_NEAR(s.parts[rank::kVisual].value, 0.6, 1e-12);  // 0.8 rescaled from 0.5..1
  EXPECT_NEAR(s.parts[rank::kTaste].value, 0.5, 1e-12);   // 0.4 rescaled from 0..0.8
  EXPECT_NEAR(s.parts[rank::kPopularity].value, 7.0 / 17.0, 1e-12);
  EXPECT_NEAR(s.parts[rank::kRecency].value, std::exp2(-12.0 / 30.0), 1e-12);
  ASSERT_TRUE(s.price_fit);
  EXPECT_NEAR(*s.price_fit, std::exp(-0.25 / 0.25), 1e-12);  // 50 is 25% above the range's 40
}

TEST(Score, TheRightColourWinsAmongVariantsThatLookTheSameButNotOverAnotherShape) {
  // Three colour variants of the item photographed, visually within a hair of each
  // other (the red one photographed), and another item of the right colour that looks
  // clearly less alike.
  std::vector<rank::Candidate> candidates(5, plain(0));
  candidates[0].visual = 0.990, candidates[0].colour = 0.05;  // blue variant
  candidates[1].visual = 0.989, candidates[1].colour = 0.85;  // red variant: the one
  candidates[2].visual = 0.988, candidates[2].colour = 0.10;  // green variant
  candidates[3].visual = 0.900, candidates[3].colour = 0.90;  // a red item of another shape
  candidates[4].visual = 0.800;                               // colour unknown
  const auto ranked = rank::rerank(rank::default_profile(), {}, candidates);
  ASSERT_EQ(ranked.size(), 5u);
  EXPECT_EQ(ranked.front().index, 1u);  // the right colour of the right shape
  EXPECT_GT(position_of(ranked, 3), position_of(ranked, 1));
  EXPECT_EQ(ranked.back().index, 4u);
  // Without the colour component the look order stands: the wrong colour first.
  rank::Profile no_colour = rank::default_profile();
  no_colour.weights[rank::kColour] = 0;
  EXPECT_EQ(rank::rerank(no_colour, {}, candidates).front().index, 0u);

  // Explain: the colour part is the similarity itself (not rescaled), weighted; an
  // unknown colour is 0 and leaves colour_similarity out, so it is not read as "different".
  const auto& best = ranked.front().score;
  EXPECT_NEAR(best.parts[rank::kColour].value, 0.85, 1e-12);
  EXPECT_EQ(best.parts[rank::kColour].weight, rank::default_profile().weights[rank::kColour]);
  const json shown = json::parse(rank::explain_json(best));
  EXPECT_NEAR(shown["components"]["colour"]["contribution"].get<double>(),
              0.85 * rank::default_profile().weights[rank::kColour], 1e-6);
  EXPECT_NEAR(shown["colour_similarity"].get<double>(), 0.85, 1e-6);
  const auto& unknown = ranked.back().score;
  EXPECT_EQ(unknown.parts[rank::kColour].value, 0.0);
  EXPECT_FALSE(json::parse(rank::explain_json(unknown)).contains("colour_similarity"));
}

TEST(Profile, TheColourWeightIsReadWrittenAndChecked) {
  const auto profile = rank::parse_profile("shop", R"({"weights": {"colour": 2.5}})");
  EXPECT_EQ(profile.weights[rank::kColour], 2.5);
  EXPECT_EQ(rank::parse_profile("shop", rank::profile_json(profile)).weights[rank::kColour], 2.5);
  EXPECT_EQ(rank::visual_profile().weights[rank::kColour], 0.0);
  EXPECT_STREQ(rank::component_name(rank::kColour), "colour");
  auto err = error_from([] { rank::parse_profile("shop", R"({"weights": {"colour": -1}})"); });
  ASSERT_TRUE(err);
  EXPECT_TRUE(contains(err->what(), "weights.colour")) << err->what();
  err = error_from([] { rank::parse_profile("shop", R"({"weights": {"color": 1}})"); });
  ASSERT_TRUE(err);
  EXPECT_TRUE(contains(err->what(), "colour")) << err->what();
}

TEST(Score, TextRelevanceIsDividedByTheBestAndTakesVisualsPlaceWithoutAPhoto) {
  std::vector<rank::Candidate> candidates(3, plain(0.5));
  candidates[0].visual = 0.9;
  candidates[0].text = 2.0;  // looks best, matches the words less well
  candidates[1].visual = 0.8;
  candidates[1].text = 4.0;
  candidates[2].visual = 0.1;
  candidates[2].text = 3.9;
  rank::Profile profile = rank::visual_profile();
  profile.weights[rank::kText] = 0.3;
  auto ranked = rank::rerank(profile, {}, candidates);
  ASSERT_EQ(ranked.size(), 3u);
  // text = relevance / best relevance: 0.5, 1, 0.975; nearly equal relevances stay nearly equal.
  EXPECT_DOUBLE_EQ(ranked[0].score.parts[rank::kText].value, 1.0);
  EXPECT_EQ(ranked[0].index, 1u);  // 0.875 + 0.3 beats 1 + 0.15
  EXPECT_EQ(ranked[1].index, 0u);
  EXPECT_DOUBLE_EQ(ranked[1].score.parts[rank::kText].value, 0.5);
  EXPECT_NEAR(ranked[2].score.parts[rank::kText].value, 0.975, 1e-12);
  EXPECT_EQ(*ranked[2].score.text_relevance, 3.9);
  for (const auto& r : ranked) {
    double sum = 0;
    for (const auto& part : r.score.parts) sum += part.contribution();
    EXPECT_NEAR(sum, r.score.total, 1e-12);
  }
  auto explained = nlohmann::json::parse(rank::explain_json(ranked[2].score));
  EXPECT_NEAR(explained["text_relevance"].get<double>(), 3.9, 1e-9);
  EXPECT_NEAR(explained["components"]["text"]["weight"].get<double>(), 0.3, 1e-9);
  // Without text the component is 0 and there is no relevance to explain.
  auto none = rank::rerank(profile, {}, {plain(0.9), plain(0.2)});
  EXPECT_EQ(none[0].score.parts[rank::kText].value, 0);
  EXPECT_FALSE(nlohmann::json::parse(rank::explain_json(none[0].score)).contains("text_relevance"));
  // Text alone: the text weight is the visual weight and visual counts nothing.
  const auto alone = rank::text_only_profile(rank::default_profile());
  EXPECT_EQ(alone.weights[rank::kText], rank::default_profile().weights[rank::kVisual]);
  EXPECT_EQ(alone.weights[rank::kVisual], 0);
  // The weight is set by name in a stored profile.
  auto parsed = rank::parse_profile("t", R"({"weights": {"text": 2}})");
  EXPECT_EQ(parsed.weights[rank::kText], 2);
  EXPECT_EQ(nlohmann::json::parse(rank::profile_json(parsed))["weights"]["text"], 2);
}

TEST(Score, PriceFitPrefersTheRequestedPrice) {
  auto candidates = similarity_curve(50);
  candidates[1].price = 200;
  candidates[2].price = 20;
  rank::PriceTarget price;
  price.target = 25;
  auto with_price = rank::rerank(rank::default_profile(), price, candidates);
  EXPECT_LT(position_of(with_price, 2), position_of(with_price, 1));
  auto without = rank::rerank(rank::default_profile(), {}, candidates);
  EXPECT_LT(position_of(without, 1), position_of(without, 2));
  EXPECT_DOUBLE_EQ(rank::price_distance(30, {std::nullopt, 10.0, 40.0}), 0.0);
  EXPECT_DOUBLE_EQ(rank::price_distance(5, {std::nullopt, 10.0, 40.0}), 0.5);
}

TEST(Score, AttributeTasteIsTheMeanShareOfTheProductsValuesAndMixesWithTheLook) {
  EXPECT_EQ(rank::price_band(30), "8");  // 1.5^8 = 25.6 <= 30 < 38.4
  EXPECT_EQ(rank::price_band(25), "7");
  EXPECT_EQ(rank::price_band(0), "");
  EXPECT_EQ(rank::price_band(-3), "");

  rank::AttributeTaste taste;
  taste.add("brand", "Fjord", 3);
  taste.add("brand", "Atlas", 1);
  taste.add("material", "wool", 2);
  taste.add("shoe_size", "42", 5);  // not a taste kind: ignored
  taste.add("color", "red", 0);     // no weight: ignored
  EXPECT_FALSE(taste.empty());
  EXPECT_DOUBLE_EQ(taste.share("brand", "Fjord"), 0.75);
  EXPECT_DOUBLE_EQ(taste.share("brand", "Vela"), 0.0);
  // Kinds with weight: brand and material. A Fjord in wool: (0.75 + 1) / 2.
  EXPECT_DOUBLE_EQ(taste.affinity(rank::taste_values("Fjord", {{"material", "wool"}}, 30)), 0.875);
  EXPECT_DOUBLE_EQ(taste.affinity(rank::taste_values("Atlas", {{"material", "denim"}}, 30)), 0.125);
  EXPECT_DOUBLE_EQ(taste.affinity(rank::taste_values("", {}, 30)), 0.0);
  EXPECT_TRUE(rank::AttributeTaste().empty());

  // taste value = (1 - m) * look + m * attributes, each rescaled over the candidates.
  auto a = plain(0.9), b = plain(0.8);
  a.taste = 0.2;
  a.taste_affinity = 0.125;
  b.taste = 0.6;
  b.taste_affinity = 0.875;
  auto profile = rank::default_profile();
  profile.taste_attribute_share = 0.25;
  const auto ranked = rank::rerank(profile, {}, {a, b});
  ASSERT_EQ(ranked.size(), 2u);
  for (const auto& r : ranked) {
    const auto& s = r.score;
    const double look = r.index == 0 ? 0 : 1, attributes = r.index == 0 ? 0 : 1;
    EXPECT_DOUBLE_EQ(s.parts[rank::kTaste].value, 0.75 * look + 0.25 * attributes);
    ASSERT_TRUE(s.taste_look && s.taste_attributes);
    EXPECT_DOUBLE_EQ(*s.taste_look, look);
    double sum = 0;
    for (const auto& part : s.parts) sum += part.contribution();
    EXPECT_NEAR(sum, s.total, 1e-12);
    const auto doc = json::parse(rank::explain_json(s));
    EXPECT_DOUBLE_EQ(doc["taste_parts"]["attribute_share"].get<double>(), 0.25);
    EXPECT_DOUBLE_EQ(doc["taste_affinity"].get<double>(), r.index == 0 ? 0.125 : 0.875);
  }
  // Only an attribute taste (no vector): it is the whole value; share 0 ignores it.
  a.taste.reset();
  b.taste.reset();
  for (const auto& r : rank::rerank(profile, {}, {a, b}))
    EXPECT_DOUBLE_EQ(r.score.parts[rank::kTaste].value, r.index == 0 ? 0.0 : 1.0);
  profile.taste_attribute_share = 0;
  for (const auto& r : rank::rerank(profile, {}, {a, b})) EXPECT_EQ(r.score.parts[rank::kTaste].value, 0.0);
}

TEST(Profile, JsonRoundTripAndClearErrors) {
  auto p =
      rank::parse_profile("summer", R"({"weights": {"popularity": 0.5, "taste": 0}, "out_of_stock": "hide",
      "rating_prior": {"mean": 4, "count": 50}, "candidate_depth": 300, "taste_attribute_share": 0.8})");
  EXPECT_EQ(p.name, "summer");
  EXPECT_DOUBLE_EQ(p.weights[rank::kPopularity], 0.5);
  EXPECT_DOUBLE_EQ(p.weights[rank::kVisual], 1.0);  // not given: the default's
  EXPECT_EQ(p.out_of_stock, rank::StockPolicy::kHide);
  EXPECT_EQ(p.candidate_depth, 300);
  EXPECT_DOUBLE_EQ(p.taste_attribute_share, 0.8);
  auto again = rank::parse_profile("summer", rank::profile_json(p));
  EXPECT_EQ(rank::profile_json(again), rank::profile_json(p));

  auto message = [](const std::string& name, const std::string& text) {
    auto e = error_from([&] { rank::parse_profile(name, text); });
    EXPECT_TRUE(e && e->kind() == ErrorKind::kInvalidInput);
    return e ? std::string(e->what()) : std::string();
  };
  EXPECT_TRUE(contains(message("x", R"({"weights": {"populrity": 1}})"), "unknown weight \"populrity\""));
  EXPECT_TRUE(contains(message("x", R"({"weights": {"visual": -1}})"), "weights.visual"));
  EXPECT_TRUE(contains(message("x", R"({"candidate_depth": 5000})"), "candidate_depth"));
  EXPECT_TRUE(contains(message("x", R"({"out_of_stock": "bury"})"), "out_of_stock"));
  EXPECT_TRUE(contains(message("x", R"({"taste_attribute_share": 1.5})"), "taste_attribute_share"));
  EXPECT_TRUE(contains(message("x", R"({"colour": 1})"), "unknown key \"colour\""));
  EXPECT_TRUE(contains(message("bad name", "{}"), "name"));
  EXPECT_TRUE(contains(message("x", "[1]"), "object"));
}

// ---- events ----

TEST(Events, ParseAcceptsRfc3339AndUnixSecondsAndNamesWhatIsWrong) {
  const std::int64_t now = 1795000000000;  // 2026-11-17
  auto e = catalog::parse_event(
      R"({"type":"purchase","product_id":"p1","user_id":"u1","time":"2026-11-16T10:00:00.250+01:00"})", now,
      {});
  EXPECT_EQ(e.type, catalog::EventType::kPurchase);
  EXPECT_EQ(e.time_ms, *catalog::parse_rfc3339_ms("2026-11-16T09:00:00.250Z"));
  EXPECT_EQ(catalog::format_rfc3339(e.time_ms), "2026-11-16T09:00:00.250Z");
  EXPECT_EQ(
      catalog::parse_event(R"({"type":"view","product_id":"p","user_id":"u","time":1794999999.5})", now, {})
          .time_ms,
      1794999999500);
  EXPECT_EQ(catalog::parse_event(R"({"type":"click","product_id":"p","user_id":"u"})", now, {}).time_ms, now);

  auto message = [&](const std::string& text) {
    auto err = error_from([&] { catalog::parse_event(text, now, {}); });
    EXPECT_TRUE(err && err->kind() == ErrorKind::kInvalidInput) << text;
    return err ? std::string(err->what()) : std::string();
  };
  EXPECT_TRUE(contains(message(R"({"type":"like","product_id":"p","user_id":"u"})"), "type must be"));
  EXPECT_TRUE(contains(message(R"({"type":"view","user_id":"u"})"), "product_id is missing"));
  EXPECT_TRUE(contains(message(R"({"type":"view","product_id":"p","user_id":""})"), "user_id is empty"));
  EXPECT_TRUE(
      contains(message(R"({"type":"view","product_id":"p","user_id":"u","time":"yesterday"})"), "RFC 3339"));
  EXPECT_TRUE(
      contains(message(R"({"type":"view","product_id":"p","user_id":"u","time":"2026-02-30T00:00:00Z"})"),
               "RFC 3339"));
  EXPECT_TRUE(
      contains(message(R"({"type":"view","product_id":"p","user_id":"u","time":"2027-01-01T00:00:00Z"})"),
               "in the future"));
  EXPECT_TRUE(contains(message(R"({"type":"view","product_id":"p","user_id":"u","sku":"x"})"),
                       "unknown key \"sku\""));
  EXPECT_TRUE(contains(message("{\"type\":"), "not valid JSON"));
  EXPECT_TRUE(contains(message("{\"type\":\"view\",\"product_id\":\"" + std::string(5000, 'p') + "\"}"),
                       "over 4096 bytes"));
}

TEST(Events, WeightsAndHalfLife) {
  EXPECT_LT(catalog::event_weight(catalog::EventType::kView),
            catalog::event_weight(catalog::EventType::kClick));
  EXPECT_LT(catalog::event_weight(catalog::EventType::kAddToCart),
            catalog::event_weight(catalog::EventType::kPurchase));
  const std::int64_t week = 7LL * 86400 * 1000;
  EXPECT_NEAR(catalog::decay_factor(0, week, catalog::kPopularityHalfLifeDays), 0.5, 1e-12);
  EXPECT_NEAR(catalog::decay_factor(0, 2 * week, catalog::kPopularityHalfLifeDays), 0.25, 1e-12);
}

// ---- the engine: events, profiles, users and metadata changes on a real catalog ----

class RankingEngine : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new TempDir();
    demo::write_demo_catalog(root_->path() / "demo",
                             {.dataset_dir = {}, .max_products = 300, .max_queries = 5});
    search::OpenOptions open;
    open.model = search::kPixelsModel;
    engine_ = search::Engine::open(root_->path() / "data", open).release();
    auto report = engine_->ingest(root_->path() / "demo" / "catalog.jsonl", {});
    ASSERT_EQ(report.products_added, 300u);
  }
  static void TearDownTestSuite() {
    delete engine_;
    delete root_;
  }

  static fs::path query(int n) {
    char name[32];
    std::snprintf(name, sizeof name, "%05d.png", n);
    return root_->path() / "demo" / "queries" / name;
  }

  static search::QueryResult find(const fs::path& image, int k, const search::RankRequest* ranking) {
    auto results = engine_->search_files({image}, k, /*with_details=*/true, {}, ranking);
    EXPECT_TRUE(results.at(0).error.empty()) << results.at(0).error;
    return results.at(0);
  }

  static std::size_t rank_of(const search::QueryResult& result, const std::string& id) {
    for (std::size_t i = 0; i < result.hits.size(); ++i) {
      if (result.hits[i].product_id == id) return i;
    }
    return result.hits.size();
  }

  static catalog::Event event(catalog::EventType type, const std::string& product, const std::string& user,
                              std::int64_t ago_ms = 0) {
    return {type, product, user, catalog::unix_now_ms() - ago_ms};
  }

  // The product as an entry to apply again, with its image paths relative to the demo folder.
  static catalog::CatalogEntry entry_of(const std::string& id) {
    catalog::CatalogEntry entry;
    entry.product = *engine_->product(id);
    return entry;
  }

  static TempDir* root_;
  static search::Engine* engine_;
};

TempDir* RankingEngine::root_ = nullptr;
search::Engine* RankingEngine::engine_ = nullptr;

TEST_F(RankingEngine, EventsLiftAProductInSearchAtOnceWithoutTouchingTheIndex) {
  search::RankRequest visual;
  visual.profile = "visual";
  const auto before = find(query(0), 50, &visual);
  ASSERT_EQ(before.hits.size(), 50u);
  const std::string lifted = before.hits[40].product_id;
  // The similarity curve of this query with this model (for the lift asserted below).
  std::cout << "similarity rank 1 " << before.hits[0].similarity << ", 10 " << before.hits[9].similarity
            << ", 41 " << before.hits[40].similarity << "\n";
  const auto info_before = engine_->info();

  std::vector<catalog::Event> events;
  for (int i = 0; i < 12; ++i)
    events.push_back(event(catalog::EventType::kPurchase, lifted, "shopper-" + std::to_string(i)));
  events.push_back(event(catalog::EventType::kView, "no-such-product", "shopper-0"));
  auto report = engine_->record_events(events);
  EXPECT_EQ(report.accepted, 12u);
  ASSERT_EQ(report.rejected.size(), 1u);
  EXPECT_EQ(report.rejected[0].first, 12u);
  EXPECT_TRUE(contains(report.rejected[0].second, "no product with id no-such-product"));

  search::RankRequest ranked;  // the default profile
  ranked.depth = 100;
  const auto after = find(query(0), 10, &ranked);
  ASSERT_LT(rank_of(after, lifted), 10u)
      << "a product bought 12 times is lifted from rank 41 into the top 10";
  const auto& hit = after.hits[rank_of(after, lifted)];
  ASSERT_TRUE(hit.ranking);
  EXPECT_GT(hit.ranking->parts[rank::kPopularity].value, 0.9);
  EXPECT_NEAR(hit.similarity, before.hits[40].similarity, 1e-6);
  EXPECT_EQ(rank_of(find(query(0), 50, &visual), lifted), 40u);  // the look alone did not change
  EXPECT_EQ(engine_->info().index_vectors, info_before.index_vectors);

  // Candidate depth bounds what can be lifted: from 20 deep, rank 41 is out of reach.
  ranked.depth = 20;
  EXPECT_EQ(rank_of(find(query(0), 10, &ranked), lifted), 10u);
}

TEST_F(RankingEngine, PriceAndStockChangesCountAtOnceWithoutReEmbedding) {
  search::RankRequest hide;
  hide.profile = "in-stock-only";
  auto profile = rank::default_profile();
  profile.name = hide.profile;
  profile.out_of_stock = rank::StockPolicy::kHide;
  engine_->put_ranking_profile(profile);

  const auto before = find(query(1), 5, &hide);
  ASSERT_FALSE(before.hits.empty());
  const std::string top = before.hits[0].product_id;
  auto entry = entry_of(top);
  entry.product.stock = 0;
  entry.product.price = 1234.5;
  auto report = engine_->apply({entry}, root_->path() / "demo", {});
  EXPECT_EQ(report.products_updated, 1u);
  EXPECT_EQ(report.images_embedded, 0u) << "a metadata change must not re-embed";
  EXPECT_EQ(report.images_reused, entry.product.images.size());

  EXPECT_EQ(rank_of(find(query(1), 5, &hide), top), 5u) << "out of stock is hidden by this profile";
  search::RankRequest demote;
  const auto demoted = find(query(1), 300, &demote);
  ASSERT_LT(rank_of(demoted, top), demoted.hits.size());
  const auto& hit = demoted.hits[rank_of(demoted, top)];
  EXPECT_EQ(hit.product.price, 1234.5);
  EXPECT_EQ(hit.ranking->parts[rank::kStock].value, -1.0);

  entry.product.stock = 5;
  engine_->apply({entry}, root_->path() / "demo", {});
  EXPECT_EQ(find(query(1), 5, &hide).hits.at(0).product_id, top) << "back in stock, back on top";
}

TEST_F(RankingEngine, TasteLiftsWhatLooksLikeTheShoppersHistoryAndForgettingRemovesIt) {
  search::RankRequest visual;
  visual.profile = "visual";
  const auto similar = find(query(2), 30, &visual);
  ASSERT_EQ(similar.hits.size(), 30u);
  // The shopper bought products that look like the query's 25th to 30th results.
  std::vector<catalog::Event> history;
  for (std::size_t i = 24; i < 30; ++i) {
    history.push_back(
        event(catalog::EventType::kAddToCart, similar.hits[i].product_id, "taste-user", 3600000));
  }
  ASSERT_EQ(engine_->record_events(history).accepted, history.size());
  auto summary = engine_->user("taste-user");
  ASSERT_TRUE(summary);
  EXPECT_EQ(summary->events, history.size());
  EXPECT_TRUE(summary->has_taste);

  search::RankRequest personal;
  personal.user_id = "taste-user";
  const auto mine = find(query(2), 30, &personal);
  search::RankRequest anonymous;
  const auto theirs = find(query(2), 30, &anonymous);
  double taste_mine = 0;
  for (const auto& hit : mine.hits) taste_mine += hit.ranking->parts[rank::kTaste].value;
  EXPECT_GT(taste_mine, 0.0);
  for (const auto& hit : theirs.hits) EXPECT_EQ(hit.ranking->parts[rank::kTaste].value, 0.0);
  const std::string bought = similar.hits[29].product_id;
  EXPECT_LT(rank_of(mine, bought), rank_of(theirs, bought));

  EXPECT_TRUE(engine_->forget_user("taste-user"));
  EXPECT_FALSE(engine_->user("taste-user"));
  EXPECT_FALSE(engine_->forget_user("taste-user"));
  for (const auto& hit : find(query(2), 30, &personal).hits)
    EXPECT_EQ(hit.ranking->parts[rank::kTaste].value, 0.0);
  // Their carts no longer make those products popular either.
  const auto after = find(query(2), 30, &anonymous);
  EXPECT_NEAR(after.hits[rank_of(after, bought)].ranking->parts[rank::kPopularity].value, 0.0, 1e-9);
}

TEST_F(RankingEngine, ProfilesAreStoredListedAndDeleted) {
  auto names = [] {
    std::vector<std::string> out;
    for (const auto& p : engine_->ranking_profiles()) out.push_back(p.name);
    return out;
  };
  EXPECT_EQ(engine_->ranking_profile("default").weights, rank::default_profile().weights);
  auto edited = rank::default_profile();
  edited.weights[rank::kPopularity] = 0.7;
  engine_->put_ranking_profile(edited);
  EXPECT_DOUBLE_EQ(engine_->ranking_profile("default").weights[rank::kPopularity], 0.7);
  auto bargains = rank::parse_profile("bargains", R"({"weights": {"price": 1}})");
  engine_->put_ranking_profile(bargains);
  auto listed = names();
  ASSERT_GE(listed.size(), 3u);
  EXPECT_EQ(listed[0], "default");
  EXPECT_EQ(listed[1], "visual");
  EXPECT_NE(std::find(listed.begin(), listed.end(), "bargains"), listed.end());

  EXPECT_TRUE(engine_->delete_ranking_profile("bargains"));
  EXPECT_FALSE(engine_->delete_ranking_profile("bargains"));
  auto missing = error_from([] { engine_->ranking_profile("bargains"); });
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->kind(), ErrorKind::kNotFound);
  search::RankRequest request;
  request.profile = "bargains";
  auto search_error = error_from([&] { engine_->search_files({query(0)}, 5, true, {}, &request); });
  ASSERT_TRUE(search_error);
  EXPECT_EQ(search_error->kind(), ErrorKind::kNotFound);

  EXPECT_TRUE(engine_->delete_ranking_profile("default"));  // back to the built-in one
  EXPECT_EQ(engine_->ranking_profile("default").weights, rank::default_profile().weights);
  auto fixed = error_from([] { engine_->put_ranking_profile(rank::visual_profile()); });
  ASSERT_TRUE(fixed);
  EXPECT_EQ(fixed->kind(), ErrorKind::kInvalidInput);
}

TEST_F(RankingEngine, EventsSurviveReopeningTheDataFolder) {
  const std::string id = engine_->product_ids().at(7);
  ASSERT_EQ(engine_->record_events({event(catalog::EventType::kPurchase, id, "durable-user")}).accepted, 1u);
  auto store = catalog::Store::open(root_->path() / "data" / "catalog.db");
  ASSERT_TRUE(store->popularity(id));
  EXPECT_GE(store->popularity(id)->score, catalog::event_weight(catalog::EventType::kPurchase) - 1e-9);
  ASSERT_EQ(store->events_of("durable-user").size(), 1u);
  EXPECT_EQ(store->events_of("durable-user")[0].product_id, id);
  EXPECT_TRUE(store->first_seen(id));
}

// Ranking reads popularity from memory (search/behaviour_board.h), not the store: it
// must follow every way the store's popularity changes, and be there after a reopen.
TEST_F(RankingEngine, PopularityFollowsEventsForgettingDeletionAndReopening) {
  const std::string id = engine_->product_ids().at(11);
  const auto photo = engine_->image_source(id, 0);
  ASSERT_TRUE(photo);
  const search::RankRequest ranked;  // the default profile
  auto popularity_in = [&](const search::Engine& engine) {
    auto result = engine.search_files({*photo}, 5, /*with_details=*/false, {}, &ranked).at(0);
    for (const auto& hit : result.hits) {
      if (hit.product_id == id && hit.ranking) return hit.ranking->parts[rank::kPopularity].value;
    }
    ADD_FAILURE() << id << " not found by its own photo";
    return -1.0;
  };
  EXPECT_EQ(popularity_in(*engine_), 0.0);
  std::vector<catalog::Event> bought(3, event(catalog::EventType::kPurchase, id, "board-user"));
  ASSERT_EQ(engine_->record_events(bought).accepted, 3u);
  EXPECT_GT(popularity_in(*engine_), 0.0);
  {
    search::OpenOptions open;
    open.model = search::kPixelsModel;
    const auto reopened = search::Engine::open(root_->path() / "data", open);
    EXPECT_GT(popularity_in(*reopened), 0.0) << "read from the store at open";
  }
  ASSERT_TRUE(engine_->forget_user("board-user"));
  EXPECT_NEAR(popularity_in(*engine_), 0.0, 1e-9) << "forgetting takes the shopper's purchases back";

  ASSERT_EQ(engine_->record_events(bought).accepted, 3u);
  const auto entry = entry_of(id);
  ASSERT_EQ(engine_->delete_products({id}), 1u);
  EXPECT_EQ(engine_->apply({entry}, root_->path() / "demo", {}).products_added, 1u);
  EXPECT_EQ(popularity_in(*engine_), 0.0) << "a deleted product's popularity went with it";
  ASSERT_TRUE(engine_->forget_user("board-user"));
}

TEST_F(RankingEngine, AttributeTasteLearnsBrandMaterialAndPriceBandDecaysAndIsForgotten) {
  search::RankRequest visual;
  visual.profile = "visual";
  const auto similar = find(query(3), 40, &visual);
  ASSERT_EQ(similar.hits.size(), 40u);
  // The brand of the 30th result: the shopper bought other products of it long ago and
  // viewed products of another brand today.
  const std::string old_brand = similar.hits[29].product.brand;
  std::string new_brand;
  std::vector<std::string> old_brand_products, new_brand_products;
  for (const auto& id : engine_->product_ids()) {
    const auto p = *engine_->product(id);
    if (new_brand.empty() && p.brand != old_brand) new_brand = p.brand;
    if (p.brand == old_brand && old_brand_products.size() < 3) old_brand_products.push_back(id);
    if (!new_brand.empty() && p.brand == new_brand && new_brand_products.size() < 3)
      new_brand_products.push_back(id);
  }
  ASSERT_EQ(old_brand_products.size(), 3u);
  ASSERT_EQ(new_brand_products.size(), 3u);
  constexpr std::int64_t kDay = 86400000;
  std::vector<catalog::Event> history;
  for (const auto& id : old_brand_products)
    history.push_back(event(catalog::EventType::kPurchase, id, "attribute-user", 60 * kDay));
  ASSERT_EQ(engine_->record_events(history).accepted, 3u);

  auto store = catalog::Store::open(root_->path() / "data" / "catalog.db");
  auto weight_of = [&](const std::string& kind, const std::string& value) {
    for (const auto& a : store->affinities("attribute-user")) {
      if (a.kind == kind && a.value == value) {
        return a.weight * catalog::decay_factor(a.at_ms, catalog::unix_now_ms(), catalog::kTasteHalfLifeDays);
      }
    }
    return 0.0;
  };
  // Three purchases 60 days ago, at a half-life of 14 days: 30 * 2^(-60/14) now.
  EXPECT_NEAR(weight_of("brand", old_brand), 30 * std::exp2(-60.0 / 14.0), 1e-3);
  const auto first = *engine_->product(old_brand_products[0]);
  EXPECT_GT(weight_of("material", first.attributes.at("material")), 0.0);
  EXPECT_GT(weight_of("price_band", rank::price_band(first.price)), 0.0);

  // Attributes alone (share 1), taste weighted up: more of the long-ago brand in the top 10 than by look.
  auto attributes_only = rank::default_profile();
  attributes_only.name = "attributes-only";
  attributes_only.taste_attribute_share = 1;
  attributes_only.weights[rank::kTaste] = 3;
  engine_->put_ranking_profile(attributes_only);
  search::RankRequest personal;
  personal.profile = attributes_only.name;
  personal.user_id = "attribute-user";
  personal.depth = 40;
  auto mine = find(query(3), 10, &personal);
  ASSERT_EQ(mine.hits.size(), 10u);
  ASSERT_TRUE(mine.hits[0].ranking->taste_affinity);
  auto of_brand = [&](const std::vector<search::ProductHit>& hits) {
    return std::count_if(hits.begin(), hits.begin() + 10,
                         [&](const search::ProductHit& h) { return h.product.brand == old_brand; });
  };
  EXPECT_GT(of_brand(mine.hits), of_brand(similar.hits));
  EXPECT_LT(rank_of(mine, similar.hits[29].product_id), 10u);

  // Three views today outweigh three purchases 60 days ago (3 > 1.55): the newer brand's share is larger.
  std::vector<catalog::Event> today;
  for (const auto& id : new_brand_products)
    today.push_back(event(catalog::EventType::kView, id, "attribute-user"));
  ASSERT_EQ(engine_->record_events(today).accepted, 3u);
  EXPECT_NEAR(weight_of("brand", new_brand), 3.0, 1e-3);
  EXPECT_GT(weight_of("brand", new_brand), weight_of("brand", old_brand));

  EXPECT_TRUE(engine_->forget_user("attribute-user"));
  EXPECT_TRUE(store->affinities("attribute-user").empty());
  EXPECT_FALSE(engine_->user("attribute-user"));
  for (const auto& hit : find(query(3), 10, &personal).hits) {
    EXPECT_EQ(hit.ranking->parts[rank::kTaste].value, 0.0);
    EXPECT_FALSE(hit.ranking->taste_affinity);
  }
  engine_->delete_ranking_profile(attributes_only.name);
}

// ---- the behaviour simulator and the offline ranking evaluation (search/behaviour_sim.h) ----

class SimulatedShoppers : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new TempDir();
    demo::write_demo_catalog(root_->path() / "demo",
                             {.dataset_dir = {}, .max_products = 1500, .max_queries = 100});
    search::OpenOptions open;
    open.model = search::kPixelsModel;
    engine_ = search::Engine::open(root_->path() / "data", open).release();
    ASSERT_EQ(engine_->ingest(root_->path() / "demo" / "catalog.jsonl", {}).products_added, 1500u);
  }
  static void TearDownTestSuite() {
    delete engine_;
    delete root_;
  }
  static search::RankingEvalReport run(std::uint64_t seed, std::size_t users) {
    search::RankingEvalOptions options;
    options.seed = seed;
    options.users = users;
    options.sessions_per_user = 10;
    options.photos_per_category = 3;
    options.depth = 60;
    return search::evaluate_ranking(*engine_, root_->path() / "demo" / "queries.jsonl", options);
  }
  static TempDir* root_;
  static search::Engine* engine_;
};

TempDir* SimulatedShoppers::root_ = nullptr;
search::Engine* SimulatedShoppers::engine_ = nullptr;

TEST_F(SimulatedShoppers, TheSameSeedGivesTheSameShoppersEventsAndFigures) {
  const auto a = run(11, 30), b = run(11, 30), c = run(12, 30);
  ASSERT_GT(a.history_events, 500u);
  ASSERT_GT(a.scored_sessions, 20u);
  EXPECT_EQ(a.colour_attribute, "material");  // the plain demo catalog has no colour
  EXPECT_EQ(a.event_log, b.event_log);
  EXPECT_EQ(a.history_events, b.history_events);
  EXPECT_NEAR(a.ndcg_visual, b.ndcg_visual, 1e-12);
  EXPECT_NEAR(a.ndcg_business, b.ndcg_business, 1e-9);
  EXPECT_NEAR(a.ndcg_personal, b.ndcg_personal, 1e-9);
  EXPECT_NE(a.event_log, c.event_log);
  // The shoppers were forgotten: nothing of them is left in the folder (a later run of
  // the same seed saw the same catalog, so it drew the same events).
  EXPECT_FALSE(engine_->user("sim-11-0"));
  EXPECT_FALSE(engine_->user("sim-12-0"));
}

TEST_F(SimulatedShoppers, BusinessSignalsAndPersonalTasteBeatTheLookAlone) {
  const auto r = run(21, 150);
  std::cout << "NDCG@10 visual " << r.ndcg_visual << ", business " << r.ndcg_business << ", personal "
            << r.ndcg_personal << " (" << r.scored_sessions << " sessions of " << r.users_scored
            << " shoppers)\n";
  EXPECT_GT(r.business_over_visual.mean - r.business_over_visual.ci95, 0.0);
  EXPECT_GT(r.personal_over_business.mean - r.personal_over_business.ci95, 0.0)
      << "taste must lift what the shopper engages with next, beyond popularity and rating";
  EXPECT_GT(r.ndcg_personal, r.ndcg_visual);
}

}  // namespace
}  // namespace lookalike
