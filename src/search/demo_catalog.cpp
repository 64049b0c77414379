#include "search/demo_catalog.h"

#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "catalog/product.h"
#include "common/error.h"
#include "common/hash.h"
#include "common/files.h"
#include "image/distort.h"
#include "image/image.h"
#include "search/fashion_mnist.h"

namespace lookalike::demo {
namespace fs = std::filesystem;

namespace {

// splitmix64 (common/hash.h): the same index always gets the same brand, price and
// rating, on every machine.
double unit(std::uint64_t seed, std::uint64_t salt) { return double(splitmix64(seed * 31 + salt) >> 11) / double(1ULL << 53); }

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

void write_png(const fs::path& path, const image::Image& img) {
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
  p.brand = kBrands[splitmix64(i) % kBrands.size()];
  p.category = classes[static_cast<std::size_t>(label)];
  p.title = p.brand + " " + kStyles[splitmix64(i + 1) % kStyles.size()] + " " + p.category;
  p.price = std::round(kBasePrice[static_cast<std::size_t>(label)] * (0.6 + 0.9 * unit(i, 2)) * 100) / 100 - 0.01;
  p.currency = "EUR";
  p.rating = std::round((2.5 + 2.5 * unit(i, 3)) * 10) / 10;
  p.rating_count = static_cast<std::int64_t>(std::pow(unit(i, 4), 3) * 2000);
  p.stock = unit(i, 5) < 0.1 ? 0 : static_cast<std::int64_t>(unit(i, 6) * 200);
  p.attributes["material"] = kMaterials[splitmix64(i + 7) % kMaterials.size()];
  p.images = {"images/" + file_name(i)};
  return p;
}

std::string family_id(std::size_t family) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "fv-%05zu", family);
  return buf;
}

// The gray item tinted: its brightness scales the colour, as a coloured garment
// photographed on black would look.
image::Image tinted(const std::uint8_t* gray, int rows, int cols, const VariantColour& colour) {
  image::Image img{cols, rows, 3, std::vector<std::uint8_t>(static_cast<std::size_t>(rows) * cols * 3)};
  const double rgb[3] = {double(colour.r), double(colour.g), double(colour.b)};
  for (std::size_t p = 0; p < static_cast<std::size_t>(rows) * cols; ++p) {
    for (std::size_t c = 0; c < 3; ++c) {
      img.pixels[3 * p + c] = static_cast<std::uint8_t>(std::lround(gray[p] / 255.0 * rgb[c]));
    }
  }
  return img;
}

// The distortions a variant query photo is made with: what changes colour and light
// the way a shop photo and a shopper's photo differ.
constexpr image::Distortion kQueryDistortions[] = {image::Distortion::kLighting, image::Distortion::kGamma,
                                                   image::Distortion::kBlur, image::Distortion::kJpeg};

void write_variants(const fs::path& out, const FashionMnistSplit& train, const DemoCatalogOptions& options,
                    DemoCatalogReport& report) {
  constexpr std::size_t kColours = std::size(kVariantColours);
  const std::size_t families = options.variant_families;
  if (families > train.size()) {
    throw Error(ErrorKind::kInvalidInput, "at most " + std::to_string(train.size()) + " variant families");
  }
  if (options.variant_queries_per_family < 1 || options.variant_queries_per_family > 4) {
    throw Error(ErrorKind::kInvalidInput, "variant queries per family must be from 1 to 4");
  }
  fs::create_directories(out / "variants");
  fs::create_directories(out / "variant-queries");
  const std::size_t pixels = static_cast<std::size_t>(train.rows) * train.cols;
  std::string variants, queries;
  for (std::size_t f = 0; f < families; ++f) {
    const std::size_t item = f * train.size() / families;
    const std::uint8_t* gray = train.pixels.data() + item * pixels;
    const catalog::Product base = make_product(item, train.labels[item]);
    // 4 or 5 distinct colours, starting at a family-dependent place in the palette.
    const std::size_t count = 4 + splitmix64(f + 101) % 2, first = splitmix64(f + 202) % kColours;
    const std::size_t step = 1 + splitmix64(f + 303) % 2;  // 1 or 2: a step of 2 over 7 colours still visits all
    std::vector<std::size_t> colours;
    for (std::size_t c = 0; colours.size() < count; ++c) colours.push_back((first + c * step) % kColours);
    std::vector<image::Image> images;
    for (std::size_t v = 0; v < colours.size(); ++v) {
      const VariantColour& colour = kVariantColours[colours[v]];
      const std::string name = family_id(f).substr(3) + "-" + colour.name + ".png";
      images.push_back(tinted(gray, train.rows, train.cols, colour));
      write_png(out / "variants" / name, images.back());
      catalog::Product p = base;
      p.id = family_id(f) + "-" + colour.name;
      p.group_id = family_id(f);
      p.title = base.title + ", " + colour.name;
      p.attributes["color"] = colour.name;
      p.images = {"variants/" + name};
      // Variants of one family differ a little in stock, so that not all are sold out together.
      p.stock = unit(f * 8 + v, 9) < 0.1 ? 0 : static_cast<std::int64_t>(unit(f * 8 + v, 10) * 200);
      variants += catalog::to_json_line(p) + "\n";
      ++report.variants;
    }
    for (std::size_t q = 0; q < options.variant_queries_per_family; ++q) {
      const std::size_t v = (splitmix64(f + 404) + q) % colours.size();
      const VariantColour& colour = kVariantColours[colours[v]];
      const image::Distortion distortion =
          kQueryDistortions[(f * options.variant_queries_per_family + q) % std::size(kQueryDistortions)];
      const image::Image photo = image::distort(images[v], distortion, splitmix64(f * 16 + q));
      const std::string name = family_id(f).substr(3) + "-" + colour.name + ".png";
      write_png(out / "variant-queries" / name, photo);
      nlohmann::json line{{"image", "variant-queries/" + name},
                          {"product", family_id(f) + "-" + colour.name},
                          {"group_id", family_id(f)},
                          {"color", colour.name},
                          {"distortion", image::to_string(distortion)}};
      queries += line.dump() + "\n";
      ++report.variant_queries;
    }
  }
  write_file_atomic(out / "variants.jsonl", variants.data(), variants.size());
  write_file_atomic(out / "variant-queries.jsonl", queries.data(), queries.size());
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
  if (options.variant_families > 0) write_variants(out, train, options, report);
  return report;
}

}  // namespace lookalike::demo
