// Filtered search against a brute-force reference: every product's vectors
// embedded independently, every product checked with Filter::matches, the
// best-scoring matches taken. The engine must agree at every selectivity, with
// the exact scan, the flat index and the HNSW graph restricted to the matches.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "catalog/event.h"
#include "catalog/product.h"
#include "catalog/text.h"
#include "common/error.h"
#include "embed/embedder.h"
#include "filter/filter.h"
#include "image/image.h"
#include "rank/rank.h"
#include "search/demo_catalog.h"
#include "search/engine.h"
#include "support/test_support.h"

namespace lookalike::search {
namespace {

namespace fs = std::filesystem;
using lookalike::testing::contains;
using lookalike::testing::error_from;
using lookalike::testing::TempDir;

constexpr std::size_t kProducts = 2000;
constexpr int kK = 10;

// Built once beside the test binary and only read (ctest runs each test in its own process).
fs::path shared_catalog() {
  const fs::path dir = fs::read_symlink("/proc/self/exe").parent_path() / "search-test-demo-2000";
  if (fs::exists(dir / "catalog.jsonl")) return dir;
  const fs::path tmp = dir.string() + ".tmp-" + std::to_string(::getpid());
  demo::write_demo_catalog(tmp, {.dataset_dir = {}, .max_products = kProducts, .max_queries = 30});
  std::error_code ec;
  fs::rename(tmp, dir, ec);
  if (ec) fs::remove_all(tmp, ec);
  return dir;
}

// The first `lines` entries of the shared demo catalog, for tests that need a small
// engine of their own to write to.
std::vector<catalog::CatalogEntry> first_demo_entries(std::size_t lines) {
  std::vector<catalog::CatalogEntry> entries;
  catalog::read_catalog(
      shared_catalog() / "catalog.jsonl", {},
      [&](std::size_t line, catalog::CatalogEntry&& e) {
        if (line <= lines) entries.push_back(std::move(e));
      },
      [](std::size_t, const std::string&) {});
  return entries;
}

// The engine's raw-pixel baseline, rebuilt here so the reference embeds independently.
image::InputSpec pixel_spec() {
  image::InputSpec spec;
  spec.width = 28;
  spec.height = 28;
  spec.channels = 1;
  spec.mean = {0.f};
  spec.stddev = {1.f};
  return spec;
}

struct Reference {
  std::vector<catalog::Product> products;
  std::vector<std::vector<float>> vectors;  // one per product (the demo has one image each)
  std::vector<std::vector<float>> scores;   // [query][product]: inner products, in double precision
};

class FilteredSearchTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new TempDir();
    const fs::path demo = shared_catalog();
    OpenOptions open;
    open.model = kPixelsModel;
    flat_ = Engine::open(root_->path() / "flat", open).release();
    flat_->ingest(demo / "catalog.jsonl", {});
    // The same stored vectors under an HNSW graph: copy the store, let the index be rebuilt.
    fs::create_directories(root_->path() / "hnsw");
    fs::copy_file(root_->path() / "flat" / "catalog.db", root_->path() / "hnsw" / "catalog.db");
    open.index_factory = "HNSW32";
    // A miniature of the default (200,000 of a 1,000,000-vector catalog): filters
    // passing more than a quarter of the vectors go through the graph.
    open.exact_scan_max_vectors = kProducts / 4;
    hnsw_ = Engine::open(root_->path() / "hnsw", open).release();

    reference_ = new Reference();
    auto embedder = embed::pixel_embedder(pixel_spec());
    catalog::read_catalog(
        demo / "catalog.jsonl", {},
        [&](std::size_t, catalog::CatalogEntry&& e) {
          std::vector<float> v(static_cast<std::size_t>(embedder->info().dim));
          embedder->embed({image::load_file(demo / e.product.images.at(0), {})}, v.data());
          reference_->products.push_back(std::move(e.product));
          reference_->vectors.push_back(std::move(v));
        },
        [](std::size_t, const std::string& m) { FAIL() << m; });
    // Queries: demo query photos (unseen), embedded the same way.
    for (const auto& entry : fs::directory_iterator(demo / "queries")) {
      std::vector<float> v(static_cast<std::size_t>(embedder->info().dim));
      embedder->embed({image::load_file(entry.path(), {})}, v.data());
      queries_->push_back(std::move(v));
    }
    ASSERT_GE(queries_->size(), 20u);
    for (const auto& q : *queries_) {
      std::vector<float> row;
      for (const auto& v : reference_->vectors) {
        double dot = 0;
        for (std::size_t j = 0; j < v.size(); ++j) dot += double(q[j]) * v[j];
        row.push_back(static_cast<float>(dot));
      }
      reference_->scores.push_back(std::move(row));
    }
  }

  static void TearDownTestSuite() {
    delete flat_;
    delete hnsw_;
    delete reference_;
    delete root_;
  }

  // The brute-force answer: ids of the k best products passing the filter, by
  // the scores of every product for every query (computed once, below).
  static std::vector<std::string> reference_top(std::size_t query, const filter::Filter* f, int k) {
    std::vector<std::pair<float, std::string>> scored;
    for (std::size_t i = 0; i < reference_->products.size(); ++i) {
      if (f && !f->matches(reference_->products[i])) continue;
      scored.emplace_back(reference_->scores[query][i], reference_->products[i].id);
    }
    std::sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    std::vector<std::string> ids;
    for (std::size_t i = 0; i < scored.size() && ids.size() < static_cast<std::size_t>(k); ++i) {
      ids.push_back(scored[i].second);
    }
    return ids;
  }

  static std::size_t reference_count(const filter::Filter& f) {
    std::size_t n = 0;
    for (const auto& p : reference_->products) n += f.matches(p);
    return n;
  }

