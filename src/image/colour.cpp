#include "image/colour.h"

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "image/mat.h"

namespace lookalike::image {

namespace {

// 0 below lo, 1 above hi, linear between.
float ramp(float v, float lo, float hi) { return std::clamp((v - lo) / (hi - lo), 0.f, 1.f); }

// Below this saturation a hue is mostly sensor noise and JPEG chroma error; by the
// upper end the colour is plainly a colour.
constexpr float kChromaSatLo = 0.12f, kChromaSatHi = 0.28f;
// Below this value (max channel / 255) 8-bit quantisation makes the hue meaningless:
// such pixels are black, however saturated. Low on purpose: a dim red is still red.
constexpr float kChromaValLo = 0.05f, kChromaValHi = 0.15f;
// Saturation between the muted ring and the vivid ring.
constexpr float kRingLo = 0.35f, kRingHi = 0.6f;
// Value splits of the achromatic pixels: black below, white above, grey between.
constexpr float kBlackLo = 0.15f, kBlackHi = 0.35f, kWhiteLo = 0.65f, kWhiteHi = 0.85f;
// A border is a plain background when this share of its pixels lies within
// kPlainTolerance (RGB distance) of its median colour.
constexpr float kPlainShare = 0.6f, kPlainTolerance = 40.f;
// The background threshold grows with how much the border varies (a side light, noise,
// JPEG) but stays inside these bounds, in RGB distance.
constexpr float kMinThreshold = 24.f, kMaxThreshold = 80.f;

struct Rgb {
  float r, g, b;
};

float distance(const Rgb& a, const Rgb& b) {
  const float dr = a.r - b.r, dg = a.g - b.g, db = a.b - b.b;
  return std::sqrt(dr * dr + dg * dg + db * db);
}

float median_of(std::vector<float>& values) {
  auto middle = values.begin() + static_cast<std::ptrdiff_t>(values.size() / 2);
  std::nth_element(values.begin(), middle, values.end());
  return *middle;
}

// The pixels as RGB floats, shrunk to at most kColourMaxSide on the long side.
std::vector<Rgb> pixels_of(const Image& image, int& width, int& height) {
  cv::Mat src(image.height, image.width, image.channels == 1 ? CV_8UC1 : CV_8UC3,
              const_cast<std::uint8_t*>(image.pixels.data()));
  cv::Mat small = src;
  const int long_side = std::max(image.width, image.height);
  if (long_side > kColourMaxSide) {
    const double scale = double(kColourMaxSide) / long_side;
    const int w = std::max(1, static_cast<int>(std::lround(image.width * scale)));
    const int h = std::max(1, static_cast<int>(std::lround(image.height * scale)));
    cv::resize(src, small, cv::Size(w, h), 0, 0, cv::INTER_AREA);
  }
  width = small.cols;
  height = small.rows;
  std::vector<Rgb> out(static_cast<std::size_t>(width) * height);
  for (int y = 0; y < height; ++y) {
    const std::uint8_t* row = small.ptr<std::uint8_t>(y);
    for (int x = 0; x < width; ++x) {
      Rgb& p = out[static_cast<std::size_t>(y) * width + x];
      if (image.channels == 1) {
        p.r = p.g = p.b = row[x];
      } else {
        p = Rgb{float(row[3 * x]), float(row[3 * x + 1]), float(row[3 * x + 2])};
      }
    }
  }
  return out;
}

// Per pixel, how much it belongs to the product (0 background .. 1 product).
std::vector<float> foreground_weights(const std::vector<Rgb>& pixels, int width, int height) {
  const int ring = std::max(1, std::min(width, height) / 16);
  std::vector<Rgb> border;
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      if (x < ring || y < ring || x >= width - ring || y >= height - ring) {
        border.push_back(pixels[static_cast<std::size_t>(y) * width + x]);
      }
    }
  }
  std::vector<float> channel(border.size());
  Rgb background{};
  for (int c = 0; c < 3; ++c) {
    for (std::size_t i = 0; i < border.size(); ++i)
      channel[i] = c == 0 ? border[i].r : c == 1 ? border[i].g : border[i].b;
    (c == 0 ? background.r : c == 1 ? background.g : background.b) = median_of(channel);
  }
  std::vector<float> distances(border.size());
  std::size_t close = 0;
  for (std::size_t i = 0; i < border.size(); ++i) {
    distances[i] = distance(border[i], background);
    if (distances[i] <= kPlainTolerance) ++close;
  }
  std::vector<float> weights(pixels.size(), 1.f);
  if (close < kPlainShare * static_cast<float>(border.size())) return weights;  // no plain background
  auto p75 = distances.begin() + static_cast<std::ptrdiff_t>(distances.size() * 3 / 4);
  std::nth_element(distances.begin(), p75, distances.end());
  const float threshold = std::clamp(2 * *p75 + 16, kMinThreshold, kMaxThreshold);
  for (std::size_t i = 0; i < pixels.size(); ++i) {
    // Soft edge: anti-aliased outline pixels, half product and half background, count half.
    weights[i] = ramp(distance(pixels[i], background), threshold, 2 * threshold);
  }
  return weights;
}

}  // namespace

