#include "search/training_data.h"

#include <map>
#include <vector>

#include "catalog/product.h"
#include "common/error.h"
#include "common/files.h"

namespace lookalike::search {
namespace fs = std::filesystem;

embed::LabelledSet load_labelled_catalog(
    const fs::path& catalog_file, const image::InputSpec& input, const image::DecodeLimits& limits,
    const std::function<void(std::size_t, const std::string&, const std::string&)>& on_skip) {
  const fs::path root = fs::absolute(catalog_file).parent_path();
  const std::size_t per_input = static_cast<std::size_t>(input.channels) * input.width * input.height;
  const int min_side = std::max(input.width, input.height);
  std::vector<float> inputs;
  std::vector<std::string> categories;
  catalog::read_catalog(
      catalog_file, catalog::ParseLimits{},
      [&](std::size_t line, catalog::CatalogEntry&& entry) {
        if (entry.deleted || entry.product.category.empty()) return;
        for (const auto& path : entry.product.images) {
          try {
            auto decoded = image::load_file(resolve_inside(root, path), limits, min_side);
            inputs.resize(inputs.size() + per_input);
            image::preprocess(decoded, input, inputs.data() + inputs.size() - per_input);
            categories.push_back(entry.product.category);
          } catch (const Error& e) {
            on_skip(line, path, e.what());
          }
        }
      },
      [&](std::size_t line, const std::string& message) { on_skip(line, "", message); });

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
  return set;
}

}  // namespace lookalike::search
