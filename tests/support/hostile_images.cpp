#include "support/hostile_images.h"

#include <zlib.h>

#include <algorithm>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <stdexcept>

namespace lookalike::testing {
namespace {

using Bytes = std::vector<std::uint8_t>;

void put_be32(Bytes& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(v >> shift));
}

void put_le(Bytes& out, std::uint32_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

void put_chunk(Bytes& png, const char* type, const Bytes& data) {
  put_be32(png, static_cast<std::uint32_t>(data.size()));
  const std::size_t start = png.size();
  png.insert(png.end(), type, type + 4);
  png.insert(png.end(), data.begin(), data.end());
  put_be32(png,
           static_cast<std::uint32_t>(::crc32(0, png.data() + start, static_cast<uInt>(png.size() - start))));
}

Bytes png_signature() { return {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A}; }

Bytes ihdr(std::uint32_t width, std::uint32_t height, std::uint8_t depth, std::uint8_t color_type) {
  Bytes data;
  put_be32(data, width);
  put_be32(data, height);
  data.insert(data.end(), {depth, color_type, 0, 0, 0});
  return data;
}

// Deflates `rows` rows of `row_bytes` zero bytes, each after a filter byte 0, row by row
// so that a gigabyte of pixels never exists in memory.
Bytes deflate_zero_rows(std::size_t rows, std::size_t row_bytes) {
  z_stream z{};
  if (deflateInit2(&z, 9, Z_DEFLATED, 15, 9, Z_RLE) != Z_OK) throw std::runtime_error("deflateInit2");
  Bytes row(row_bytes + 1, 0);
  Bytes out;
  Bytes buffer(1 << 16);
  for (std::size_t y = 0; y <= rows; ++y) {
    const bool last = y == rows;
    z.next_in = row.data();
    z.avail_in = last ? 0 : static_cast<uInt>(row.size());
    do {
      z.next_out = buffer.data();
      z.avail_out = static_cast<uInt>(buffer.size());
      deflate(&z, last ? Z_FINISH : Z_NO_FLUSH);
      out.insert(out.end(), buffer.data(), buffer.data() + (buffer.size() - z.avail_out));
    } while (z.avail_out == 0);
  }
  deflateEnd(&z);
  return out;
}

Bytes encode(const cv::Mat& mat, const char* ext, std::vector<int> params = {}) {
  Bytes out;
  if (!cv::imencode(ext, mat, out, params)) throw std::runtime_error(std::string("imencode ") + ext);
  return out;
}

cv::Mat noise(int width, int height) {
  cv::Mat mat(height, width, CV_8UC3);
  cv::RNG rng(42);
  rng.fill(mat, cv::RNG::UNIFORM, 0, 256);
  return mat;
}

Bytes first_half(const Bytes& bytes) { return Bytes(bytes.begin(), bytes.begin() + bytes.size() / 2); }

Bytes jpeg_claiming(std::uint16_t width, std::uint16_t height) {
  Bytes jpeg = encode(noise(16, 16), ".jpg");
  const Bytes sof = {0xFF, 0xC0, 0x00, 0x11, 0x08};
  auto it = std::search(jpeg.begin(), jpeg.end(), sof.begin(), sof.end());
  if (it == jpeg.end()) throw std::runtime_error("no SOF0 in OpenCV's JPEG");
  it[5] = static_cast<std::uint8_t>(height >> 8);
  it[6] = static_cast<std::uint8_t>(height);
  it[7] = static_cast<std::uint8_t>(width >> 8);
  it[8] = static_cast<std::uint8_t>(width);
  return jpeg;
}

Bytes webp_vp8x(std::uint32_t width, std::uint32_t height) {
  Bytes webp = {'R', 'I', 'F', 'F'};
  put_le(webp, 4 + 8 + 10, 4);
  webp.insert(webp.end(), {'W', 'E', 'B', 'P', 'V', 'P', '8', 'X'});
  put_le(webp, 10, 4);
  put_le(webp, 0, 4);  // flags, reserved
  put_le(webp, width - 1, 3);
  put_le(webp, height - 1, 3);
  return webp;
}

// A VP8L (lossless) header at its largest size, 16384 x 16384, with a few bytes of data.
Bytes webp_vp8l(std::uint32_t width, std::uint32_t height) {
  Bytes webp = {'R', 'I', 'F', 'F'};
  put_le(webp, 4 + 8 + 5 + 27, 4);
  webp.insert(webp.end(), {'W', 'E', 'B', 'P', 'V', 'P', '8', 'L'});
  put_le(webp, 5 + 27, 4);
  webp.push_back(0x2F);
  put_le(webp, (width - 1) | ((height - 1) << 14), 4);
  webp.resize(webp.size() + 27, 0);
  return webp;
}

Bytes gif() {
  Bytes g = {'G',  'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0x80, 0, 0, 0,    0,    0, 0xFF, 0xFF,
             0xFF, ',', 0,   0,   0,   0,   1, 0, 1, 0, 0,    2, 2, 0x44, 0x01, 0, ';'};
  return g;
}

std::vector<HostileImage> make_all() {
  std::vector<HostileImage> all;
  all.push_back(
      {"zeros-30000x30000.png", png_of_zeros(30000, 30000, false), "too_large", 413, "30000 x 30000"});
  all.push_back({"claims-65535x65535.jpg", jpeg_claiming(65535, 65535), "too_large", 413, "65535 x 65535"});
  all.push_back({"vp8x-16383x16383.webp", webp_vp8x(16383, 16383), "too_large", 413, "16383 x 16383"});
  all.push_back({"vp8l-16384x16384.webp", webp_vp8l(16384, 16384), "too_large", 413, "16384 x 16384"});
  all.push_back({"million-chunks.png", png_with_chunks(1'000'000), "too_large", 413, "chunks"});
  all.push_back({"tiff-renamed.jpg", encode(noise(8, 8), ".tiff"), "unsupported", 415, "TIFF"});
  all.push_back({"gif-renamed.jpg", gif(), "unsupported", 415, "GIF"});
  all.push_back({"bmp-renamed.png", encode(noise(8, 8), ".bmp"), "unsupported", 415, "BMP"});
  all.push_back({"empty.jpg", {}, "undecodable", 400, "empty"});
  all.push_back(
      {"truncated.jpg", first_half(encode(noise(64, 64), ".jpg")), "undecodable", 422, "truncated JPEG"});
  all.push_back({"truncated.png", first_half(encode(noise(64, 64), ".png")), "undecodable", 422, "PNG"});
  all.push_back({"truncated.webp", first_half(encode(noise(64, 64), ".webp", {cv::IMWRITE_WEBP_QUALITY, 90})),
                 "undecodable", 422, "WebP"});
  return all;
}

}  // namespace

Bytes png_of_zeros(std::uint32_t width, std::uint32_t height, bool rgba16) {
  Bytes png = png_signature();
  put_chunk(png, "IHDR", ihdr(width, height, rgba16 ? 16 : 1, rgba16 ? 6 : 0));
  const std::size_t row_bytes = rgba16 ? std::size_t{width} * 8 : (std::size_t{width} + 7) / 8;
  put_chunk(png, "IDAT", deflate_zero_rows(height, row_bytes));
  put_chunk(png, "IEND", {});
  return png;
}

Bytes png_with_chunks(std::size_t chunks) {
  Bytes png = png_signature();
  put_chunk(png, "IHDR", ihdr(16, 16, 8, 0));
  // "laTe": ancillary (lower-case first letter), private, safe to copy; no decoder knows it.
  Bytes one;
  put_chunk(one, "laTe", {});
  png.reserve(png.size() + chunks * one.size() + 4096);
  for (std::size_t i = 0; i < chunks; ++i) png.insert(png.end(), one.begin(), one.end());
  put_chunk(png, "IDAT", deflate_zero_rows(16, 16));
  put_chunk(png, "IEND", {});
  return png;
}

const std::vector<HostileImage>& hostile_images() {
  static const std::vector<HostileImage> all = make_all();
  return all;
}

}  // namespace lookalike::testing
