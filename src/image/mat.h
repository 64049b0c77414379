// Internal to the image module (includes OpenCV): conversions shared by its files.
#pragma once

#include <opencv2/core.hpp>

#include "image/image.h"

namespace lookalike::image {

// Copies an 8-bit matrix (1 or 3 channels, any row padding) into an Image.
Image to_image(const cv::Mat& mat);

}  // namespace lookalike::image
