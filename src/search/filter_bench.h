// The filtered-search benchmark: recall@k of filtered searches against the
// exact filtered search, and their latency, at chosen selectivities; and a
// synthetic catalog of any size to run it on without images.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "search/engine.h"

namespace lookalike::search {

struct FilterBenchOptions {
  std::size_t queries = 200;
  int k = 10;
  std::vector<double> selectivities{1.0, 0.1, 0.01, 0.001};  // fractions of the catalog
  std::uint64_t seed = 1;
};

struct FilterBenchRow {
  double target = 0;          // the selectivity asked for
  double selectivity = 0;     // measured: mean matching products / catalog products
  std::string strategy;       // "auto", "index" (forced) or "exact" (the reference)
  double recall = 0;          // mean recall@k against the exact filtered search
  double complete = 0;        // fraction of queries that got min(k, matching) results
  double p50_ms = 0, p99_ms = 0;  // per query, one query at a time
  std::string chosen;         // what the automatic strategy did, e.g. "exact 200" or "index 150, index+exact 50"
};

// Runs the benchmark on an open engine with query vectors (n x engine.dim()).
// The filters, one per query and selectivity, are built from the catalog's
// products (read from the engine's data folder): everything ("price >= 0") for
// 100%, else a random category narrowed by a price band to the target share,
// e.g. category = "Bag" AND price >= 31.5 AND price < 36.2.
std::vector<FilterBenchRow> bench_filtered_search(const Engine& engine, const std::filesystem::path& data_dir,
                                                  const std::vector<float>& queries,
                                                  const FilterBenchOptions& options,
                                                  const std::function<void(const std::string&)>& on_progress);

struct SyntheticCatalogOptions {
  std::size_t products = 1'000'000;
  std::size_t clusters = 1000;       // vectors are unit-normalised points around random centres
  std::size_t categories = 10;       // each product's category follows its cluster, as a look does
  std::string index_factory;         // empty: the engine's default for the size
  std::uint64_t seed = 1;
};

// Creates a new data folder holding `products` synthetic products (metadata
// drawn at random: category, brand, price, stock, rating, colour) each with one
// vector in the shipped model's space, written straight to the store (no
// images), and builds its index. Throws Error(kInvalidInput) when the folder exists.
void write_synthetic_catalog(const std::filesystem::path& data_dir, const SyntheticCatalogOptions& options,
                             const std::function<void(const std::string&)>& on_progress);

// n query vectors (n x dim) from the same distribution as the catalog written
// with these options; the same options give the same queries.
std::vector<float> synthetic_queries(const SyntheticCatalogOptions& options, std::size_t dim, std::size_t n);

}  // namespace lookalike::search
