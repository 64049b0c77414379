#include "search/filter_bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <set>

#include "catalog/store.h"
#include "common/error.h"

namespace lookalike::search {
namespace fs = std::filesystem;

namespace {

std::string number(double v) {
  char text[64];
  std::snprintf(text, sizeof text, "%.17g", v);
  return text;
}

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out + "\"";
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const std::size_t i = std::min(values.size() - 1, static_cast<std::size_t>(std::ceil(p * values.size())) - 1);
  return values[i];
}

}  // namespace

std::vector<FilterBenchRow> bench_filtered_search(const Engine& engine, const fs::path& data_dir,
                                                  const std::vector<float>& queries,
                                                  const FilterBenchOptions& options,
                                                  const std::function<void(const std::string&)>& on_progress) {
  // Prices by category, sorted: the filters are cut from them.
  std::map<std::string, std::vector<double>> prices;
  std::size_t products = 0;
  {
    auto store = catalog::Store::open(data_dir / "catalog.db");
    store->for_each_product([&](const catalog::Product& p) {
      prices[p.category].push_back(p.price);
      ++products;
    });
  }
  if (products == 0) throw Error(ErrorKind::kInvalidInput, "the catalog in " + data_dir.string() + " is empty");
  for (auto& [category, list] : prices) std::sort(list.begin(), list.end());
  std::vector<const std::string*> categories;
  for (const auto& [category, list] : prices) categories.push_back(&category);

  const std::size_t dim = static_cast<std::size_t>(engine.dim());
  const std::size_t n = std::min(options.queries, queries.size() / dim);
  std::mt19937_64 rng(options.seed);
  std::vector<FilterBenchRow> rows;
  for (double target : options.selectivities) {
    std::vector<filter::Filter> filters;
    for (std::size_t q = 0; q < n; ++q) {
      if (target >= 0.999) {
        filters.push_back(filter::Filter::parse("price >= 0"));
        continue;
      }
      const std::string& category = *categories[rng() % categories.size()];
      const auto& list = prices[category];
      const std::size_t m = std::max<std::size_t>(1, static_cast<std::size_t>(std::llround(target * products)));
      std::string text = "category = " + quoted(category);
      if (m < list.size()) {
        const std::size_t start = rng() % (list.size() - m + 1);
        text += " AND price >= " + number(list[start]);
        if (start + m < list.size()) text += " AND price < " + number(list[start + m]);
      }
      filters.push_back(filter::Filter::parse(text));
    }

    // The strategies take turns on each query, so that the load of a shared
    // machine falls on all of them alike; exact goes first: it is the reference.
    const std::vector<FilterStrategy> strategies{FilterStrategy::kExact, FilterStrategy::kAuto,
                                                 FilterStrategy::kIndex};
    std::vector<std::vector<double>> ms(strategies.size());
    std::vector<std::map<std::string, std::size_t>> chosen(strategies.size());
    std::vector<double> recall(strategies.size(), 0), complete(strategies.size(), 0);
    double matched = 0;
    for (std::size_t q = 0; q < n; ++q) {
      std::vector<std::string> reference;
      for (std::size_t s = 0; s < strategies.size(); ++s) {
        SearchOptions search;
        search.filter = filters[q];
        search.strategy = strategies[s];
        const auto start = std::chrono::steady_clock::now();
        auto result = engine.search_vectors(queries.data() + q * dim, 1, options.k, false, search).front();
        ms[s].push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
        ++chosen[s][result.strategy];
        std::vector<std::string> ids;
        for (const auto& hit : result.hits) ids.push_back(hit.product_id);
        if (s == 0) {
          reference = ids;
          matched += static_cast<double>(result.matched);
        }
        std::set<std::string> want(reference.begin(), reference.end());
        std::size_t found = 0;
        for (const auto& id : ids) found += want.count(id);
        recall[s] += reference.empty() ? 1.0 : double(found) / double(reference.size());
        complete[s] += ids.size() >= reference.size() ? 1.0 : 0.0;
      }
    }
    const double queries_run = double(std::max<std::size_t>(1, n));
    for (std::size_t s = 0; s < strategies.size(); ++s) {
      FilterBenchRow row;
      row.target = target;
      row.strategy = s == 0 ? "exact" : s == 1 ? "auto" : "index";
      row.selectivity = matched / queries_run / double(products);
      row.recall = recall[s] / queries_run;
      row.complete = complete[s] / queries_run;
      row.p50_ms = percentile(ms[s], 0.50);
      row.p99_ms = percentile(ms[s], 0.99);
      for (const auto& [name, count] : chosen[s]) {
        row.chosen += (row.chosen.empty() ? "" : ", ") + name + " " + std::to_string(count);
      }
      rows.push_back(row);
      if (on_progress) {
        char line[200];
        std::snprintf(line, sizeof line, "selectivity %.4g: %-5s recall@%d %.4f  p50 %.2f ms  p99 %.2f ms  (%s)",
                      row.selectivity, row.strategy.c_str(), options.k, row.recall, row.p50_ms, row.p99_ms,
                      row.chosen.c_str());
        on_progress(line);
      }
    }
  }
  return rows;
}

