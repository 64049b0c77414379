#include "search/training_data.h"

#include <algorithm>
#include <map>
#include <utility>
#include <vector>

#include "catalog/product.h"
#include "common/error.h"
#include "common/files.h"
#include "image/distort.h"

namespace lookalike::search {
namespace fs = std::filesystem;

namespace {

// Calls on_image(product, decoded image) for every readable image of every
// product that is not a deletion and that `wanted` accepts, decoded with both
// sides kept >= min_side.
void for_each_catalog_image(const fs::path& catalog_file, const image::DecodeLimits& limits, int min_side,
                            const std::function<bool(const catalog::Product&)>& wanted,
                            const std::function<void(const catalog::Product&, image::Image&&)>& on_image,
                            const SkipHandler& on_skip) {
  const fs::path root = fs::absolute(catalog_file).parent_path();
  catalog::read_catalog(
      catalog_file, catalog::ParseLimits{},
      [&](std::size_t line, catalog::CatalogEntry&& entry) {
        if (entry.deleted || !wanted(entry.product)) return;
        for (const auto& path : entry.product.images) {
          try {
            on_image(entry.product, image::load_file(resolve_inside(root, path), limits, min_side));
          } catch (const Error& e) {
            on_skip(line, path, e.what());
          }
        }
      },
      [&](std::size_t line, const std::string& message) { on_skip(line, "", message); });
}

// An image as training keeps it: at most image::kWorkSide a side.
image::Image kept_for_training(image::Image&& decoded) {
  const bool fits = decoded.width <= image::kWorkSide && decoded.height <= image::kWorkSide;
  return fits ? std::move(decoded) : image::fit_within(decoded, image::kWorkSide);
}

}  // namespace

embed::LabelledSet load_labelled_catalog(const fs::path& catalog_file, const image::InputSpec& input,
                                         const image::DecodeLimits& limits, const SkipHandler& on_skip,
                                         bool keep_images) {
  const std::size_t per_input = static_cast<std::size_t>(input.channels) * input.width * input.height;
  std::vector<float> inputs;
  std::vector<std::string> categories;
  std::vector<image::Image> images;
  for_each_catalog_image(
      catalog_file, limits, keep_images ? image::kWorkSide : std::max(input.width, input.height),
      [](const catalog::Product& product) { return !product.category.empty(); },
      [&](const catalog::Product& product, image::Image&& decoded) {
        inputs.resize(inputs.size() + per_input);
        image::preprocess(decoded, input, inputs.data() + inputs.size() - per_input);
        categories.push_back(product.category);
        if (keep_images) images.push_back(kept_for_training(std::move(decoded)));
      },
      on_skip);

  std::map<std::string, int> label_of;
  for (const auto& c : categories) label_of.emplace(c, 0);
  embed::LabelledSet set;
  set.input = input;
  for (auto& [name, label] : label_of) {
    label = static_cast<int>(set.class_names.size());
    set.class_names.push_back(name);
  }
  if (set.class_names.size() < 2) {
    throw Error(ErrorKind::kInvalidInput, catalog_file.string() + " has fewer than two categories with images");
  }
  set.labels.reserve(categories.size());
  for (const auto& c : categories) set.labels.push_back(label_of[c]);
  set.inputs = std::move(inputs);
  set.images = std::move(images);
  return set;
}

embed::ImageSet load_catalog_images(const fs::path& catalog_file, const image::InputSpec& input,
                                    const image::DecodeLimits& limits, const SkipHandler& on_skip) {
  embed::ImageSet set;
  set.input = input;
  for_each_catalog_image(
      catalog_file, limits, image::kWorkSide, [](const catalog::Product&) { return true; },
      [&](const catalog::Product&, image::Image&& decoded) {
        set.images.push_back(kept_for_training(std::move(decoded)));
      },
      on_skip);
  if (set.size() < 2)
    throw Error(ErrorKind::kInvalidInput, catalog_file.string() + " has fewer than two images");
  return set;
}

}  // namespace lookalike::search
