// Synthetic shopper photos (see distort.h for the strength of each distortion).
#include "image/distort.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <utility>

#include "common/error.h"
#include "common/hash.h"
#include "image/mat.h"

namespace lookalike::image {
namespace {

constexpr double kPi = 3.14159265358979323846;

// SplitMix64: fully specified, so the photos are the same on every platform and
// standard library (std::uniform_real_distribution is not).
class Random {
 public:
  explicit Random(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    const std::uint64_t z = splitmix64(state_);
    state_ += kSplitMix64Increment;
    return z;
  }
  double uniform(double lo, double hi) { return lo + (hi - lo) * double(next() >> 11) * 0x1.0p-53; }
  int integer(int lo, int hi) {
    return lo + static_cast<int>(next() % std::uint64_t(hi - lo + 1));
  }  // lo..hi
  double log_uniform(double lo, double hi) { return std::exp(uniform(std::log(lo), std::log(hi))); }
  double sign() { return (next() & 1) ? 1.0 : -1.0; }
  double gaussian() {  // Box-Muller
    double u1 = std::max(uniform(0, 1), 1e-12), u2 = uniform(0, 1);
    return std::sqrt(-2 * std::log(u1)) * std::cos(2 * kPi * u2);
  }
  cv::Scalar colour(int lo = 0, int hi = 255) {
    return cv::Scalar(integer(lo, hi), integer(lo, hi), integer(lo, hi));
  }

