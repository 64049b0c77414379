// A colour descriptor per image, computed on the product rather than its background,
// and a similarity between two descriptors (used by ranking's "colour" component).
//
// The descriptor is a soft histogram of the product's pixels over kColourBins bins:
//   - kHueBins x kSaturationRings chromatic bins: hue in 30-degree sectors, in two
//     saturation rings (muted, vivid). Hue and saturation of HSV do not change when
//     the light gets dimmer or brighter (every channel scaled by the same factor), so a
//     red item in a dim photo still lands in the red bins; brightness is not a
//     dimension of the chromatic bins at all.
//   - kAchromaticBins bins black, grey, white for pixels with too little saturation or
//     too little light to have a trustworthy hue.
// Every pixel is split between neighbouring bins (soft assignment: linear in hue
// between the two nearest sector centres, in saturation between the two rings, and
// between chromatic and achromatic by how saturated and how bright it is), so a hue on
// a sector edge or a small lighting shift moves weight gradually instead of jumping.
// The histogram sums to 1, or is all 0 when no product pixel was found.
//
// The background is estimated from the image border (product photos sit on a plain
// background, the demo's Fashion-MNIST items on black): the per-channel median of the
// border ring is the background colour, and pixels are weighted down the closer they
// are to it. A border that is not mostly one colour (a busy scene, a product cropped
// to the edges) has no plain background; then every pixel counts.
//
// Pure functions, no shared state: thread-safe. Cost: images larger than
// kColourMaxSide on their long side are first shrunk to it (area interpolation), so a
// descriptor costs at most ~kColourMaxSide^2 pixel visits (about 10 us for a 28 x 28
// thumbnail, well under 1 ms for any photo).
#pragma once

#include <array>
#include <cstddef>

#include "image/image.h"

namespace lookalike::image {

inline constexpr std::size_t kHueBins = 12;  // 30 degrees each; centres at 0, 30, ..., 330
inline constexpr std::size_t kSaturationRings = 2;
inline constexpr std::size_t kAchromaticBins = 3;  // black, grey, white
inline constexpr std::size_t kColourBins = kHueBins * kSaturationRings + kAchromaticBins;  // 27
inline constexpr int kColourMaxSide = 96;  // pixels; larger images are shrunk first

// Bin layout: chromatic bin of (hue sector h, ring r) is r * kHueBins + h (ring 0
// muted, ring 1 vivid); then kBlackBin, kGreyBin, kWhiteBin.
inline constexpr std::size_t kBlackBin = kHueBins * kSaturationRings;
inline constexpr std::size_t kGreyBin = kBlackBin + 1;
inline constexpr std::size_t kWhiteBin = kBlackBin + 2;

using ColourDescriptor = std::array<float, kColourBins>;

// The descriptor of the product in image (1 or 3 channels, any size >= 1 x 1).
// Throws Error(kInvalidInput) for an empty image or one whose pixel buffer does not
// match its size.
ColourDescriptor colour_descriptor(const Image& image);

// False for the all-zero descriptor (no product pixels, or no descriptor known).
bool has_colour(const ColourDescriptor& descriptor);

// Histogram intersection, sum over bins of min(a, b), with black, grey and white taken
// as one bin (lightness is not colour): 1 for the same colour mix, 0 for disjoint ones;
// 0 when either descriptor has no colour. Symmetric.
double colour_similarity(const ColourDescriptor& a, const ColourDescriptor& b);

// The name of the dominant colour ("red", "orange", "yellow", "green", "cyan", "blue",
// "purple", "magenta", "black", "grey", "white"; "" without colour), for messages,
// explain output and tests.
const char* dominant_colour_name(const ColourDescriptor& descriptor);

}  // namespace lookalike::image