  struct Agreement {
    double recall = 0;     // mean recall@k against the reference
    bool complete = true;  // every query got min(k, matching) results
    bool all_pass = true;  // every result passes the filter
  };

  static Agreement agreement(const Engine& engine, const filter::Filter& f, FilterStrategy strategy) {
    SearchOptions options;
    options.filter = f;
    options.strategy = strategy;
    Agreement a;
    std::map<std::string, const catalog::Product*> by_id;
    for (const auto& p : reference_->products) by_id[p.id] = &p;
    double total = 0;
    for (std::size_t qi = 0; qi < queries_->size(); ++qi) {
      const auto& q = (*queries_)[qi];
      auto expected = reference_top(qi, &f, kK);
      auto got = engine.search_vectors(q.data(), 1, kK, false, options).front();
      a.complete = a.complete && got.hits.size() == expected.size();
      std::set<std::string> want(expected.begin(), expected.end());
      std::size_t found = 0;
      for (const auto& hit : got.hits) {
        found += want.count(hit.product_id);
        a.all_pass = a.all_pass && f.matches(*by_id.at(hit.product_id));
      }
      total += expected.empty() ? 1.0 : double(found) / double(expected.size());
    }
    a.recall = total / double(queries_->size());
    return a;
  }

  static TempDir* root_;
  static Engine* flat_;
  static Engine* hnsw_;
  static Reference* reference_;
  static std::vector<std::vector<float>>* queries_;
};

TempDir* FilteredSearchTest::root_ = nullptr;
Engine* FilteredSearchTest::flat_ = nullptr;
Engine* FilteredSearchTest::hnsw_ = nullptr;
Reference* FilteredSearchTest::reference_ = nullptr;
std::vector<std::vector<float>>* FilteredSearchTest::queries_ = new std::vector<std::vector<float>>();

// Filters from everything to a single product, built from the catalog's own values.
std::vector<std::string> filters_of_every_selectivity(const std::vector<catalog::Product>& products) {
  const auto& a = products[0];
  const auto& b = products[1];
  const auto& c = products[7];
  char price[64];
  std::snprintf(price, sizeof price, "%.17g", c.price);
  return {
      "price >= 0",                                                                   // ~100%
      "NOT category = \"" + a.category + "\"",                                        // ~90%
      "in_stock AND rating >= 3",                                                     // ~55%
      "category = \"" + a.category + "\"",                                            // ~10%
      "category IN (\"" + a.category + "\", \"" + b.category + "\") AND price < 30",  // a few %
      "category = \"" + a.category + "\" AND brand = \"" + a.brand + "\"",            // ~1%
      "brand = \"" + b.brand + "\" AND category = \"" + b.category + "\" AND attributes.material = \"" +
          b.attributes.at("material") + "\"",                                // ~0.2%
      "price = " + std::string(price) + " AND brand = \"" + c.brand + "\"",  // one product: 0.05%
  };
}

TEST_F(FilteredSearchTest, EveryStrategyAgreesWithBruteForceAtEverySelectivity) {
  std::size_t smallest = kProducts;
  for (const auto& text : filters_of_every_selectivity(reference_->products)) {
    auto f = filter::Filter::parse(text);
    const std::size_t matching = reference_count(f);
    ASSERT_GT(matching, 0u) << text;
    smallest = std::min(smallest, matching);
    SCOPED_TRACE(text + " (" + std::to_string(matching) + " of " + std::to_string(kProducts) + " products)");
    for (auto [engine, strategy, name] : {std::tuple{flat_, FilterStrategy::kAuto, "flat auto"},
                                          std::tuple{flat_, FilterStrategy::kIndex, "flat index"},
                                          std::tuple{hnsw_, FilterStrategy::kExact, "hnsw exact"},
                                          std::tuple{hnsw_, FilterStrategy::kIndex, "hnsw index"},
                                          std::tuple{hnsw_, FilterStrategy::kAuto, "hnsw auto"}}) {
      auto a = agreement(*engine, f, strategy);
      EXPECT_TRUE(a.complete) << name << ": a query returned fewer than min(k, matching) products";
      EXPECT_TRUE(a.all_pass) << name << ": a result does not pass the filter";
      // Exact ways must agree exactly (up to float ties). Where the automatic
      // choice walks the graph (broad filters) its answer is approximate and
      // FAISS builds the graph in parallel, so it differs from run to run: one
      // CI run under ASan saw 0.9967. It must stay well above the 0.95 target.
      // Forced onto the graph, a selective filter that follows the look (a
      // category) loses recall: the walk stays near the photo's own neighbours
      // (see bench/RESULTS.md).
      const std::string way = name;
      if (way == "hnsw auto") {
        EXPECT_GE(a.recall, 0.99) << name;
      } else if (way != "hnsw index") {
        EXPECT_GE(a.recall, 0.999) << name;
      } else if (matching * 4 > kProducts) {
        EXPECT_GE(a.recall, 0.95) << name;
      }
    }
  }
  EXPECT_EQ(smallest, 1u);  // down to a single product (0.05% of the catalog)
}

