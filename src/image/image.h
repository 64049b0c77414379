// Safe image decoding and model preprocessing.
//
// Only JPEG, PNG and WebP are decoded, recognised by their magic bytes (never by
// file name). Width, height and pixel count are read from the file header and
// checked against the limits before any pixel is decoded, so a decompression bomb
// costs a few hundred bytes of parsing, not gigabytes of memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace lookalike::image {

// Limits applied before decoding. Defaults are documented in the README.
struct DecodeLimits {
  std::size_t max_file_bytes = 20u << 20;   // 20 MiB
  int max_width = 12000;                    // pixels
  int max_height = 12000;                   // pixels
  std::int64_t max_pixels = 50'000'000;     // width * height
  // PNG chunks other than IHDR, IDAT (image data, often split) and IEND: a few are normal (text, colour profile, EXIF);
  // a million empty ones cost the decoder a CRC and a call each and mean nothing.
  std::size_t max_png_chunks = 1000;
};

enum class Format { kJpeg, kPng, kWebp };

const char* to_string(Format format) noexcept;

// A decoded image: 8 bits per channel, interleaved, row-major, no padding.
// channels is 1 (gray) or 3 (RGB order). Alpha is composited over white and
// 16-bit samples are scaled to 8 bits.
struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;
  std::vector<std::uint8_t> pixels;  // size == width * height * channels
};

struct Dimensions {
  int width = 0;
  int height = 0;
};

// Identifies the format by magic bytes. Throws Error(kUnsupported) naming what
// the bytes look like (e.g. "TIFF") when it is not JPEG, PNG or WebP, and
// Error(kUndecodable) for empty or too-short input.
Format sniff_format(const std::uint8_t* data, std::size_t size);

// Reads width and height from the header alone (JPEG SOF, PNG IHDR, WebP
// VP8/VP8L/VP8X). Throws Error(kUndecodable) when the header is truncated or invalid.
Dimensions read_dimensions(const std::uint8_t* data, std::size_t size, Format format);

// Decodes an image held in memory. Checks size, header dimensions and the PNG
// chunk count against limits first (Error(kTooLarge)); corrupt or truncated data is Error(kUndecodable).
// EXIF orientation is honoured. When min_side > 0 and a JPEG is at least twice as
// large as needed on both sides, it is decoded at 1/2, 1/4 or 1/8 scale, keeping
// both sides >= min_side. Never lets an OpenCV exception escape.
Image decode(const std::uint8_t* data, std::size_t size, const DecodeLimits& limits,
             int min_side = 0);

// Reads (bounded by limits.max_file_bytes) and decodes a file. Error messages name the path.
Image load_file(const std::filesystem::path& path, const DecodeLimits& limits, int min_side = 0);

// How a colour photo becomes the one channel of a grey model.
enum class Gray {
  kLuma,   // 0.299 R + 0.587 G + 0.114 B: what most grey models are trained on
  kValue,  // max(R, G, B), HSV's value: the same for every hue of one tint, so the
           // colour variants of an item look alike to the model and colour can
           // tell them apart (bench/RESULTS.md, "Instance robustness", session 10)
};
// "luma" or "value"; Error(kInvalidInput) naming `what` otherwise.
Gray parse_gray(const std::string& name, const std::string& what);
const char* to_string(Gray gray) noexcept;

// What a model expects as input.
struct InputSpec {
  int width = 28;
  int height = 28;
  int channels = 1;              // 1: gray (see gray), 3: RGB
  std::vector<float> mean{0.f};  // per channel, applied to values scaled to [0, 1]
  std::vector<float> stddev{1.f};
  Gray gray = Gray::kLuma;  // channels == 1: how a colour photo is made grey
};

// Resizes (area interpolation when shrinking, linear when enlarging, without
// keeping the aspect ratio), converts channels (RGB to grey as spec.gray says) and normalises:
// out = (pixel / 255 - mean[c]) / stddev[c]. Writes spec.channels * height * width
// floats in CHW order to out.
void preprocess(const Image& image, const InputSpec& spec, float* out);

// The image shrunk (area interpolation, aspect ratio kept) so that neither side
// exceeds max_side; a copy of it when it already fits. Throws
// Error(kInvalidInput) for a malformed image or max_side < 1.
Image fit_within(const Image& image, int max_side);

// Encodes to PNG (used to write the demo catalog and test fixtures).
std::vector<std::uint8_t> encode_png(const Image& image);

// A rectangle of pixels: (x, y) is its top-left corner, x to the right, y down.
struct CropBox {
  int x = 0;
  int y = 0;
  int width = 0;
  int height = 0;
};

// Copies the box out of an image. Throws Error(kInvalidInput) when the box is
// empty or does not lie inside the image.
Image crop(const Image& image, const CropBox& box);

// Decodes like decode() and crops to box, given in pixels of the full-size image
// as displayed (EXIF orientation applied). When min_side > 0, a large JPEG is
// decoded at reduced scale only as far as the box keeps both sides >= min_side,
// and the box is scaled to the decoded size. Throws Error(kInvalidInput) when the
// box is empty or not inside the image, and decode()'s errors otherwise.
Image decode_crop(const std::uint8_t* data, std::size_t size, const DecodeLimits& limits, const CropBox& box,
                  int min_side = 0);

// Runs fn(i) for every i in [0, n) on OpenCV's thread pool (as many threads as
// cv::setNumThreads, which `--threads` sets) and returns when all are done. fn
// must not throw; the work of different i must not share state.
void parallel_for(std::size_t n, const std::function<void(std::size_t)>& fn);

}  // namespace lookalike::image
