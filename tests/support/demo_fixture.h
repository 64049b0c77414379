// For the end-to-end tests that link lk_search: a small demo catalog.
#pragma once

#include <cstddef>
#include <filesystem>

#include "search/demo_catalog.h"

namespace lookalike::testing {

// Writes the first `products` Fashion-MNIST products (and one query) to dir
// (catalog.jsonl, images/); returns dir / "catalog.jsonl".
inline std::filesystem::path write_small_demo(const std::filesystem::path& dir, std::size_t products) {
  demo::DemoCatalogOptions options;
  options.max_products = products;
  options.max_queries = 1;
  demo::write_demo_catalog(dir, options);
  return dir / "catalog.jsonl";
}

}  // namespace lookalike::testing