TEST_F(FilteredSearchTest, RandomFiltersAgreeWithBruteForce) {
  std::mt19937 rng(11);
  std::set<std::string> categories, brands, materials;
  for (const auto& p : reference_->products) {
    categories.insert(p.category);
    brands.insert(p.brand);
    materials.insert(p.attributes.at("material"));
  }
  auto pick = [&](const std::set<std::string>& s) { return *std::next(s.begin(), rng() % s.size()); };
  auto leaf = [&]() -> std::string {
    switch (rng() % 6) {
      case 0:
        return "category = \"" + pick(categories) + "\"";
      case 1:
        return "brand IN (\"" + pick(brands) + "\", \"" + pick(brands) + "\")";
      case 2:
        return "price < " + std::to_string(10 + rng() % 150);
      case 3:
        return "rating >= " + std::to_string(2.5 + (rng() % 25) / 10.0);
      case 4:
        return "attributes.material != \"" + pick(materials) + "\"";
      default:
        return "in_stock";
    }
  };
  for (int trial = 0; trial < 10; ++trial) {
    std::string text = leaf();
    for (int more = rng() % 3; more > 0; --more)
      text = "(" + text + (rng() % 3 ? " AND " : " OR ") + leaf() + ")";
    if (rng() % 4 == 0) text = "NOT " + text;
    auto f = filter::Filter::parse(text);
    SCOPED_TRACE(text + " (" + std::to_string(reference_count(f)) + " products)");
    auto exact = agreement(*hnsw_, f, FilterStrategy::kExact);
    EXPECT_TRUE(exact.complete && exact.all_pass);
    EXPECT_GE(exact.recall, 0.999);
    auto automatic = agreement(*hnsw_, f, FilterStrategy::kAuto);
    EXPECT_TRUE(automatic.complete && automatic.all_pass);
    EXPECT_GE(automatic.recall, 0.95);
  }
}

TEST_F(FilteredSearchTest, SimilarProductsSortAndFacetsWorkOnTheFilteredCandidates) {
  {
    SearchOptions none;
    none.filter = filter::Filter::parse("brand = \"no such brand\"");
    auto r = flat_->search_vectors(queries_->front().data(), 1, kK, false, none).front();
    EXPECT_TRUE(r.hits.empty());
    EXPECT_EQ(r.matched, 0u);
  }
  {
    // More like this: the filter holds and the product itself is left out.
    const auto& p = reference_->products[3];
    SearchOptions like;
    like.filter = filter::Filter::parse("category = \"" + p.category + "\" AND price < 40");
    auto r = flat_->similar_products(p.id, kK, true, like);
    ASSERT_EQ(r.hits.size(), static_cast<std::size_t>(kK));
    for (const auto& hit : r.hits) {
      EXPECT_NE(hit.product_id, p.id);
      EXPECT_EQ(hit.product.category, p.category);
      EXPECT_LT(hit.product.price, 40);
    }
  }
  SearchOptions options;
  options.sort = Sort::kPriceAsc;
  options.depth = 50;
  options.facets = true;
  options.facet_options.attributes = {"material"};
  const auto& q = queries_->front();
  auto best = flat_->search_vectors(q.data(), 1, 50, true, {}).front();
  auto sorted = flat_->search_vectors(q.data(), 1, kK, true, options).front();
  ASSERT_EQ(sorted.hits.size(), static_cast<std::size_t>(kK));
  // The ten cheapest of the 50 best matches, cheapest first.
  std::vector<double> prices;
  for (const auto& h : best.hits) prices.push_back(h.product.price);
  std::sort(prices.begin(), prices.end());
  for (int i = 0; i < kK; ++i) EXPECT_EQ(sorted.hits[i].product.price, prices[i]);
  ASSERT_TRUE(sorted.facets.has_value());
  std::size_t categories = 0, buckets = 0, materials = 0;
  for (const auto& v : sorted.facets->category) categories += v.count;
  for (const auto& b : sorted.facets->price) buckets += b.count;
  for (const auto& v : sorted.facets->attributes.at("material")) materials += v.count;
  EXPECT_EQ(categories, 50u);  // the facet set is the candidate set, not the page
  EXPECT_EQ(buckets, 50u);
  EXPECT_EQ(materials, 50u);
  // Choosing a facet value narrows the results to it.
  const auto& chosen = sorted.facets->category.back();
  SearchOptions narrowed;
  narrowed.filter = filter::Filter::parse("category = \"" + chosen.value + "\"");
  auto r = flat_->search_vectors(q.data(), 1, kK, true, narrowed).front();
  ASSERT_FALSE(r.hits.empty());
  for (const auto& h : r.hits) EXPECT_EQ(h.product.category, chosen.value);

  SearchOptions by_rating;
  by_rating.sort = Sort::kRating;
  auto rating = flat_->search_vectors(q.data(), 1, kK, true, by_rating).front();
  for (std::size_t i = 1; i < rating.hits.size(); ++i) {
    EXPECT_GE(rating.hits[i - 1].product.rating, rating.hits[i].product.rating);
  }
  EXPECT_EQ(parse_sort("price_desc"), Sort::kPriceDesc);
  auto e = error_from([] { parse_sort("cheapest"); });
  ASSERT_TRUE(e);
  EXPECT_TRUE(contains(e->what(), "price_asc"));
}

// ---- Text search, alone and with a photo ----

