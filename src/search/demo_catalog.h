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
  // Colour variant families (0: none), each one training image in 4 or 5 colours of
  // kVariantColours, every variant its own product sharing the family's group_id.
  std::size_t variant_families = 1000;
  std::size_t variant_queries_per_family = 2;  // shopper photos of distinct variants, 1..4
};

// The colours variants come in: name and the RGB of the item's brightest pixel (a
// variant is the gray item tinted, pixel = gray / 255 * rgb). Hues far apart, and no
// white or gray: the plain Fashion-MNIST item is already in the catalog.
struct VariantColour {
  const char* name;
  unsigned char r, g, b;
};
inline constexpr VariantColour kVariantColours[] = {
    {"red", 215, 35, 40},   {"orange", 240, 130, 25}, {"yellow", 235, 200, 35}, {"green", 40, 160, 70},
    {"cyan", 25, 165, 175}, {"blue", 40, 85, 210},    {"purple", 130, 55, 175},
};

struct DemoCatalogReport {
  std::size_t products = 0;
  std::size_t queries = 0;
  std::size_t variants = 0;         // products in variants.jsonl
  std::size_t variant_queries = 0;  // lines of variant-queries.jsonl
};

// Writes out/images/*.png and out/catalog.jsonl (one product per training image),
// out/queries/*.png and out/queries.jsonl ({"image": ..., "category": ...} per
// test image). Catalog files are written last and atomically, so an interrupted
// run never leaves a catalog that names missing images.
//
// Colour variants go to separate files, so that catalog.jsonl stays exactly
// Fashion-MNIST: out/variants/*.png and out/variants.jsonl (family f is training image
// f * 60000 / families, in 4 or 5 colours; product ids "fv-FFFFF-COLOUR", group_id
// "fv-FFFFF", attributes.color the colour), and out/variant-queries/*.png with
// out/variant-queries.jsonl ({"image", "product", "group_id", "color", "distortion"} per
// line): a shopper's photo of one variant, made with one of the lighting, gamma, blur
// and JPEG distortions of image/distort.h, never the catalog file itself.
// Throws Error(kInvalidInput) for more than 60,000 families or 0 or more than 4 queries
// per family.
DemoCatalogReport write_demo_catalog(const std::filesystem::path& out, const DemoCatalogOptions& options);

}  // namespace lookalike::demo
