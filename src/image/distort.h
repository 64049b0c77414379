// Synthetic shopper photos: deterministic distortions of a catalog image, for
// measuring whether a search finds the exact product back (instance
// robustness, `lookalike eval-robustness`).
//
// A shopper's photo is larger than a 28 x 28 catalog thumbnail, so every
// distortion first enlarges the image to a working canvas of kWorkSide x
// kWorkSide RGB pixels (bilinear) and distorts that; the result is what a
// phone would hand to the search. Strengths are drawn per call from the ranges
// documented at each Distortion (uniform unless stated), from a generator
// seeded only by the seed argument, so the same image, distortion and seed give
// the same bytes on every run and every thread count.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "image/image.h"

namespace lookalike::image {

// Side of the working canvas, in pixels (4 x the demo catalog's 28 px).
inline constexpr int kWorkSide = 112;

enum class Distortion {
  kNone,         // the enlarged image itself: the control, expected to be found always
  kCrop,         // keeps a window of 65-85 % of each side at a random place, enlarged back
  kRotation,     // rotates by 15-35 degrees either way, about the centre; corners filled with black
  kPerspective,  // a photo taken at an angle: one side's corners close in by 10-22 % of the side each,
                 // every corner jitters inwards by up to 5.5 %
  kBlur,         // Gaussian blur, sigma 1.5-3.5 px on the canvas (0.4-0.9 px at 28 px)
  kNoise,        // Gaussian sensor noise, sigma 12-30 grey levels per pixel and channel
  kJpeg,         // JPEG at quality 8-25
  kLighting,     // contrast x0.55-1.45, brightness -45..+45, a side light (x0.6-1.0 to x1.0-1.3) and a colour
                 // cast
  kGamma,        // gamma 0.45-2.2 (log-uniform)
  kClutter,    // the product (its non-black pixels) shrunk to 50-75 % and placed on a random cluttered table
  kOcclusion,  // a rectangle covering 15-25 % of the image (a finger, a sticker) in a random flat colour
  kLowRes,     // downscaled to 12-20 px a side, then enlarged back (a far-away photo)
  kMirror,     // mirrored left-right
  kScreenPhoto,  // a photo of a screen: raised black level, moire (two beating sine gratings, 12-22 % deep),
                 // perspective 4-10 % (as above), blur sigma 1-2.5 px, gamma 0.7-1.5, noise sigma 6-14, JPEG
                 // quality 40-70
  kPrintedPage,  // a photo of a printed page: printed at 70-90 % on white paper with reduced ink range and a
                 // halftone dot pattern, then perspective 4-10 %, blur 1-2.5, gamma 0.7-1.5, warm light,
                 // noise 6-14
  kPhone,        // an everyday phone photo: crop 80-95 %, rotation up to 12 degrees, perspective 0-6 %,
                 // blur sigma 0.8-2, lighting, noise sigma 4-10, JPEG quality 50-80
};

// The distortions of the suite, in report order; kNone is not among them.
const std::vector<Distortion>& suite_distortions();

// Short stable name used on the command line and in reports: "crop", "rotation", ...
const char* to_string(Distortion distortion) noexcept;

// The distortion with that name, if any.
std::optional<Distortion> distortion_from_string(const std::string& name);

// Returns a kWorkSide x kWorkSide, 3-channel photo of image with the distortion
// applied. image may have 1 or 3 channels and any size >= 1 x 1. Deterministic
// in (image, distortion, seed). Throws Error(kInvalidInput) for an empty image.
// Thread-safe (no shared state).
Image distort(const Image& image, Distortion distortion, std::uint64_t seed);

}  // namespace lookalike::image