 private:
  std::uint64_t state_;
};

cv::Mat to_canvas(const Image& image) {
  cv::Mat src(image.height, image.width, CV_8UC(image.channels),
              const_cast<std::uint8_t*>(image.pixels.data()));
  cv::Mat rgb;
  if (image.channels == 1) {
    cv::cvtColor(src, rgb, cv::COLOR_GRAY2RGB);
  } else {
    rgb = src.clone();
  }
  cv::Mat canvas;
  cv::resize(rgb, canvas, cv::Size(kWorkSide, kWorkSide), 0, 0, cv::INTER_LINEAR);
  return canvas;
}

// Applies f(value, x, y, channel) -> new value to every sample, saturating.
template <typename F>
void per_sample(cv::Mat& mat, F f) {
  for (int y = 0; y < mat.rows; ++y) {
    auto* row = mat.ptr<cv::Vec3b>(y);
    for (int x = 0; x < mat.cols; ++x) {
      for (int c = 0; c < 3; ++c) row[x][c] = cv::saturate_cast<std::uint8_t>(f(double(row[x][c]), x, y, c));
    }
  }
}

cv::Mat crop_window(const cv::Mat& in, double scale_lo, double scale_hi, Random& rng) {
  const double s = rng.uniform(scale_lo, scale_hi);
  const double aspect = rng.uniform(0.9, 1.1);
  int w = std::clamp(static_cast<int>(std::lround(in.cols * s * aspect)), 1, in.cols);
  int h = std::clamp(static_cast<int>(std::lround(in.rows * s / aspect)), 1, in.rows);
  int x = rng.integer(0, in.cols - w), y = rng.integer(0, in.rows - h);
  cv::Mat out;
  cv::resize(in(cv::Rect(x, y, w, h)), out, in.size(), 0, 0, cv::INTER_LINEAR);
  return out;
}

cv::Mat rotate(const cv::Mat& in, double degrees, const cv::Scalar& fill) {
  cv::Mat m = cv::getRotationMatrix2D(cv::Point2f(in.cols / 2.f, in.rows / 2.f), degrees, 1.0);
  cv::Mat out;
  cv::warpAffine(in, out, m, in.size(), cv::INTER_LINEAR, cv::BORDER_CONSTANT, fill);
  return out;
}

// A camera that is not square-on: the two corners of a random far side close in
// along that side by a fraction drawn from [lo, hi] of the side each, and every
// corner jitters inwards by up to a quarter of hi.
cv::Mat perspective(const cv::Mat& in, double lo, double hi, const cv::Scalar& fill, Random& rng) {
  const float w = float(in.cols - 1), h = float(in.rows - 1);
  const std::array<cv::Point2f, 4> src = {cv::Point2f(0, 0), cv::Point2f(w, 0), cv::Point2f(w, h),
                                          cv::Point2f(0, h)};
  const std::array<cv::Point2f, 4> inward = {cv::Point2f(1, 1), cv::Point2f(-1, 1), cv::Point2f(-1, -1),
                                             cv::Point2f(1, -1)};
  std::array<cv::Point2f, 4> dst;
  for (int i = 0; i < 4; ++i) {
    dst[i] = src[i] + cv::Point2f(inward[i].x * float(rng.uniform(0, hi / 4) * in.cols),
                                  inward[i].y * float(rng.uniform(0, hi / 4) * in.rows));
  }
  const int far = rng.integer(0, 3);  // side from corner far to corner far + 1
  const int a = far, b = (far + 1) % 4;
  const cv::Point2f along = (src[b] - src[a]) * (1.f / float(std::max(in.cols, in.rows) - 1));
  const float shrink = float(rng.uniform(lo, hi) * std::max(in.cols, in.rows));
  dst[a] += along * shrink;
  dst[b] -= along * shrink;
  cv::Mat m = cv::getPerspectiveTransform(src.data(), dst.data());
  cv::Mat out;
  cv::warpPerspective(in, out, m, in.size(), cv::INTER_LINEAR, cv::BORDER_CONSTANT, fill);
  return out;
}

cv::Mat blur(const cv::Mat& in, double sigma) {
  cv::Mat out;
  cv::GaussianBlur(in, out, cv::Size(0, 0), sigma);
  return out;
}

void add_noise(cv::Mat& mat, double sigma, Random& rng) {
  per_sample(mat, [&](double v, int, int, int) { return v + sigma * rng.gaussian(); });
}

cv::Mat jpeg(const cv::Mat& in, int quality) {
  std::vector<std::uint8_t> bytes;
  cv::imencode(".jpg", in, bytes, {cv::IMWRITE_JPEG_QUALITY, quality});
  return cv::imdecode(bytes, cv::IMREAD_COLOR);
}

void gamma(cv::Mat& mat, double g) {
  cv::Mat lut(1, 256, CV_8U);
  for (int i = 0; i < 256; ++i)
    lut.at<std::uint8_t>(i) = cv::saturate_cast<std::uint8_t>(255 * std::pow(i / 255.0, g));
  cv::LUT(mat, lut, mat);
}

// Contrast, brightness, a light falling from one side and a colour cast.
void lighting(cv::Mat& mat, double contrast, double brightness, double dark_side, double bright_side,
              const std::array<double, 3>& cast, Random& rng) {
  const double angle = rng.uniform(0, 2 * kPi);
  const double dx = std::cos(angle), dy = std::sin(angle);
  const double half = mat.cols / 2.0;
  per_sample(mat, [&](double v, int x, int y, int c) {
    double t = ((x - half) * dx + (y - half) * dy) / (half * std::sqrt(2.0)) * 0.5 + 0.5;  // 0..1 across
    double light = dark_side + (bright_side - dark_side) * t;
    return ((v - 128) * contrast + 128 + brightness) * light * cast[c];
  });
}

// Where the product is: pixels that differ from the background colour (the
// median of the border), with holes filled, so a dark pattern inside a garment
// still counts as garment.
cv::Mat product_mask(const cv::Mat& canvas) {
  cv::Mat gray;
  cv::cvtColor(canvas, gray, cv::COLOR_RGB2GRAY);
  std::vector<std::uint8_t> border;
  for (int x = 0; x < gray.cols; ++x) {
    border.push_back(gray.at<std::uint8_t>(0, x));
    border.push_back(gray.at<std::uint8_t>(gray.rows - 1, x));
  }
  for (int y = 0; y < gray.rows; ++y) {
    border.push_back(gray.at<std::uint8_t>(y, 0));
    border.push_back(gray.at<std::uint8_t>(y, gray.cols - 1));
  }
  std::nth_element(border.begin(), border.begin() + border.size() / 2, border.end());
  const int background = border[border.size() / 2];
  cv::Mat diff, mask;
  cv::absdiff(gray, cv::Scalar(background), diff);
  cv::threshold(diff, mask, 12, 255, cv::THRESH_BINARY);
  cv::morphologyEx(mask, mask, cv::MORPH_CLOSE, cv::getStructuringElement(cv::MORPH_ELLIPSE, cv::Size(5, 5)));
  // Fill holes: flood the outside from a padded corner; what it cannot reach is inside.
  cv::Mat padded;
  cv::copyMakeBorder(mask, padded, 1, 1, 1, 1, cv::BORDER_CONSTANT, cv::Scalar(0));
  cv::floodFill(padded, cv::Point(0, 0), cv::Scalar(128));
  cv::Mat outside = padded(cv::Rect(1, 1, mask.cols, mask.rows)) == 128;
  cv::bitwise_not(outside, mask);
  return mask;
}

cv::Mat cluttered_table(const cv::Size& size, Random& rng) {
  cv::Mat table(size, CV_8UC3, rng.colour(40, 200));
  const int shapes = rng.integer(14, 24);
  for (int i = 0; i < shapes; ++i) {
    cv::Point a(rng.integer(-20, size.width + 20), rng.integer(-20, size.height + 20));
    cv::Point b(rng.integer(-20, size.width + 20), rng.integer(-20, size.height + 20));
    switch (rng.integer(0, 2)) {
      case 0:
        cv::rectangle(table, a, b, rng.colour(), cv::FILLED);
        break;
      case 1:
        cv::circle(table, a, rng.integer(4, size.width / 3), rng.colour(), cv::FILLED);
        break;
      default:
        cv::line(table, a, b, rng.colour(), rng.integer(1, 5));
        break;
    }
  }
  return blur(table, 0.8);
}

// The product (mask of canvas) shrunk by scale and laid on background at a random place.
cv::Mat place_on(const cv::Mat& canvas, const cv::Mat& background, double scale, Random& rng) {
  cv::Mat mask = product_mask(canvas);
  const int w = std::max(1, static_cast<int>(std::lround(canvas.cols * scale)));
  const int h = std::max(1, static_cast<int>(std::lround(canvas.rows * scale)));
  cv::Mat small, small_mask;
  cv::resize(canvas, small, cv::Size(w, h), 0, 0, cv::INTER_AREA);
  cv::resize(mask, small_mask, cv::Size(w, h), 0, 0, cv::INTER_AREA);
  cv::Mat out = background.clone();
  const int x0 = rng.integer(0, out.cols - w), y0 = rng.integer(0, out.rows - h);
  for (int y = 0; y < h; ++y) {
    const auto* src = small.ptr<cv::Vec3b>(y);
    const auto* alpha = small_mask.ptr<std::uint8_t>(y);
    auto* dst = out.ptr<cv::Vec3b>(y0 + y);
    for (int x = 0; x < w; ++x) {
      const double a = alpha[x] / 255.0;
      for (int c = 0; c < 3; ++c) {
        dst[x0 + x][c] = cv::saturate_cast<std::uint8_t>(a * src[x][c] + (1 - a) * dst[x0 + x][c]);
      }
    }
  }
  return out;
}

cv::Mat occlude(const cv::Mat& in, Random& rng) {
  const double area = rng.uniform(0.15, 0.25) * in.cols * in.rows;
  const double aspect = rng.log_uniform(0.5, 2.0);
  const int w = std::min(in.cols, static_cast<int>(std::lround(std::sqrt(area * aspect))));
  const int h = std::min(in.rows, static_cast<int>(std::lround(area / std::max(w, 1))));
  // Centred in the middle 60 % so that it covers part of the product, not only background.
  const int cx = rng.integer(in.cols / 5, in.cols * 4 / 5), cy = rng.integer(in.rows / 5, in.rows * 4 / 5);
  const int x = std::clamp(cx - w / 2, 0, in.cols - w), y = std::clamp(cy - h / 2, 0, in.rows - h);
  cv::Mat out = in.clone();
  cv::rectangle(out, cv::Rect(x, y, w, h), rng.colour(), cv::FILLED);
  return out;
}

cv::Mat low_resolution(const cv::Mat& in, int side) {
  cv::Mat small, out;
  cv::resize(in, small, cv::Size(side, side), 0, 0, cv::INTER_AREA);
  cv::resize(small, out, in.size(), 0, 0, cv::INTER_LINEAR);
  return out;
}

// Two fine sine gratings at slightly different frequency and angle multiply to
// the slow beating bands a camera records from a pixel grid.
void moire(cv::Mat& mat, double depth, Random& rng) {
  const double f1 = rng.uniform(0.38, 0.46), f2 = f1 + rng.uniform(0.02, 0.06);  // cycles per pixel
  const double a1 = rng.uniform(0, kPi), a2 = a1 + rng.uniform(0.03, 0.12);
  const double p1 = rng.uniform(0, 2 * kPi), p2 = rng.uniform(0, 2 * kPi);
  per_sample(mat, [&](double v, int x, int y, int) {
    double g1 = std::sin(2 * kPi * f1 * (x * std::cos(a1) + y * std::sin(a1)) + p1);
    double g2 = std::sin(2 * kPi * f2 * (x * std::cos(a2) + y * std::sin(a2)) + p2);
    return v * (1 - depth * (0.5 + 0.5 * g1 * g2));
  });
}

cv::Mat screen_photo(const cv::Mat& canvas, Random& rng) {
  cv::Mat m = canvas.clone();
  const double black = rng.uniform(18, 40), white = rng.uniform(215, 245);
  per_sample(m, [&](double v, int, int, int) { return black + v * (white - black) / 255; });
  moire(m, rng.uniform(0.12, 0.22), rng);
  m = perspective(m, 0.04, 0.10, rng.colour(10, 60), rng);
  m = blur(m, rng.uniform(1.0, 2.5));
  gamma(m, rng.log_uniform(0.7, 1.5));
  add_noise(m, rng.uniform(6, 14), rng);
  return jpeg(m, rng.integer(40, 70));
}

cv::Mat printed_page(const cv::Mat& canvas, Random& rng) {
  // Ink cannot reach black nor the paper's white: the print has a reduced range.
  cv::Mat print = canvas.clone();
  const double ink_black = rng.uniform(30, 60), ink_white = rng.uniform(200, 230);
  per_sample(print, [&](double v, int, int, int) { return ink_black + v * (ink_white - ink_black) / 255; });
  const double period = rng.uniform(2.6, 3.6), strength = rng.uniform(0.10, 0.20);
  per_sample(print, [&](double v, int x, int y, int) {
    double dots = 0.5 + 0.5 * std::cos(2 * kPi * x / period) * std::cos(2 * kPi * y / period);
    return v * (1 - strength * dots);
  });
  const double scale = rng.uniform(0.70, 0.90);
  const int w = static_cast<int>(std::lround(canvas.cols * scale)),
            h = static_cast<int>(std::lround(canvas.rows * scale));
  cv::Mat small;
  cv::resize(print, small, cv::Size(w, h), 0, 0, cv::INTER_AREA);
  cv::Mat page(canvas.size(), CV_8UC3,
               cv::Scalar(rng.integer(225, 250), rng.integer(222, 245), rng.integer(210, 235)));
  small.copyTo(page(cv::Rect(rng.integer(0, canvas.cols - w), rng.integer(0, canvas.rows - h), w, h)));
  page = perspective(page, 0.04, 0.10, rng.colour(30, 120), rng);
  page = blur(page, rng.uniform(1.0, 2.5));
  gamma(page, rng.log_uniform(0.7, 1.5));
  lighting(page, 1.0, 0, rng.uniform(0.7, 0.95), rng.uniform(1.0, 1.15), {1.06, 1.0, 0.9}, rng);
  add_noise(page, rng.uniform(6, 14), rng);
  return page;
}

cv::Mat phone_photo(const cv::Mat& canvas, Random& rng) {
  cv::Mat m = crop_window(canvas, 0.80, 0.95, rng);
  m = rotate(m, rng.uniform(-12, 12), cv::Scalar(0, 0, 0));
  m = perspective(m, 0.0, 0.06, cv::Scalar(0, 0, 0), rng);
  m = blur(m, rng.uniform(0.8, 2.0));
  lighting(m, rng.uniform(0.8, 1.2), rng.uniform(-20, 20), rng.uniform(0.8, 1.0), rng.uniform(1.0, 1.15),
           {rng.uniform(0.92, 1.08), 1.0, rng.uniform(0.92, 1.08)}, rng);
  add_noise(m, rng.uniform(4, 10), rng);
  return jpeg(m, rng.integer(50, 80));
}

struct Named {
  Distortion distortion;
  const char* name;
};
constexpr Named kNames[] = {
    {Distortion::kNone, "none"},
    {Distortion::kCrop, "crop"},
    {Distortion::kRotation, "rotation"},
    {Distortion::kPerspective, "perspective"},
    {Distortion::kBlur, "blur"},
    {Distortion::kNoise, "noise"},
    {Distortion::kJpeg, "jpeg"},
    {Distortion::kLighting, "lighting"},
    {Distortion::kGamma, "gamma"},
    {Distortion::kClutter, "clutter"},
    {Distortion::kOcclusion, "occlusion"},
    {Distortion::kLowRes, "low-res"},
    {Distortion::kMirror, "mirror"},
    {Distortion::kScreenPhoto, "screen-photo"},
    {Distortion::kPrintedPage, "printed-page"},
    {Distortion::kPhone, "phone"},
};

}  // namespace

const std::vector<Distortion>& suite_distortions() {
  static const std::vector<Distortion> suite = [] {
    std::vector<Distortion> all;
    for (const auto& n : kNames) {
      if (n.distortion != Distortion::kNone) all.push_back(n.distortion);
    }
    return all;
  }();
  return suite;
}

const char* to_string(Distortion distortion) noexcept {
  for (const auto& n : kNames) {
    if (n.distortion == distortion) return n.name;
  }
  return "unknown";
}

std::optional<Distortion> distortion_from_string(const std::string& name) {
  for (const auto& n : kNames) {
    if (name == n.name) return n.distortion;
  }
  return std::nullopt;
}

Image distort(const Image& image, Distortion distortion, std::uint64_t seed) {
  if (image.width < 1 || image.height < 1 || (image.channels != 1 && image.channels != 3) ||
      image.pixels.size() != std::size_t(image.width) * image.height * image.channels) {
    throw Error(ErrorKind::kInvalidInput, "cannot distort an empty or malformed image");
  }
  // The distortion takes part in the seed, so one seed gives unrelated draws per distortion.
  Random rng(seed * kSplitMix64Increment + static_cast<std::uint64_t>(distortion) + 1);
  const cv::Mat canvas = to_canvas(image);
  const cv::Scalar black(0, 0, 0);
  cv::Mat out;
  switch (distortion) {
    case Distortion::kNone:
      out = canvas;
      break;
    case Distortion::kCrop:
      out = crop_window(canvas, 0.65, 0.85, rng);
      break;
    case Distortion::kRotation:
      out = rotate(canvas, rng.sign() * rng.uniform(15, 35), black);
      break;
    case Distortion::kPerspective:
      out = perspective(canvas, 0.10, 0.22, black, rng);
      break;
    case Distortion::kBlur:
      out = blur(canvas, rng.uniform(1.5, 3.5));
      break;
    case Distortion::kNoise:
      out = canvas.clone();
      add_noise(out, rng.uniform(12, 30), rng);
      break;
    case Distortion::kJpeg:
      out = jpeg(canvas, rng.integer(8, 25));
      break;
    case Distortion::kLighting: {
      out = canvas.clone();
      const double contrast = rng.uniform(0.55, 1.45), brightness = rng.uniform(-45, 45);
      const double dark = rng.uniform(0.6, 1.0), bright = rng.uniform(1.0, 1.3);
      lighting(out, contrast, brightness, dark, bright,
               {rng.uniform(0.85, 1.15), rng.uniform(0.85, 1.15), rng.uniform(0.85, 1.15)}, rng);
      break;
    }
    case Distortion::kGamma:
      out = canvas.clone();
      gamma(out, rng.log_uniform(0.45, 2.2));
      break;
    case Distortion::kClutter:
      out = place_on(canvas, cluttered_table(canvas.size(), rng), rng.uniform(0.5, 0.75), rng);
      break;
    case Distortion::kOcclusion:
      out = occlude(canvas, rng);
      break;
    case Distortion::kLowRes:
      out = low_resolution(canvas, rng.integer(12, 20));
      break;
    case Distortion::kMirror:
      cv::flip(canvas, out, 1);
      break;
    case Distortion::kScreenPhoto:
      out = screen_photo(canvas, rng);
      break;
    case Distortion::kPrintedPage:
      out = printed_page(canvas, rng);
      break;
    case Distortion::kPhone:
      out = phone_photo(canvas, rng);
      break;
  }
  return to_image(out);
}

}  // namespace lookalike::image