// The demo's titles are brand, adjective, category: a brand word or a material word
// occurs only in the products of that brand or material, so text and filter agree.
TEST_F(FilteredSearchTest, PhotoWithTextReturnsOnlyMatchingProductsInLookOrder) {
  const std::pair<std::string, std::string> cases[] = {
      {"Northwind", "brand = \"Northwind\""},
      {"leather", "attributes.material = \"leather\""},
      {"northwind LEATHER", "brand = \"Northwind\" AND attributes.material = \"leather\""},
  };
  for (const auto& [text, equivalent] : cases) {
    SearchOptions by_text;
    by_text.text = catalog::TextQuery::parse(text, {}, /*prefix=*/false);
    const auto f = filter::Filter::parse(equivalent);
    for (std::size_t qi = 0; qi < queries_->size(); ++qi) {
      const auto& q = (*queries_)[qi];
      auto got = flat_->search_vectors(q.data(), 1, kK, false, by_text).front();
      std::vector<std::string> ids;
      for (const auto& hit : got.hits) {
        ids.push_back(hit.product_id);
        ASSERT_TRUE(hit.text_relevance.has_value());
        EXPECT_GT(*hit.text_relevance, 0);
      }
      // Exactly the brute-force filtered answer: k results, in look order.
      EXPECT_EQ(ids, reference_top(qi, &f, kK)) << text << ", query " << qi;
      EXPECT_EQ(got.matched, reference_count(f)) << text;
      // The same through the HNSW graph, with the text applied inside the search.
      auto graph = hnsw_->search_vectors(q.data(), 1, kK, false, by_text).front();
      EXPECT_EQ(graph.hits.size(), static_cast<std::size_t>(kK));
    }
  }
  // Text and filter together; text that matches nothing.
  SearchOptions both;
  both.text = catalog::TextQuery::parse("leather");
  both.filter = filter::Filter::parse("price < 60");
  const auto f = filter::Filter::parse("attributes.material = \"leather\" AND price < 60");
  auto got = flat_->search_vectors(queries_->front().data(), 1, kK, false, both).front();
  std::vector<std::string> ids;
  for (const auto& hit : got.hits) ids.push_back(hit.product_id);
  EXPECT_EQ(ids, reference_top(0, &f, kK));
  SearchOptions nothing;
  nothing.text = catalog::TextQuery::parse("zeppelin");
  got = flat_->search_vectors(queries_->front().data(), 1, kK, false, nothing).front();
  EXPECT_TRUE(got.hits.empty());
  EXPECT_EQ(got.matched, 0u);
  // More like this takes text too.
  const auto& p = reference_->products[7];
  auto like = flat_->similar_products(p.id, kK, true, both);
  ASSERT_EQ(like.hits.size(), static_cast<std::size_t>(kK));
  for (const auto& hit : like.hits) {
    EXPECT_EQ(hit.product.attributes.at("material"), "leather");
    EXPECT_LT(hit.product.price, 60);
  }
}

