#include "image/views.h"

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>
#include <optional>

#include "common/error.h"
#include "image/mat.h"

namespace lookalike::image {

namespace {

// A border is a plain background when this share of its pixels lies within
// kPlainTolerance (largest channel difference) of its median colour.
constexpr double kPlainShare = 0.6;
constexpr int kPlainTolerance = 40;
// The foreground crop is a view only when its box leaves out at least this share of
// the frame's area: a tighter crop of an item that already fills the frame would be
// a zoom the catalog's photos do not have.
constexpr double kMinCroppedShare = 0.2;

std::vector<cv::Vec3b> border_pixels(const cv::Mat& rgb) {
  const int ring = std::max(1, std::min(rgb.cols, rgb.rows) / 16);
  std::vector<cv::Vec3b> border;
  for (int y = 0; y < rgb.rows; ++y) {
    const auto* row = rgb.ptr<cv::Vec3b>(y);
    for (int x = 0; x < rgb.cols; ++x) {
      if (x < ring || y < ring || x >= rgb.cols - ring || y >= rgb.rows - ring) border.push_back(row[x]);
    }
  }
  return border;
}

cv::Vec3b median_colour(const std::vector<cv::Vec3b>& pixels) {
  cv::Vec3b median;
  std::vector<std::uint8_t> channel(pixels.size());
  for (int c = 0; c < 3; ++c) {
    for (std::size_t i = 0; i < pixels.size(); ++i) channel[i] = pixels[i][c];
    auto middle = channel.begin() + static_cast<std::ptrdiff_t>(channel.size() / 2);
    std::nth_element(channel.begin(), middle, channel.end());
    median[c] = *middle;
  }
  return median;
}

int difference(const cv::Vec3b& a, const cv::Vec3b& b) {
  return std::max({std::abs(a[0] - b[0]), std::abs(a[1] - b[1]), std::abs(a[2] - b[2])});
}

Image from_rgb(const cv::Mat& rgb, int channels) {
  if (channels == 3) return to_image(rgb);
  cv::Mat gray;
  cv::cvtColor(rgb, gray, cv::COLOR_RGB2GRAY);
  return to_image(gray);
}

cv::Mat rotated(const cv::Mat& rgb, double degrees, const cv::Scalar& fill) {
  const cv::Mat m =
      cv::getRotationMatrix2D(cv::Point2f((rgb.cols - 1) / 2.f, (rgb.rows - 1) / 2.f), degrees, 1.0);
  cv::Mat out;
  cv::warpAffine(rgb, out, m, rgb.size(), cv::INTER_LINEAR, cv::BORDER_CONSTANT, fill);
  return out;
}

bool plain_border(const std::vector<cv::Vec3b>& border, const cv::Vec3b& background) {
  const auto close = std::count_if(border.begin(), border.end(), [&](const cv::Vec3b& p) {
    return difference(p, background) <= kPlainTolerance;
  });
  return static_cast<double>(close) >= kPlainShare * static_cast<double>(border.size());
}

// The bounding box of the pixels that differ from the plain background, when the box
// leaves out enough of the frame.
std::optional<cv::Rect> foreground_box(const cv::Mat& rgb, const cv::Vec3b& background) {
  cv::Mat mask(rgb.size(), CV_8UC1);
  for (int y = 0; y < rgb.rows; ++y) {
    const auto* row = rgb.ptr<cv::Vec3b>(y);
    auto* out = mask.ptr<std::uint8_t>(y);
    for (int x = 0; x < rgb.cols; ++x) out[x] = difference(row[x], background) > kPlainTolerance ? 255 : 0;
  }
  const cv::Rect box = cv::boundingRect(mask);
  const double area = double(rgb.cols) * rgb.rows;
  if (box.width < 2 || box.height < 2 || box.area() > (1 - kMinCroppedShare) * area) return std::nullopt;
  return box;
}

// The photo with one side (0 top, 1 right, 2 bottom, 3 left) widened back: the
// quadrilateral whose `side` is kViewKeystone shorter at either end, mapped onto the
// whole frame.
cv::Mat keystone_corrected(const cv::Mat& rgb, int side, const cv::Scalar& fill) {
  const float w = float(rgb.cols - 1), h = float(rgb.rows - 1);
  const cv::Point2f frame[4] = {{0, 0}, {w, 0}, {w, h}, {0, h}};  // clockwise from top left
  cv::Point2f seen[4] = {frame[0], frame[1], frame[2], frame[3]};
  const int a = side, b = (side + 1) % 4;
  const cv::Point2f inward = (frame[b] - frame[a]) * float(kViewKeystone);
  seen[a] += inward;
  seen[b] -= inward;
  cv::Mat out;
  cv::warpPerspective(rgb, out, cv::getPerspectiveTransform(seen, frame), rgb.size(), cv::INTER_LINEAR,
                      cv::BORDER_CONSTANT, fill);
  return out;
}

std::vector<cv::Rect> grid_windows(const cv::Size& size) {
  std::vector<cv::Rect> windows;
  for (const auto& grid : kWindowGrids) {
    const int w = std::max(1, static_cast<int>(std::lround(size.width * grid.side)));
    const int h = std::max(1, static_cast<int>(std::lround(size.height * grid.side)));
    const int steps = std::max(1, grid.per_row - 1);
    for (int row = 0; row < grid.per_row; ++row) {
      for (int column = 0; column < grid.per_row; ++column) {
        windows.emplace_back((size.width - w) * column / steps, (size.height - h) * row / steps, w, h);
      }
    }
  }
  return windows;
}

}  // namespace

std::vector<Image> exact_match_views(const Image& photo) {
  if (photo.width <= 0 || photo.height <= 0 || (photo.channels != 1 && photo.channels != 3) ||
      photo.pixels.size() != static_cast<std::size_t>(photo.width) * photo.height * photo.channels) {
    throw Error(ErrorKind::kInvalidInput,
                "exact-match views: the image is empty or its pixels do not match its size");
  }
  cv::Mat src(photo.height, photo.width, CV_8UC(photo.channels),
              const_cast<std::uint8_t*>(photo.pixels.data()));
  const int longer = std::max(photo.width, photo.height);
  if (longer > kViewMaxSide) {
    const double scale = double(kViewMaxSide) / longer;
    cv::Mat reduced;
    cv::resize(src, reduced,
               cv::Size(std::max(1, static_cast<int>(std::lround(photo.width * scale))),
                        std::max(1, static_cast<int>(std::lround(photo.height * scale)))),
               0, 0, cv::INTER_AREA);
    src = reduced;
  }
  cv::Mat rgb;
  if (photo.channels == 1) {
    cv::cvtColor(src, rgb, cv::COLOR_GRAY2RGB);
  } else {
    rgb = src;
  }
  const auto border = border_pixels(rgb);
  const cv::Vec3b background = median_colour(border);
  const cv::Scalar fill(background[0], background[1], background[2]);

  std::vector<Image> views;
  views.push_back(longer > kViewMaxSide ? to_image(src) : photo);
  views.push_back(from_rgb(rotated(rgb, kViewRotationDegrees, fill), photo.channels));
  views.push_back(from_rgb(rotated(rgb, -kViewRotationDegrees, fill), photo.channels));
  if (!plain_border(border, background)) {
    for (const auto& window : grid_windows(rgb.size()))
      views.push_back(from_rgb(rgb(window).clone(), photo.channels));
  } else {
    if (auto box = foreground_box(rgb, background))
      views.push_back(from_rgb(rgb(*box).clone(), photo.channels));
    for (int side = 0; side < 4; ++side)
      views.push_back(from_rgb(keystone_corrected(rgb, side, fill), photo.channels));
  }
  return views;
}

}  // namespace lookalike::image
