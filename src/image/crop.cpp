// Cropping, and decoding straight to a crop (the search API's crop box).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"
#include "image/image.h"

namespace lookalike::image {
namespace {

std::string describe(const CropBox& box) {
  return std::to_string(box.x) + "," + std::to_string(box.y) + "," + std::to_string(box.width) + "," +
         std::to_string(box.height);
}

void check_inside(const CropBox& box, int width, int height) {
  if (box.width <= 0 || box.height <= 0) {
    throw Error(ErrorKind::kInvalidInput, "crop box " + describe(box) + " is empty");
  }
  if (box.x < 0 || box.y < 0 || std::int64_t{box.x} + box.width > width ||
      std::int64_t{box.y} + box.height > height) {
    throw Error(ErrorKind::kInvalidInput,
                "crop box " + describe(box) + " (x,y,width,height) is not inside the " +
                    std::to_string(width) + " x " + std::to_string(height) + " image");
  }
}

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// The full-size, oriented dimensions that a decoded image of decoded_w x decoded_h
// came from, given the header's (unoriented) dimensions: the header may be rotated
// by EXIF orientation and a JPEG may have been decoded at 1/2, 1/4 or 1/8 scale
// (libjpeg rounds up). False when that is ambiguous.
bool full_size_of(int decoded_w, int decoded_h, const Dimensions& header, int& full_w, int& full_h) {
  const std::pair<int, int> candidates[2] = {{header.width, header.height}, {header.height, header.width}};
  int matches = 0;
  for (const auto& [w, h] : candidates) {
    for (int scale : {1, 2, 4, 8}) {
      if (ceil_div(w, scale) == decoded_w && ceil_div(h, scale) == decoded_h) {
        if (matches == 0 || w != full_w || h != full_h) ++matches;
        full_w = w;
        full_h = h;
        break;
      }
    }
  }
  return matches == 1;
}

}  // namespace

Image crop(const Image& image, const CropBox& box) {
  check_inside(box, image.width, image.height);
  const std::size_t channels = static_cast<std::size_t>(image.channels);
  if (image.pixels.size() != static_cast<std::size_t>(image.width) * image.height * channels) {
    throw Error(ErrorKind::kInvalidInput, "crop: image pixel buffer does not match its size");
  }
  Image out;
  out.width = box.width;
  out.height = box.height;
  out.channels = image.channels;
  out.pixels.resize(static_cast<std::size_t>(box.width) * box.height * channels);
  const std::size_t in_row = static_cast<std::size_t>(image.width) * channels;
  const std::size_t out_row = static_cast<std::size_t>(box.width) * channels;
  for (int y = 0; y < box.height; ++y) {
    const std::uint8_t* from = image.pixels.data() + (static_cast<std::size_t>(box.y) + y) * in_row +
                               static_cast<std::size_t>(box.x) * channels;
    std::memcpy(out.pixels.data() + static_cast<std::size_t>(y) * out_row, from, out_row);
  }
  return out;
}

Image decode_crop(const std::uint8_t* data, std::size_t size, const DecodeLimits& limits, const CropBox& box,
                  int min_side) {
  if (box.width <= 0 || box.height <= 0) {
    throw Error(ErrorKind::kInvalidInput, "crop box " + describe(box) + " is empty");
  }
  const Format format = sniff_format(data, size);
  const Dimensions header = read_dimensions(data, size, format);

  // decode() picks the largest JPEG scale s with both image sides >= s * min_side.
  // Asking for min_side * (image short side / box short side) keeps the box's
  // short side >= min_side after scaling.
  int reduced_min_side = 0;
  if (min_side > 0 && format == Format::kJpeg) {
    const std::int64_t image_short = std::min(header.width, header.height);
    const std::int64_t box_short = std::min(box.width, box.height);
    reduced_min_side =
        static_cast<int>(std::min<std::int64_t>(image_short, ceil_div(min_side * image_short, box_short)));
  }
  Image decoded = decode(data, size, limits, reduced_min_side);
  int full_w = 0, full_h = 0;
  if (!full_size_of(decoded.width, decoded.height, header, full_w, full_h)) {
    decoded = decode(data, size, limits, 0);  // rare: the orientation cannot be told from a reduced size
    full_w = decoded.width;
    full_h = decoded.height;
  }
  check_inside(box, full_w, full_h);
  if (decoded.width == full_w && decoded.height == full_h) return crop(decoded, box);

  // Scale the box to the reduced image, rounding outwards so that no part of it is lost.
  auto scale_down = [](std::int64_t v, std::int64_t decoded_side, std::int64_t full_side) {
    return v * decoded_side / full_side;
  };
  auto scale_up = [](std::int64_t v, std::int64_t decoded_side, std::int64_t full_side) {
    return ceil_div(v * decoded_side, full_side);
  };
  CropBox scaled;
  const std::int64_t x0 = scale_down(box.x, decoded.width, full_w);
  const std::int64_t y0 = scale_down(box.y, decoded.height, full_h);
  const std::int64_t x1 =
      std::min<std::int64_t>(decoded.width, scale_up(box.x + std::int64_t{box.width}, decoded.width, full_w));
  const std::int64_t y1 = std::min<std::int64_t>(
      decoded.height, scale_up(box.y + std::int64_t{box.height}, decoded.height, full_h));
  scaled.x = static_cast<int>(x0);
  scaled.y = static_cast<int>(y0);
  scaled.width = static_cast<int>(std::max<std::int64_t>(1, x1 - x0));
  scaled.height = static_cast<int>(std::max<std::int64_t>(1, y1 - y0));
  return crop(decoded, scaled);
}

}  // namespace lookalike::image