TEST_F(FilteredSearchTest, TextAloneIsRankedByRelevanceWithFiltersSortAndFacets) {
  SearchOptions options;
  options.text = catalog::TextQuery::parse("ankle boots", {}, /*prefix=*/false);
  auto r = flat_->search_text(kK, true, options);
  const auto f = filter::Filter::parse("category = \"Ankle boot\"");
  EXPECT_EQ(r.matched, reference_count(f));
  EXPECT_TRUE(r.text_only);
  EXPECT_EQ(r.strategy, "text");
  ASSERT_EQ(r.hits.size(), static_cast<std::size_t>(kK));
  for (std::size_t i = 0; i < r.hits.size(); ++i) {
    EXPECT_EQ(r.hits[i].product.category, "Ankle boot");
    EXPECT_EQ(r.hits[i].similarity, 0.f);  // no photo
    EXPECT_FLOAT_EQ(r.hits[i].score, static_cast<float>(*r.hits[i].text_relevance));
    if (i > 0) EXPECT_GE(r.hits[i - 1].score, r.hits[i].score);
  }
  // Search as you type: the last word as a prefix.
  SearchOptions typing;
  typing.text = catalog::TextQuery::parse("northw");
  auto partial = flat_->search_text(kK, true, typing);
  EXPECT_EQ(partial.matched, reference_count(filter::Filter::parse("brand = \"Northwind\"")));
  // With a filter, a sort by price and facets over the depth most relevant.
  options.filter = filter::Filter::parse("price < 80");
  options.sort = Sort::kPriceAsc;
  options.depth = 40;
  options.facets = true;
  options.facet_options.attributes = {"material"};
  auto sorted = flat_->search_text(kK, true, options);
  EXPECT_EQ(sorted.matched,
            reference_count(filter::Filter::parse("category = \"Ankle boot\" AND price < 80")));
  ASSERT_EQ(sorted.hits.size(), static_cast<std::size_t>(kK));
  for (std::size_t i = 0; i < sorted.hits.size(); ++i) {
    EXPECT_LT(sorted.hits[i].product.price, 80);
    if (i > 0) EXPECT_LE(sorted.hits[i - 1].product.price, sorted.hits[i].product.price);
  }
  ASSERT_TRUE(sorted.facets.has_value());
  std::size_t counted = 0;
  for (const auto& v : sorted.facets->category) counted += v.count;
  EXPECT_EQ(counted, 40u);
  // Pages: k + offset results, the first k the same as a search for k.
  auto first = flat_->search_text(5, false, typing);
  auto longer = flat_->search_text(10, false, typing);
  for (std::size_t i = 0; i < first.hits.size(); ++i)
    EXPECT_EQ(first.hits[i].product_id, longer.hits[i].product_id);
  // No text is a caller error.
  auto e = error_from([&] { flat_->search_text(kK, false, SearchOptions{}); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput);
}

TEST_F(FilteredSearchTest, TheProfileWeighsTextRelevanceAndExplainAddsUp) {
  RankRequest ranked;  // the default profile
  SearchOptions with_text;
  with_text.text = catalog::TextQuery::parse("northwind");
  const auto& q = queries_->front();
  auto r = flat_->search_vectors(q.data(), 1, kK, true, with_text, &ranked).front();
  ASSERT_EQ(r.hits.size(), static_cast<std::size_t>(kK));
  const auto profile = rank::default_profile();
  for (const auto& hit : r.hits) {
    EXPECT_EQ(hit.product.brand, "Northwind");
    ASSERT_TRUE(hit.ranking.has_value());
    const auto& text = hit.ranking->parts[rank::kText];
    EXPECT_EQ(text.weight, profile.weights[rank::kText]);
    EXPECT_GT(text.value, 0);
    EXPECT_LE(text.value, 1);
    EXPECT_EQ(hit.ranking->parts[rank::kVisual].weight, profile.weights[rank::kVisual]);
    double sum = 0;
    for (const auto& part : hit.ranking->parts) sum += part.contribution();
    EXPECT_NEAR(sum, hit.score, 1e-5);
  }
  // Text alone: the text relevance takes visual's place and weight.
  SearchOptions alone;
  alone.text = catalog::TextQuery::parse("northwind leather");
  auto t = flat_->search_text(kK, true, alone, &ranked);
  ASSERT_FALSE(t.hits.empty());
  for (const auto& hit : t.hits) {
    ASSERT_TRUE(hit.ranking.has_value());
    EXPECT_EQ(hit.ranking->parts[rank::kText].weight, profile.weights[rank::kVisual]);
    EXPECT_EQ(hit.ranking->parts[rank::kVisual].weight, 0);
    EXPECT_EQ(hit.product.brand, "Northwind");
    EXPECT_EQ(hit.product.attributes.at("material"), "leather");
  }
  // Without the text component the order among the matches is the look order.
  RankRequest visual;
  visual.profile = "visual";
  auto look = flat_->search_vectors(q.data(), 1, kK, false, with_text, &visual).front();
  for (std::size_t i = 1; i < look.hits.size(); ++i) EXPECT_GE(look.hits[i - 1].score, look.hits[i].score);
}

TEST(TextSearchWrites, ImportsUpdatesAndDeletesAreSearchableAtOnce) {
  TempDir root;
  const fs::path demo = shared_catalog();
  auto entries = first_demo_entries(30);
  OpenOptions open;
  open.model = kPixelsModel;
  auto engine = Engine::open(root.path() / "data", open);
  engine->apply(entries, demo, {});
  auto found = [&](const std::string& text) {
    SearchOptions options;
    options.text = catalog::TextQuery::parse(text, {}, false);
    std::vector<std::string> ids;
    for (const auto& hit : engine->search_text(50, false, options).hits) ids.push_back(hit.product_id);
    std::sort(ids.begin(), ids.end());
    return ids;
  };
  EXPECT_TRUE(found("zeppelin").empty());
  auto changed = entries[3];
  changed.product.title = "Zeppelin limited edition";
  changed.product.attributes["color"] = "Bordeaux";
  auto report = engine->apply({changed}, demo, {});
  EXPECT_EQ(report.images_embedded, 0u);
  EXPECT_EQ(found("zeppelin"), std::vector<std::string>{changed.product.id});
  EXPECT_EQ(found("bordeaux edition"), std::vector<std::string>{changed.product.id});
  // A photo search with the new words finds it too.
  std::vector<float> q(static_cast<std::size_t>(engine->dim()));
  {
    auto embedder = embed::pixel_embedder(pixel_spec());
    embedder->embed({image::load_file(demo / entries[0].product.images[0], {})}, q.data());
  }
  SearchOptions with_text;
  with_text.text = catalog::TextQuery::parse("zeppelin");
  auto r = engine->search_vectors(q.data(), 1, 5, false, with_text).front();
  ASSERT_EQ(r.hits.size(), 1u);
  EXPECT_EQ(r.hits[0].product_id, changed.product.id);
  // A deletion line and a delete call.
  catalog::CatalogEntry deletion;
  deletion.deleted = true;
  deletion.product.id = changed.product.id;
  engine->apply({deletion}, demo, {});
  EXPECT_TRUE(found("zeppelin").empty());
  EXPECT_TRUE(engine->search_vectors(q.data(), 1, 5, false, with_text).front().hits.empty());
  const std::string brand = entries[0].product.brand;
  const auto before = found(brand);
  ASSERT_FALSE(before.empty());
  engine->delete_products({entries[0].product.id});
  auto after = found(brand);
  EXPECT_EQ(after.size() + 1, before.size());
  EXPECT_EQ(std::count(after.begin(), after.end(), entries[0].product.id), 0);
}

TEST(FilteredSearchWrites, PriceAndStockChangesAreSearchableAtOnceWithoutReembedding) {
  TempDir root;
  const fs::path demo = shared_catalog();
  // A small catalog of its own: this test writes.
  auto entries = first_demo_entries(50);
  OpenOptions open;
  open.model = kPixelsModel;
  auto engine = Engine::open(root.path() / "data", open);
  engine->apply(entries, demo, {});
  const std::string id = entries[5].product.id;
  std::vector<float> q(static_cast<std::size_t>(engine->dim()));
  {
    auto embedder = embed::pixel_embedder(pixel_spec());
    embedder->embed({image::load_file(demo / entries[5].product.images[0], {})}, q.data());
  }
  SearchOptions cheap;
  cheap.filter = filter::Filter::parse("price < 1 AND in_stock");
  EXPECT_TRUE(engine->search_vectors(q.data(), 1, 5, false, cheap).front().hits.empty());

  auto changed = entries[5];
  changed.product.price = 0.5;
  changed.product.stock = 3;
  auto report = engine->apply({changed}, demo, {});
  EXPECT_EQ(report.images_embedded, 0u);
  EXPECT_EQ(report.products_updated, 1u);
  auto r = engine->search_vectors(q.data(), 1, 5, false, cheap).front();
  ASSERT_EQ(r.hits.size(), 1u);
  EXPECT_EQ(r.hits[0].product_id, id);
  EXPECT_EQ(r.matched, 1u);

  changed.product.stock = 0;  // sold out: in_stock no longer holds
  engine->apply({changed}, demo, {});
  EXPECT_TRUE(engine->search_vectors(q.data(), 1, 5, false, cheap).front().hits.empty());

  // A deleted product is gone from filtered searches too.
  SearchOptions by_id_price;
  by_id_price.filter = filter::Filter::parse("price < 1");
  ASSERT_EQ(engine->search_vectors(q.data(), 1, 5, false, by_id_price).front().hits.size(), 1u);
  engine->delete_products({id});
  EXPECT_TRUE(engine->search_vectors(q.data(), 1, 5, false, by_id_price).front().hits.empty());

  // A reopened engine builds the same metadata from the store.
  engine.reset();
  auto reopened = Engine::open(root.path() / "data", open);
  SearchOptions all;
  all.filter = filter::Filter::parse("price >= 0");
  EXPECT_EQ(reopened->search_vectors(q.data(), 1, 5, false, all).front().matched, entries.size() - 1);
}

TEST(FilteredSearchOptions, DepthOutsideItsRangeIsRefused) {
  TempDir root;
  OpenOptions open;
  open.model = kPixelsModel;
  auto engine = Engine::open(root.path() / "data", open);
  std::vector<float> q(static_cast<std::size_t>(engine->dim()), 0.f);
  SearchOptions deep;
  deep.depth = Engine::kMaxK + 1;
  auto e = error_from([&] { engine->search_vectors(q.data(), 1, 5, false, deep); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput);
  EXPECT_TRUE(contains(e->what(), "depth"));
}

// ---- variant grouping (SearchOptions::group_variants) ----

// 300 demo products, the first 200 in families of four of one category (so a family's
// variants look alike and meet in one result list), each variant with its own colour,
// size, price and stock; the other 100 without group_id.
class VariantGroupingTest : public ::testing::Test {
 protected:
  static constexpr std::size_t kCatalog = 300, kGrouped = 200, kFamily = 4;

  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const fs::path demo = shared_catalog();
    fs::create_directories(dir_->path() / "catalog" / "images");
    products_ = new std::vector<catalog::Product>();
    std::map<std::string, std::size_t> per_category;
    catalog::read_catalog(
        demo / "catalog.jsonl", {},
        [&](std::size_t, catalog::CatalogEntry&& e) {
          if (products_->size() >= kCatalog) return;
          catalog::Product p = std::move(e.product);
          fs::copy_file(demo / p.images.at(0), dir_->path() / "catalog" / p.images.at(0));
          const std::size_t i = products_->size();
          if (i < kGrouped) {
            const std::size_t n = per_category[p.category]++;
            p.group_id = "fam-" + p.category + "-" + std::to_string(n / kFamily);
            p.attributes["color"] = std::vector<std::string>{"red", "blue", "green", "black"}[n % kFamily];
            p.attributes["size"] = std::to_string(36 + 2 * (i % 5));
            p.stock = static_cast<std::int64_t>(i % 3);
          }
          products_->push_back(std::move(p));
        },
        [](std::size_t, const std::string& m) { FAIL() << m; });
    // Families are complete only when their category had four: drop the group of the rest.
    std::map<std::string, std::size_t> sizes;
    for (const auto& p : *products_) ++sizes[p.group_id];
    std::string lines;
    for (auto& p : *products_) {
      if (!p.group_id.empty() && sizes[p.group_id] < kFamily) p.group_id.clear();
      lines += catalog::to_json_line(p) + "\n";
    }
    lookalike::testing::write_text(dir_->path() / "catalog" / "catalog.jsonl", lines);
    queries_ = new std::vector<image::Image>();
    for (const auto& entry : fs::directory_iterator(demo / "queries")) {
      queries_->push_back(image::load_file(entry.path(), {}));
      if (queries_->size() == 12) break;
    }
  }
  static void TearDownTestSuite() {
    delete dir_;
    delete products_;
    delete queries_;
  }

  // A fresh engine on the catalog (the tests that write get their own).
  static std::unique_ptr<Engine> open_engine(const std::string& name) {
    OpenOptions open;
    open.model = kPixelsModel;
    auto engine = Engine::open(dir_->path() / name, open);
    engine->ingest(dir_->path() / "catalog" / "catalog.jsonl", {});
    return engine;
  }

  static const catalog::Product& product(const std::string& id) {
    for (const auto& p : *products_) {
      if (p.id == id) return p;
    }
    throw std::runtime_error("no product " + id);
  }
  static std::string family(const std::string& id) {
    const auto& p = product(id);
    return p.group_id.empty() ? "own:" + id : p.group_id;
  }
  static std::vector<std::string> members(const std::string& id) {
    std::vector<std::string> out;
    for (const auto& p : *products_) {
      if (family(p.id) == family(id)) out.push_back(p.id);
    }
    return out;  // the catalog is in id order
  }

  static SearchOptions ungrouped() {
    SearchOptions o;
    o.group_variants = false;
    return o;
  }

  static TempDir* dir_;
  static std::vector<catalog::Product>* products_;
  static std::vector<image::Image>* queries_;
};

TempDir* VariantGroupingTest::dir_ = nullptr;
std::vector<catalog::Product>* VariantGroupingTest::products_ = nullptr;
std::vector<image::Image>* VariantGroupingTest::queries_ = nullptr;

TEST_F(VariantGroupingTest, EachFamilyOnceByItsBestVariantWithEveryOtherVariantAsASwatch) {
  auto engine = open_engine("data");
  const RankRequest visual{rank::kVisualProfile, "", {}, 0};
  std::size_t collapsed = 0;
  for (const auto& query : *queries_) {
    // The reference: every product in look order, then the first of each family.
    auto all = engine->search({query}, static_cast<int>(kCatalog), false, ungrouped(), &visual).front();
    ASSERT_EQ(all.hits.size(), kCatalog);
    std::vector<std::string> expected;
    std::set<std::string> seen;
    for (const auto& hit : all.hits) {
      if (seen.insert(family(hit.product_id)).second && expected.size() < 10)
        expected.push_back(hit.product_id);
    }
    auto grouped = engine->search({query}, 10, true, {}, &visual).front();
    std::vector<std::string> got;
    for (const auto& hit : grouped.hits) got.push_back(hit.product_id);
    EXPECT_EQ(got, expected);

    auto plain = engine->search({query}, 10, false, ungrouped(), &visual).front();
    std::set<std::string> plain_families;
    for (const auto& hit : plain.hits) plain_families.insert(family(hit.product_id));
    collapsed += plain.hits.size() - plain_families.size();

    for (const auto& hit : grouped.hits) {
      EXPECT_EQ(hit.product.id, hit.product_id);  // details were asked for
      auto family_members = members(hit.product_id);
      EXPECT_EQ(hit.family_size, family_members.size());
      std::vector<std::string> swatch_ids;
      for (const auto& v : hit.variants) {
        swatch_ids.push_back(v.product_id);
        const auto& p = product(v.product_id);
        EXPECT_EQ(v.color, p.attributes.at("color"));
        EXPECT_EQ(v.size, p.attributes.at("size"));
        EXPECT_DOUBLE_EQ(v.price, p.price);
        EXPECT_EQ(v.currency, p.currency);
        EXPECT_EQ(v.stock, p.stock);
        EXPECT_EQ(v.images, 1u);
        if (v.score) {
          EXPECT_LE(*v.score, hit.score) << v.product_id << " beats " << hit.product_id;
        }
      }
      family_members.erase(std::find(family_members.begin(), family_members.end(), hit.product_id));
      EXPECT_EQ(swatch_ids, family_members);
    }
  }
  // The catalog makes families meet in one list: grouping had something to collapse.
  EXPECT_GT(collapsed, 0u);
}

TEST_F(VariantGroupingTest, KCountsFamiliesAlsoUnderAFilterAndWithReRanking) {
  auto engine = open_engine("data");
  const RankRequest by_default;
  for (const auto& query : *queries_) {
    for (const RankRequest* ranking : {static_cast<const RankRequest*>(nullptr), &by_default}) {
      // 50 grouped families and 100 single products: 60 families exist.
      auto result = engine->search({query}, 60, false, {}, ranking).front();
      std::set<std::string> families;
      for (const auto& hit : result.hits) families.insert(family(hit.product_id));
      EXPECT_EQ(result.hits.size(), 60u);
      EXPECT_EQ(families.size(), 60u);

      // A filter passing only grouped products: as many families as pass, each once.
      SearchOptions filtered;
      filtered.filter = filter::Filter::parse("attributes.color IN (\"red\", \"blue\")");
      auto some = engine->search({query}, 100, false, filtered, ranking).front();
      std::set<std::string> expected_families, got;
      for (const auto& p : *products_) {
        if (filtered.filter->matches(p)) expected_families.insert(family(p.id));
      }
      for (const auto& hit : some.hits) {
        EXPECT_TRUE(filtered.filter->matches(product(hit.product_id)));
        got.insert(family(hit.product_id));
      }
      EXPECT_EQ(some.hits.size(), expected_families.size());
      EXPECT_EQ(got, expected_families);
    }
  }
}

TEST_F(VariantGroupingTest, GroupingOffListsEveryProduct) {
  auto engine = open_engine("data");
  auto all = engine->search({queries_->front()}, static_cast<int>(kCatalog), false, ungrouped()).front();
  std::set<std::string> ids;
  for (const auto& hit : all.hits) {
    ids.insert(hit.product_id);
    EXPECT_TRUE(hit.variants.empty());
  }
  EXPECT_EQ(ids.size(), kCatalog);
  auto grouped = engine->search({queries_->front()}, static_cast<int>(kCatalog), false).front();
  std::set<std::string> families;
  for (const auto& p : *products_) families.insert(family(p.id));
  EXPECT_EQ(grouped.hits.size(), families.size());
  EXPECT_LT(families.size(), kCatalog - kGrouped / 2);
}

// A re-ranked search by photo shows each family by the variant that matches the photo
// best (group_variants, Representative::kBestPhoto); a sibling's business signals move
// the family up, not the photographed variant off its card.
TEST_F(VariantGroupingTest, SiblingsSellingOrSellingOutMoveTheFamilyButNotThePhotographedVariant) {
  auto engine = open_engine("data");
  const RankRequest ranking;  // the default profile: popularity and stock count
  const auto query = queries_->front();
  auto card_of = [&](const QueryResult& result, const std::string& id) -> const ProductHit* {
    for (const auto& hit : result.hits) {
      if (family(hit.product_id) == family(id)) return &hit;
    }
    return nullptr;
  };
  // Families come in the order of their best variant's final score, whichever shows them.
  auto expect_families_by_best_score = [](const QueryResult& result) {
    std::vector<float> best;
    for (const auto& hit : result.hits) {
      float b = hit.score;
      for (const auto& v : hit.variants) b = std::max(b, v.score.value_or(b));
      best.push_back(b);
    }
    EXPECT_TRUE(std::is_sorted(best.rbegin(), best.rend()));
  };
  auto before = engine->search({query}, 10, true, {}, &ranking).front();
  expect_families_by_best_score(before);
  // The candidate variant closest behind the one that shows its family.
  const ProductHit* card = nullptr;
  const Variant* sibling = nullptr;
  for (const auto& hit : before.hits) {
    for (const auto& v : hit.variants) {
      if (v.score && (!sibling || hit.score - *v.score < card->score - *sibling->score)) {
        card = &hit;
        sibling = &v;
      }
    }
  }
  ASSERT_NE(sibling, nullptr) << "no family with two candidate variants in the top 10";
  // 30 purchases add about 0.39 (popularity weight 0.4 x 300 / (300 + 10)).
  ASSERT_LT(card->score - *sibling->score, 0.3f);
  const std::string card_id = card->product_id, sibling_id = sibling->product_id;
  std::vector<catalog::Event> events;
  for (int i = 0; i < 30; ++i) {
    events.push_back(
        {catalog::EventType::kPurchase, sibling_id, "u" + std::to_string(i), catalog::unix_now_ms()});
  }
  ASSERT_EQ(engine->record_events(events).accepted, events.size());
  auto bought = engine->search({query}, 10, true, {}, &ranking).front();
  expect_families_by_best_score(bought);
  const ProductHit* after = card_of(bought, card_id);
  ASSERT_NE(after, nullptr);
  EXPECT_EQ(after->product_id, card_id) << "the photographed variant should still show its family";
  bool sibling_outscores_card = false;
  for (const auto& v : after->variants) {
    if (v.product_id == sibling_id) sibling_outscores_card = v.score && *v.score > after->score;
  }
  EXPECT_TRUE(sibling_outscores_card) << "the bought sibling should score above the card";

  // The photographed variant sells out while the bought sibling is in stock: the
  // variant stays on its family's card, with its stock for the page to show, and is
  // not demoted, since the card offers the sibling (rank.h, stock).
  auto restock = [&](const std::string& id, std::int64_t stock) {
    catalog::CatalogEntry entry{product(id)};
    entry.product.stock = stock;
    engine->apply({entry}, dir_->path() / "catalog", {});
  };
  restock(sibling_id, 5);
  restock(card_id, 0);
  auto out = engine->search({query}, 10, true, {}, &ranking).front();
  expect_families_by_best_score(out);
  const ProductHit* shown = card_of(out, card_id);
  ASSERT_NE(shown, nullptr);
  EXPECT_EQ(shown->product_id, card_id);
  EXPECT_EQ(shown->product.stock, 0);
  ASSERT_TRUE(shown->ranking.has_value());
  EXPECT_EQ(shown->ranking->parts[rank::kStock].contribution(), 0);
  EXPECT_TRUE(shown->ranking->family_in_stock);
  // Not grouped, each product stands alone: the sold-out variant is demoted.
  auto alone = engine->search({query}, static_cast<int>(kCatalog), false, ungrouped(), &ranking).front();
  const auto alone_card = std::find_if(alone.hits.begin(), alone.hits.end(),
                                       [&](const ProductHit& hit) { return hit.product_id == card_id; });
  ASSERT_NE(alone_card, alone.hits.end());
  EXPECT_LT(alone_card->ranking->parts[rank::kStock].contribution(), 0);
  EXPECT_FALSE(alone_card->ranking->family_in_stock);

  // The whole family sells out: now the card is demoted.
  for (const auto& id : members(card_id)) restock(id, 0);
  auto none = engine->search({query}, 10, true, {}, &ranking).front();
  expect_families_by_best_score(none);
  if (const ProductHit* card_now = card_of(none, card_id)) {
    ASSERT_TRUE(card_now->ranking.has_value());
    EXPECT_LT(card_now->ranking->parts[rank::kStock].contribution(), 0);
    EXPECT_FALSE(card_now->ranking->family_in_stock);
  }
}

TEST_F(VariantGroupingTest, MoreLikeThisLeavesOutTheProductsOwnFamily) {
  auto engine = open_engine("data");
  const std::string id = products_->front().id;  // grouped
  ASSERT_GT(members(id).size(), 1u);
  auto grouped = engine->similar_products(id, 20, false);
  EXPECT_EQ(grouped.hits.size(), 20u);
  std::set<std::string> families;
  for (const auto& hit : grouped.hits) {
    EXPECT_NE(family(hit.product_id), family(id)) << hit.product_id;
    families.insert(family(hit.product_id));
  }
  EXPECT_EQ(families.size(), 20u);
  // Without grouping only the product itself is left out: its look-alike siblings may come.
  auto plain = engine->similar_products(id, 20, false, ungrouped());
  for (const auto& hit : plain.hits) EXPECT_NE(hit.product_id, id);
}

TEST_F(VariantGroupingTest, ComparisonListsTheFamilyAndSeesPriceChangesAtOnce) {
  auto engine = open_engine("data");
  const std::string id = products_->front().id;
  auto family_members = members(id);
  auto listed = engine->variants(id);
  std::vector<std::string> listed_ids;
  for (const auto& p : listed) listed_ids.push_back(p.id);
  EXPECT_EQ(listed_ids, family_members);
  EXPECT_EQ(engine->variants(family_members.back()).size(), family_members.size());

  const std::string single = products_->back().id;  // no group_id: a family of one
  ASSERT_EQ(engine->variants(single).size(), 1u);
  EXPECT_EQ(engine->variants(single).front().id, single);
  auto missing = error_from([&] { engine->variants("no-such-product"); });
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->kind(), ErrorKind::kNotFound);

  // A new price for one variant: seen by the comparison and the swatches, nothing re-embedded.
  catalog::CatalogEntry entry{product(family_members[1]), false};
  entry.product.price = 1234.5;
  auto report = engine->apply({entry}, dir_->path() / "catalog", {});
  EXPECT_EQ(report.images_embedded, 0u);
  for (const auto& p : engine->variants(id)) {
    if (p.id == family_members[1]) {
      EXPECT_DOUBLE_EQ(p.price, 1234.5);
    }
  }
  auto similar = engine->similar_products(products_->back().id, 60, false);
  bool seen = false;
  for (const auto& hit : similar.hits) {
    for (const auto& v : hit.variants) {
      if (v.product_id == family_members[1]) {
        seen = true;
        EXPECT_DOUBLE_EQ(v.price, 1234.5);
      }
    }
    if (hit.product_id == family_members[1]) seen = true;
  }
  EXPECT_TRUE(seen);

  // A variant leaving the family (its group_id removed) leaves the comparison.
  entry.product.group_id.clear();
  engine->apply({entry}, dir_->path() / "catalog", {});
  EXPECT_EQ(engine->variants(id).size(), family_members.size() - 1);
  ASSERT_EQ(engine->delete_products({family_members[0]}), 1u);
  EXPECT_EQ(engine->variants(family_members[2]).size(), family_members.size() - 2);
}

}  // namespace
}  // namespace lookalike::search