ColourDescriptor colour_descriptor(const Image& image) {
  if (image.width <= 0 || image.height <= 0 || (image.channels != 1 && image.channels != 3) ||
      image.pixels.size() != static_cast<std::size_t>(image.width) * image.height * image.channels) {
    throw Error(ErrorKind::kInvalidInput,
                "colour descriptor: the image is empty or its pixels do not match its size");
  }
  int width = 0, height = 0;
  const std::vector<Rgb> pixels = pixels_of(image, width, height);
  const std::vector<float> weights = foreground_weights(pixels, width, height);
  std::array<double, kColourBins> bins{};
  double mass = 0;
  for (std::size_t i = 0; i < pixels.size(); ++i) {
    const float w = weights[i];
    if (w <= 0) continue;
    const Rgb& p = pixels[i];
    const float max = std::max({p.r, p.g, p.b}), min = std::min({p.r, p.g, p.b});
    const float value = max / 255.f;
    const float saturation = max > 0 ? (max - min) / max : 0.f;
    const float chroma =
        ramp(saturation, kChromaSatLo, kChromaSatHi) * ramp(value, kChromaValLo, kChromaValHi);
    if (chroma > 0) {
      float hue;  // degrees, 0..360
      const float span = max - min;
      if (max == p.r) {
        hue = 60.f * std::fmod((p.g - p.b) / span + 6.f, 6.f);
      } else if (max == p.g) {
        hue = 60.f * ((p.b - p.r) / span + 2.f);
      } else {
        hue = 60.f * ((p.r - p.g) / span + 4.f);
      }
      const float sector = hue / (360.f / kHueBins);
      const float floor = std::floor(sector);
      const float upper = sector - floor;
      const std::size_t h0 = static_cast<std::size_t>(floor) % kHueBins, h1 = (h0 + 1) % kHueBins;
      const float vivid = ramp(saturation, kRingLo, kRingHi);
      const double m = double(w) * chroma;
      bins[h0] += m * (1 - upper) * (1 - vivid);
      bins[h1] += m * upper * (1 - vivid);
      bins[kHueBins + h0] += m * (1 - upper) * vivid;
      bins[kHueBins + h1] += m * upper * vivid;
    }
    const double grey_mass = double(w) * (1 - chroma);
    if (grey_mass > 0) {
      const float black = 1 - ramp(value, kBlackLo, kBlackHi), white = ramp(value, kWhiteLo, kWhiteHi);
      bins[kBlackBin] += grey_mass * black;
      bins[kWhiteBin] += grey_mass * white;
      bins[kGreyBin] += grey_mass * (1 - black - white);
    }
    mass += w;
  }
  ColourDescriptor out{};
  // Less than one whole product pixel: nothing to describe.
  if (mass < 1) return out;
  for (std::size_t b = 0; b < kColourBins; ++b) out[b] = static_cast<float>(bins[b] / mass);
  return out;
}

bool has_colour(const ColourDescriptor& descriptor) {
  return std::any_of(descriptor.begin(), descriptor.end(), [](float v) { return v > 0; });
}

double colour_similarity(const ColourDescriptor& a, const ColourDescriptor& b) {
  double sum = 0;
  for (std::size_t i = 0; i < kBlackBin; ++i) sum += std::min(a[i], b[i]);
  // Black, grey and white count as one: how light a colourless item is, the look (the
  // embedding) already sees, and on an all-gray catalog lightness alone would reorder
  // look-alikes by a signal that is not colour.
  double achromatic_a = 0, achromatic_b = 0;
  for (std::size_t i = kBlackBin; i < kColourBins; ++i) {
    achromatic_a += a[i];
    achromatic_b += b[i];
  }
  sum += std::min(achromatic_a, achromatic_b);
  return std::clamp(sum, 0.0, 1.0);
}

const char* dominant_colour_name(const ColourDescriptor& descriptor) {
  static constexpr const char* kSectorNames[kHueBins] = {"red",   "orange", "yellow",  "green",
                                                         "green", "green",  "cyan",    "blue",
                                                         "blue",  "purple", "magenta", "red"};
  if (!has_colour(descriptor)) return "";
  // Sectors that share a name pool their weight, so a green spread over three sectors
  // is not beaten by a smaller single-sector colour.
  std::array<double, kHueBins> sector{};
  for (std::size_t h = 0; h < kHueBins; ++h) {
    for (std::size_t r = 0; r < kSaturationRings; ++r) sector[h] += descriptor[r * kHueBins + h];
  }
  const char* best = "black";
  double best_weight = -1;
  auto consider = [&](const char* name, double weight) {
    if (weight > best_weight) {
      best = name;
      best_weight = weight;
    }
  };
  for (std::size_t h = 0; h < kHueBins; ++h) {
    double pooled = 0;
    for (std::size_t o = 0; o < kHueBins; ++o) {
      if (std::string_view(kSectorNames[o]) == kSectorNames[h]) pooled += sector[o];
    }
    consider(kSectorNames[h], pooled);
  }
  consider("black", descriptor[kBlackBin]);
  consider("grey", descriptor[kGreyBin]);
  consider("white", descriptor[kWhiteBin]);
  return best;
}

}  // namespace lookalike::image
