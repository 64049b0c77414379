#include "search/demo_catalog.h"

#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "catalog/product.h"
#include "common/error.h"
#include "common/files.h"
#include "image/image.h"
#include "search/fashion_mnist.h"

namespace lookalike::demo {
namespace fs = std::filesystem;

namespace {

// A small, fixed mixer (splitmix64): the same index always gets the same brand,
// price and rating, on every machine.
std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

double unit(std::uint64_t seed, std::uint64_t salt) { return double(mix(seed * 31 + salt) >> 11) / double(1ULL << 53); }

const std::array<const char*, 12> kBrands{"Northwind", "Lumen",  "Fjord",     "Atlas", "Marlow", "Kestrel",
                                          "Oakridge",  "Solace", "Brightway", "Vela",  "Corvid", "Tamarind"};
const std::array<const char*, 8> kStyles{"Classic", "Everyday", "Urban", "Relaxed",
                                         "Essential", "Heritage", "Studio", "Weekend"};
const std::array<const char*, 6> kMaterials{"cotton", "wool", "leather", "denim", "polyester", "linen"};
// Typical price (EUR) per Fashion-MNIST class.
const std::array<double, 10> kBasePrice{19, 49, 45, 59, 129, 39, 35, 79, 69, 99};

std::string file_name(std::size_t i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%05zu.png", i);
  return buf;
}

void write_png(const fs::path& path, const std::uint8_t* pixels, int rows, int cols) {
  image::Image img;
  img.width = cols;
  img.height = rows;
  img.channels = 1;
  img.pixels.assign(pixels, pixels + static_cast<std::size_t>(rows) * cols);
  auto png = image::encode_png(img);
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(png.data()), static_cast<std::streamsize>(png.size()));
  if (!out) throw Error(ErrorKind::kIO, "cannot write " + path.string());
}

catalog::Product make_product(std::size_t i, int label) {
  const auto& classes = fashion_mnist_classes();
  catalog::Product p;
  char id[32];
  std::snprintf(id, sizeof id, "fm-%05zu", i);
  p.id = id;
  p.brand = kBrands[mix(i) % kBrands.size()];
  p.category = classes[static_cast<std::size_t>(label)];
  p.title = p.brand + " " + kStyles[mix(i + 1) % kStyles.size()] + " " + p.category;
  p.price = std::round(kBasePrice[static_cast<std::size_t>(label)] * (0.6 + 0.9 * unit(i, 2)) * 100) / 100 - 0.01;
  p.currency = "EUR";
  p.rating = std::round((2.5 + 2.5 * unit(i, 3)) * 10) / 10;
  p.rating_count = static_cast<std::int64_t>(std::pow(unit(i, 4), 3) * 2000);
  p.stock = unit(i, 5) < 0.1 ? 0 : static_cast<std::int64_t>(unit(i, 6) * 200);
  p.attributes["material"] = kMaterials[mix(i + 7) % kMaterials.size()];
  p.images = {"images/" + file_name(i)};
  return p;
}

}  // namespace

DemoCatalogReport write_demo_catalog(const fs::path& out, const DemoCatalogOptions& options) {
  fs::path dataset = options.dataset_dir.empty() ? default_fashion_mnist_dir() : options.dataset_dir;
  auto train = read_fashion_mnist(dataset, "train");
  auto test = read_fashion_mnist(dataset, "t10k");
  fs::create_directories(out / "images");
  fs::create_directories(out / "queries");
  const std::size_t pixels = static_cast<std::size_t>(train.rows) * train.cols;

  DemoCatalogReport report;
  std::string catalog;
  for (std::size_t i = 0; i < std::min(options.max_products, train.size()); ++i) {
    write_png(out / "images" / file_name(i), train.pixels.data() + i * pixels, train.rows, train.cols);
    catalog += catalog::to_json_line(make_product(i, train.labels[i])) + "\n";
    ++report.products;
  }
  std::string queries;
  for (std::size_t i = 0; i < std::min(options.max_queries, test.size()); ++i) {
    write_png(out / "queries" / file_name(i), test.pixels.data() + i * pixels, test.rows, test.cols);
    nlohmann::json line{{"image", "queries/" + file_name(i)},
                        {"category", fashion_mnist_classes()[static_cast<std::size_t>(test.labels[i])]}};
    queries += line.dump() + "\n";
    ++report.queries;
  }
  write_file_atomic(out / "catalog.jsonl", catalog.data(), catalog.size());
  write_file_atomic(out / "queries.jsonl", queries.data(), queries.size());
  return report;
}

}  // namespace lookalike::demo
