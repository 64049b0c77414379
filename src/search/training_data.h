// Turns a labelled catalog file into a training set for embed::train_model.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>

#include "embed/train.h"
#include "image/image.h"

namespace lookalike::search {

// Reads every product with a category and at least one image; each image becomes
// one example labelled with its product's category (class names sorted). Bad
// lines and images are reported through on_skip(line, image, reason) and skipped.
// Throws Error(kInvalidInput) when fewer than two categories remain.
embed::LabelledSet load_labelled_catalog(
    const std::filesystem::path& catalog_file, const image::InputSpec& input, const image::DecodeLimits& limits,
    const std::function<void(std::size_t line, const std::string& image, const std::string& reason)>& on_skip);

}  // namespace lookalike::search
