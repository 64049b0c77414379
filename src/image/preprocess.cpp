#include "image/image.h"

#include <algorithm>
#include <cmath>
#include <string>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "common/error.h"
#include "image/mat.h"

namespace lookalike::image {
namespace {

void check_image(const Image& image, const char* caller) {
  const std::string where = std::string(caller) + ": ";
  if (image.channels != 1 && image.channels != 3) {
    throw Error(ErrorKind::kInvalidInput,
                where + "image has " + std::to_string(image.channels) + " channels, not 1 or 3");
  }
  if (image.width <= 0 || image.height <= 0) {
    throw Error(ErrorKind::kInvalidInput, where + "image has no pixels (" +
                                              std::to_string(image.width) + " x " +
                                              std::to_string(image.height) + ")");
  }
  const std::size_t expected =
      static_cast<std::size_t>(image.width) * image.height * image.channels;
  if (image.pixels.size() != expected) {
    throw Error(ErrorKind::kInvalidInput, where + "image holds " +
                                              std::to_string(image.pixels.size()) +
                                              " bytes, expected " + std::to_string(expected));
  }
}

void check_spec(const InputSpec& spec) {
  if (spec.channels != 1 && spec.channels != 3) {
    throw Error(ErrorKind::kInvalidInput,
                "input spec asks for " + std::to_string(spec.channels) + " channels, not 1 or 3");
  }
  if (spec.width <= 0 || spec.height <= 0) {
    throw Error(ErrorKind::kInvalidInput, "input spec size must be positive, got " +
                                              std::to_string(spec.width) + " x " +
                                              std::to_string(spec.height));
  }
  const auto channels = static_cast<std::size_t>(spec.channels);
  if (spec.mean.size() != channels || spec.stddev.size() != channels) {
    throw Error(ErrorKind::kInvalidInput, "input spec needs one mean and one stddev per channel (" +
                                              std::to_string(channels) + "), got " +
                                              std::to_string(spec.mean.size()) + " and " +
                                              std::to_string(spec.stddev.size()));
  }
  for (float s : spec.stddev) {
    if (!(s > 0.f)) throw Error(ErrorKind::kInvalidInput, "input spec stddev must be positive");
  }
}

// A read-only view of the pixels; OpenCV needs a non-const pointer but never writes here.
cv::Mat view(const Image& image) {
  return cv::Mat(image.height, image.width, CV_8UC(image.channels),
                 const_cast<std::uint8_t*>(image.pixels.data()));
}

}  // namespace

Image fit_within(const Image& image, int max_side) {
  check_image(image, "fit_within");
  if (max_side < 1) throw Error(ErrorKind::kInvalidInput, "fit_within: max_side must be >= 1");
  if (image.width <= max_side && image.height <= max_side) return image;
  const double scale = double(max_side) / std::max(image.width, image.height);
  const int width = std::max(1, static_cast<int>(std::lround(image.width * scale)));
  const int height = std::max(1, static_cast<int>(std::lround(image.height * scale)));
  cv::Mat shrunk;
  try {
    cv::resize(view(image), shrunk, cv::Size(width, height), 0, 0, cv::INTER_AREA);
  } catch (const cv::Exception& e) {
    throw Error(ErrorKind::kInternal, std::string("fit_within: ") + e.what());
  }
  return to_image(shrunk);
}

Gray parse_gray(const std::string& name, const std::string& what) {
  if (name == "luma") return Gray::kLuma;
  if (name == "value") return Gray::kValue;
  throw Error(ErrorKind::kInvalidInput,
              what + " must be \"luma\" or \"value\", not \"" + name.substr(0, 32) + "\"");
}

const char* to_string(Gray gray) noexcept { return gray == Gray::kValue ? "value" : "luma"; }

void preprocess(const Image& image, const InputSpec& spec, float* out) {
  check_image(image, "preprocess");
  check_spec(spec);
  // Reused across calls so that ingesting many same-sized images allocates nothing.
  thread_local cv::Mat gray;
  thread_local cv::Mat resized;
  cv::Mat current = view(image);
  try {
    if (image.channels == 3 && spec.channels == 1) {
      if (spec.gray == Gray::kValue) {
        thread_local cv::Mat planes[3];
        cv::split(current, planes);
        cv::max(planes[0], planes[1], gray);
        cv::max(gray, planes[2], gray);
      } else {
        cv::cvtColor(current, gray, cv::COLOR_RGB2GRAY);
      }
      current = gray;
    }
    if (current.cols != spec.width || current.rows != spec.height) {
      const bool shrinking = spec.width <= current.cols && spec.height <= current.rows;
      cv::resize(current, resized, cv::Size(spec.width, spec.height), 0, 0,
                 shrinking ? cv::INTER_AREA : cv::INTER_LINEAR);
      current = resized;
    }
  } catch (const cv::Exception& e) {
    throw Error(ErrorKind::kInternal, std::string("preprocess: ") + e.what());
  }

  const int in_channels = current.channels();
  const std::size_t plane = static_cast<std::size_t>(spec.width) * spec.height;
  for (int c = 0; c < spec.channels; ++c) {
    // (v / 255 - mean) / stddev folded into one multiply-add per value.
    const float scale = 1.f / (255.f * spec.stddev[c]);
    const float bias = -spec.mean[c] / spec.stddev[c];
    const int source = in_channels == 1 ? 0 : c;
    float* o = out + plane * c;
    for (int y = 0; y < current.rows; ++y) {
      const std::uint8_t* row = current.ptr<std::uint8_t>(y) + source;
      for (int x = 0; x < current.cols; ++x) *o++ = row[x * in_channels] * scale + bias;
    }
  }
}

std::vector<std::uint8_t> encode_png(const Image& image) {
  check_image(image, "encode_png");
  std::vector<std::uint8_t> png;
  try {
    cv::Mat pixels = view(image);
    cv::Mat bgr;
    if (image.channels == 3) {
      cv::cvtColor(pixels, bgr, cv::COLOR_RGB2BGR);
      pixels = bgr;
    }
    if (!cv::imencode(".png", pixels, png)) {
      throw Error(ErrorKind::kInternal, "encode_png: OpenCV could not encode the image");
    }
  } catch (const cv::Exception& e) {
    throw Error(ErrorKind::kInternal, std::string("encode_png: ") + e.what());
  }
  return png;
}

}  // namespace lookalike::image