namespace {

std::vector<float> cluster_centres(const SyntheticCatalogOptions& options, std::size_t dim) {
  std::mt19937_64 rng(options.seed);
  std::normal_distribution<float> normal;
  std::vector<float> centres(options.clusters * dim);
  for (auto& v : centres) v = normal(rng);
  return centres;
}

// A point near a random centre, unit length: clustered like real embeddings.
std::size_t sample_vector(const std::vector<float>& centres, std::size_t dim, std::mt19937_64& rng, float* out) {
  std::normal_distribution<float> normal;
  const std::size_t cluster = rng() % (centres.size() / dim);
  double norm = 0;
  for (std::size_t j = 0; j < dim; ++j) {
    out[j] = centres[cluster * dim + j] + 0.7f * normal(rng);
    norm += double(out[j]) * out[j];
  }
  for (std::size_t j = 0; j < dim; ++j) out[j] = static_cast<float>(out[j] / std::sqrt(norm));
  return cluster;
}

}  // namespace

std::vector<float> synthetic_queries(const SyntheticCatalogOptions& options, std::size_t dim, std::size_t n) {
  auto centres = cluster_centres(options, dim);
  std::mt19937_64 rng(options.seed + 1);
  std::vector<float> out(n * dim);
  for (std::size_t q = 0; q < n; ++q) sample_vector(centres, dim, rng, out.data() + q * dim);
  return out;
}

void write_synthetic_catalog(const fs::path& data_dir, const SyntheticCatalogOptions& options,
                             const std::function<void(const std::string&)>& on_progress) {
  if (fs::exists(data_dir)) {
    throw Error(ErrorKind::kInvalidInput, data_dir.string() + " exists; the synthetic catalog needs a new folder");
  }
  auto say = [&](const std::string& m) {
    if (on_progress) on_progress(m);
  };
  std::string identity;
  std::size_t dim = 0;
  {
    OpenOptions open;  // the shipped model: the vectors live in its space
    auto engine = Engine::open(data_dir, open);
    identity = engine->info().model;
    dim = static_cast<std::size_t>(engine->dim());
  }
  const auto centres = cluster_centres(options, dim);
  std::mt19937_64 rng(options.seed + 2);
  std::uniform_real_distribution<double> unit(0, 1);
  const std::vector<std::string> brands{"Atlas", "Brightway", "Corvid", "Fjord",   "Kestrel", "Marlow",
                                        "Northwind", "Solace", "Tamarind", "Umber", "Vale",    "Wren"};
  const std::vector<std::string> colors{"black", "white", "red", "blue", "green", "grey", "beige", "pink"};
  {
    auto store = catalog::Store::open(data_dir / "catalog.db");
    constexpr std::size_t kBatch = 20000;
    std::vector<float> v(dim);
    for (std::size_t begin = 0; begin < options.products; begin += kBatch) {
      catalog::Store::Transaction tx(*store);
      for (std::size_t i = begin; i < std::min(options.products, begin + kBatch); ++i) {
        const std::size_t cluster = sample_vector(centres, dim, rng, v.data());
        catalog::Product p;
        char id[32];
        std::snprintf(id, sizeof id, "syn-%07zu", i);
        p.id = id;
        // The category follows the cluster, as a product's look follows its kind.
        p.category = "Category " + std::to_string(cluster % options.categories);
        p.brand = brands[rng() % brands.size()];
        p.title = p.brand + " " + p.category;
        p.price = std::round(std::exp(2.5 + 1.5 * unit(rng)) * 100) / 100;  // 12 to 100 EUR, skewed low
        p.currency = "EUR";
        p.rating = std::round((2.5 + 2.5 * unit(rng)) * 10) / 10;
        p.rating_count = static_cast<std::int64_t>(rng() % 500);
        p.stock = unit(rng) < 0.1 ? 0 : static_cast<std::int64_t>(rng() % 200);
        p.attributes["color"] = colors[rng() % colors.size()];
        store->upsert_product(p);
        catalog::ImageRecord image;
        image.product_id = p.id;
        image.path = "synthetic";
        image.model = identity;
        image.embedding = v;
        store->add_image(image);
      }
      tx.commit();
      say("wrote " + std::to_string(std::min(options.products, begin + kBatch)) + " synthetic products");
    }
  }
  say("building the index");
  OpenOptions open;
  open.index_factory = options.index_factory;
  open.on_message = say;
  Engine::open(data_dir, open);
}

}  // namespace lookalike::search
