// Builds the bundled demo catalog from Debian's Fashion-MNIST: real product
// photos (28 x 28 gray) with deterministic synthetic shop metadata.
#pragma once

#include <cstddef>
#include <filesystem>

namespace lookalike::demo {

struct DemoCatalogOptions {
  std::filesystem::path dataset_dir;  // empty: the Debian package's folder
  std::size_t max_products = 60000;   // first n training images
  std::size_t max_queries = 10000;    // first n test images
};

struct DemoCatalogReport {
  std::size_t products = 0;
  std::size_t queries = 0;
};

// Writes out/images/*.png and out/catalog.jsonl (one product per training image),
// out/queries/*.png and out/queries.jsonl ({"image": ..., "category": ...} per
// test image). Catalog files are written last and atomically, so an interrupted
// run never leaves a catalog that names missing images.
DemoCatalogReport write_demo_catalog(const std::filesystem::path& out, const DemoCatalogOptions& options);

}  // namespace lookalike::demo
