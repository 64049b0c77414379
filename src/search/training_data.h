// Turns a catalog file into a training set for embed::train_model (labelled by
// category) or embed::train_self_supervised (images only).
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>

#include "embed/train.h"
#include "image/image.h"

namespace lookalike::search {

// Called for each catalog line or image that is skipped: its line, the image path
// as written in the catalog (empty for a bad line) and why.
using SkipHandler =
    std::function<void(std::size_t line, const std::string& image, const std::string& reason)>;

// Reads every product with a category and at least one image; each image becomes
// one example labelled with its product's category (class names sorted). Bad
// lines and images are reported through on_skip(line, image, reason) and skipped.
// With keep_images, LabelledSet::images holds the decoded images too, as
// load_catalog_images keeps them (for TrainOptions::instance_weight).
// Throws Error(kInvalidInput) when fewer than two categories remain.
embed::LabelledSet load_labelled_catalog(const std::filesystem::path& catalog_file,
                                         const image::InputSpec& input, const image::DecodeLimits& limits,
                                         const SkipHandler& on_skip, bool keep_images = false);

// Reads every image of every product (categories, when present, are ignored),
// decoded and shrunk to at most image::kWorkSide pixels a side (so 60,000 images
// take at most 60,000 x 112 x 112 x 3 bytes, 2.3 GB; the demo's 28 x 28 gray
// ones 47 MB). Bad lines and images are reported through on_skip and skipped.
// Throws Error(kInvalidInput) when fewer than two images remain.
embed::ImageSet load_catalog_images(const std::filesystem::path& catalog_file, const image::InputSpec& input,
                                    const image::DecodeLimits& limits, const SkipHandler& on_skip);

}  // namespace lookalike::search
