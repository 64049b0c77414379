#include "image/image.h"
#include "image/mat.h"

#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <string>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "common/error.h"
#include "common/files.h"

namespace lookalike::image {
namespace {

constexpr std::uint8_t kPngSignature[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
constexpr std::size_t kMinImageBytes = 12;  // the longest allow-listed signature: RIFF....WEBP

[[noreturn]] void undecodable(const std::string& message) {
  throw Error(ErrorKind::kUndecodable, message);
}

bool starts_with(const std::uint8_t* data, std::size_t size, std::size_t offset, const void* magic,
                 std::size_t magic_size) {
  return size >= offset + magic_size && std::memcmp(data + offset, magic, magic_size) == 0;
}

bool starts_with(const std::uint8_t* data, std::size_t size, std::size_t offset,
                 const char* magic) {
  return starts_with(data, size, offset, magic, std::strlen(magic));
}

std::uint32_t be16(const std::uint8_t* p) { return (std::uint32_t{p[0]} << 8) | p[1]; }
std::uint32_t be32(const std::uint8_t* p) { return (be16(p) << 16) | be16(p + 2); }
std::uint32_t le16(const std::uint8_t* p) { return (std::uint32_t{p[1]} << 8) | p[0]; }
std::uint32_t le24(const std::uint8_t* p) { return (std::uint32_t{p[2]} << 16) | le16(p); }
std::uint32_t le32(const std::uint8_t* p) { return (std::uint32_t{p[3]} << 24) | le24(p); }

std::string printable(const std::uint8_t* p, std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < n; ++i) out += (p[i] >= 0x20 && p[i] < 0x7F) ? char(p[i]) : '?';
  return out;
}

bool starts_with_nocase(const std::uint8_t* data, std::size_t size, std::size_t offset,
                        const char* magic) {
  std::size_t n = std::strlen(magic);
  if (size < offset + n) return false;
  for (std::size_t i = 0; i < n; ++i) {
    int c = data[offset + i];
    if (c >= 'A' && c <= 'Z') c += 'a' - 'A';
    if (c != magic[i]) return false;
  }
  return true;
}

// Names formats that OpenCV (or a careless upload) might hand us, so the error tells
// the user what they sent. Empty string when nothing matches.
std::string recognise_other(const std::uint8_t* d, std::size_t size) {
  if (starts_with(d, size, 0, "II*\0", 4) || starts_with(d, size, 0, "MM\0*", 4) ||
      starts_with(d, size, 0, "II+\0", 4) || starts_with(d, size, 0, "MM\0+", 4)) {
    return "TIFF";
  }
  if (starts_with(d, size, 0, "GIF87a") || starts_with(d, size, 0, "GIF89a")) return "GIF";
  if (starts_with(d, size, 0, "BM")) return "BMP";
  static constexpr std::uint8_t kJ2kCodestream[] = {0xFF, 0x4F, 0xFF, 0x51};
  static constexpr std::uint8_t kJp2Box[] = {0, 0, 0, 0x0C, 'j', 'P', ' ', ' ', 0x0D, 0x0A, 0x87};
  if (starts_with(d, size, 0, kJ2kCodestream, 4) || starts_with(d, size, 0, kJp2Box, 11)) {
    return "JPEG 2000";
  }
  static constexpr std::uint8_t kJxlBox[] = {0, 0, 0, 0x0C, 'J', 'X', 'L', ' ', 0x0D, 0x0A, 0x87};
  if (starts_with(d, size, 0, "\xFF\x0A", 2) || starts_with(d, size, 0, kJxlBox, 11)) {
    return "JPEG XL";
  }
  if (starts_with(d, size, 0, "\x76\x2F\x31\x01", 4)) return "OpenEXR";
  if (starts_with(d, size, 0, "#?RADIANCE") || starts_with(d, size, 0, "#?RGBE")) {
    return "HDR/Radiance";
  }
  if (starts_with(d, size, 128, "DICM")) return "DICOM";
  if (starts_with(d, size, 0, "%PDF")) return "PDF";
  if (starts_with(d, size, 4, "ftyp") && size >= 12) {
    return "HEIF/AVIF (ISO media, brand '" + printable(d + 8, 4) + "')";
  }
  if (starts_with(d, size, 0, "\x59\xA6\x6A\x95", 4)) return "Sun raster";
  if (size >= 3 && d[0] == 'P' && ((d[1] >= '1' && d[1] <= '7') || d[1] == 'F' || d[1] == 'f') &&
      (d[2] == ' ' || d[2] == '\t' || d[2] == '\r' || d[2] == '\n')) {
    return d[1] == 'F' || d[1] == 'f' ? "PFM" : "PNM";
  }
  if (starts_with(d, size, 0, "RIFF") && size >= 12) {
    return "a RIFF file of type '" + printable(d + 8, 4) + "', not WebP";
  }
  std::size_t i = starts_with(d, size, 0, "\xEF\xBB\xBF", 3) ? 3 : 0;
  while (i < size && (d[i] == ' ' || d[i] == '\t' || d[i] == '\r' || d[i] == '\n')) ++i;
  if (starts_with(d, size, i, "<?xml") || starts_with_nocase(d, size, i, "<svg")) {
    return "SVG/XML";
  }
  if (starts_with_nocase(d, size, i, "<!doctype html") || starts_with_nocase(d, size, i, "<html")) {
    return "HTML";
  }
  return {};
}

std::string hex_prefix(const std::uint8_t* d, std::size_t size) {
  std::string out;
  char buf[4];
  for (std::size_t i = 0; i < size && i < 8; ++i) {
    std::snprintf(buf, sizeof buf, i == 0 ? "%02x" : " %02x", d[i]);
    out += buf;
  }
  return out;
}

Dimensions checked(std::uint32_t width, std::uint32_t height, const char* format) {
  if (width == 0 || height == 0) {
    undecodable(std::string(format) + " header declares zero width or height (" +
                std::to_string(width) + " x " + std::to_string(height) + ")");
  }
  constexpr auto kMax = static_cast<std::uint32_t>(std::numeric_limits<int>::max());
  if (width > kMax || height > kMax) {
    undecodable(std::string(format) + " header declares an invalid size (" + std::to_string(width) +
                " x " + std::to_string(height) + ")");
  }
  return {static_cast<int>(width), static_cast<int>(height)};
}

// ---- PNG ----

constexpr std::size_t kPngIhdrEnd = 8 + 8 + 13 + 4;  // signature, chunk header, IHDR, CRC

struct PngHeader {
  Dimensions dims;
  int color_type = 0;
};

PngHeader parse_png(const std::uint8_t* d, std::size_t size) {
  if (!starts_with(d, size, 0, kPngSignature, sizeof kPngSignature)) undecodable("not a PNG file");
  if (size < kPngIhdrEnd) undecodable("truncated PNG header (" + std::to_string(size) + " bytes)");
  if (!starts_with(d, size, 12, "IHDR")) undecodable("PNG does not start with an IHDR chunk");
  if (be32(d + 8) != 13) undecodable("PNG IHDR chunk has length " + std::to_string(be32(d + 8)));
  return {checked(be32(d + 16), be32(d + 20), "PNG"), d[25]};
}

bool png_is_gray(int color_type) { return color_type == 0 || color_type == 4; }

// EXIF orientation (1..8) from a TIFF-structured EXIF block; 1 when absent or malformed,
// because a broken EXIF block should not make an otherwise fine image undecodable.
int exif_orientation(const std::uint8_t* tiff, std::size_t size) {
  if (size < 8) return 1;
  bool big_endian;
  if (starts_with(tiff, size, 0, "MM\0*", 4)) {
    big_endian = true;
  } else if (starts_with(tiff, size, 0, "II*\0", 4)) {
    big_endian = false;
  } else {
    return 1;
  }
  auto u16 = [&](std::size_t at) { return big_endian ? be16(tiff + at) : le16(tiff + at); };
  auto u32 = [&](std::size_t at) { return big_endian ? be32(tiff + at) : le32(tiff + at); };
  std::size_t ifd = u32(4);
  if (ifd > size || size - ifd < 2) return 1;
  std::size_t count = u16(ifd);
  for (std::size_t i = 0; i < count; ++i) {
    std::size_t entry = ifd + 2 + 12 * i;
    if (entry > size || size - entry < 12) return 1;
    constexpr std::uint32_t kOrientationTag = 0x0112, kShortType = 3;
    if (u16(entry) == kOrientationTag && u16(entry + 2) == kShortType && u32(entry + 4) == 1) {
      std::uint32_t value = u16(entry + 8);
      return value >= 1 && value <= 8 ? static_cast<int>(value) : 1;
    }
  }
  return 1;
}

// Walks the chunks: counts those other than the header, image data (IDAT, which
// encoders split into many) and end against the limit, wherever they are, since libpng reads the chunks
// after the image data too; and reads the EXIF orientation from an eXIf chunk
// before the image data, where libpng (and OpenCV) read it.
int scan_png_chunks(const std::uint8_t* d, std::size_t size, std::size_t max_chunks) {
  std::size_t pos = 8;
  std::size_t chunks = 0;
  int orientation = 1;
  bool exif_seen = false, image_data_seen = false;
  while (size - pos >= 12) {
    std::size_t length = be32(d + pos);
    const std::uint8_t* type = d + pos + 4;
    if (length > size - pos - 12) break;
    if (std::memcmp(type, "IDAT", 4) == 0) {
      image_data_seen = true;
    } else if (std::memcmp(type, "IHDR", 4) != 0 && std::memcmp(type, "IEND", 4) != 0 &&
               ++chunks > max_chunks) {
      throw Error(ErrorKind::kTooLarge, "PNG has more than " + std::to_string(max_chunks) +
                                            " chunks besides IHDR, IDAT and IEND");
    }
    if (!exif_seen && !image_data_seen && std::memcmp(type, "eXIf", 4) == 0) {
      exif_seen = true;
      orientation = exif_orientation(d + pos + 8, length);
    }
    if (std::memcmp(type, "IEND", 4) == 0) break;
    pos += 12 + length;
  }
  return orientation;
}

// ---- JPEG ----

struct JpegSegment {
  std::uint8_t marker = 0;
  std::size_t payload = 0;  // offset just past the length field
  std::size_t length = 0;   // payload bytes
};

bool jpeg_standalone(std::uint8_t marker) {
  return marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7);
}

JpegSegment read_jpeg_segment(const std::uint8_t* d, std::size_t size, std::size_t pos) {
  if (pos >= size) undecodable("truncated JPEG header: no frame header before the end of the data");
  if (d[pos] != 0xFF) undecodable("invalid JPEG: expected a marker at byte " + std::to_string(pos));
  while (pos < size && d[pos] == 0xFF) ++pos;  // fill bytes may precede any marker
  if (pos >= size) undecodable("truncated JPEG header");
  JpegSegment seg;
  seg.marker = d[pos++];
  seg.payload = pos;
  if (jpeg_standalone(seg.marker) || seg.marker == 0xD8 || seg.marker == 0xD9) return seg;
  if (size - pos < 2) undecodable("truncated JPEG header");
  std::size_t length = be16(d + pos);
  if (length < 2) undecodable("invalid JPEG segment length at byte " + std::to_string(pos));
  if (length > size - pos) {
    undecodable("truncated JPEG header: segment at byte " + std::to_string(pos) +
                " runs past the end of the data");
  }
  seg.payload = pos + 2;
  seg.length = length - 2;
  return seg;
}

bool jpeg_is_sof(std::uint8_t marker) {
  // C4 (DHT), C8 (JPG) and CC (DAC) share the range but are not frame headers.
  return marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
}

struct JpegHeader {
  Dimensions dims;
  int components = 0;
};

JpegHeader parse_jpeg(const std::uint8_t* d, std::size_t size) {
  if (!starts_with(d, size, 0, "\xFF\xD8", 2)) undecodable("not a JPEG file");
  std::size_t pos = 2;
  for (;;) {
    JpegSegment seg = read_jpeg_segment(d, size, pos);
    if (jpeg_is_sof(seg.marker)) {
      if (seg.length < 6) undecodable("JPEG frame header is too short");
      const std::uint8_t* sof = d + seg.payload;
      return {checked(be16(sof + 3), be16(sof + 1), "JPEG"), sof[5]};
    }
    if (seg.marker == 0xDA || seg.marker == 0xD9 || seg.marker == 0xD8) {
      undecodable("invalid JPEG: no frame header (SOF) before the image data");
    }
    pos = seg.payload + seg.length;
  }
}

// libjpeg decodes a truncated file without failing (it pads the missing rows with grey),
// so truncation is detected here: the entropy-coded data after the first scan header
// must reach an end-of-image marker.
bool jpeg_has_end(const std::uint8_t* d, std::size_t size) {
  std::size_t pos = 2;
  for (;;) {
    JpegSegment seg = read_jpeg_segment(d, size, pos);
    pos = seg.payload + seg.length;
    if (seg.marker == 0xDA) break;
    if (seg.marker == 0xD9) return false;
  }
  while (pos < size) {
    const void* ff = std::memchr(d + pos, 0xFF, size - pos);
    if (ff == nullptr) return false;
    pos = static_cast<std::size_t>(static_cast<const std::uint8_t*>(ff) - d) + 1;
    if (pos < size && d[pos] == 0xD9) return true;
  }
  return false;
}

// ---- WebP ----

Dimensions parse_webp(const std::uint8_t* d, std::size_t size) {
  if (!starts_with(d, size, 0, "RIFF") || !starts_with(d, size, 8, "WEBP")) {
    undecodable("not a WebP file");
  }
  if (size < 20) undecodable("truncated WebP header (" + std::to_string(size) + " bytes)");
  const std::uint8_t* chunk = d + 12;
  const std::uint8_t* payload = d + 20;
  if (std::memcmp(chunk, "VP8 ", 4) == 0) {
    if (size < 30) undecodable("truncated WebP VP8 header");
    if ((payload[0] & 1) != 0) undecodable("WebP VP8 data does not start with a key frame");
    if (!starts_with(d, size, 23, "\x9D\x01\x2A", 3)) undecodable("invalid WebP VP8 start code");
    return checked(le16(payload + 6) & 0x3FFF, le16(payload + 8) & 0x3FFF, "WebP");
  }
  if (std::memcmp(chunk, "VP8L", 4) == 0) {
    if (size < 25) undecodable("truncated WebP VP8L header");
    if (payload[0] != 0x2F) undecodable("invalid WebP VP8L signature");
    std::uint32_t bits = le32(payload + 1);
    return checked((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, "WebP");
  }
  if (std::memcmp(chunk, "VP8X", 4) == 0) {
    if (size < 30) undecodable("truncated WebP VP8X header");
    return checked(le24(payload + 4) + 1, le24(payload + 7) + 1, "WebP");
  }
  undecodable("unknown WebP chunk '" + printable(chunk, 4) + "'");
}

// ---- decoding ----

void check_limits(const Dimensions& dims, const DecodeLimits& limits) {
  std::int64_t pixels = std::int64_t{dims.width} * dims.height;
  if (dims.width > limits.max_width || dims.height > limits.max_height ||
      pixels > limits.max_pixels) {
    throw Error(ErrorKind::kTooLarge, "image is " + std::to_string(dims.width) + " x " +
                                          std::to_string(dims.height) + " pixels; the limit is " +
                                          std::to_string(limits.max_width) + " x " +
                                          std::to_string(limits.max_height) + " and " +
                                          std::to_string(limits.max_pixels) + " pixels in total");
  }
}

// The largest JPEG scale-down (8, 4 or 2) that keeps both sides >= min_side; 1 for none.
int jpeg_reduction(const Dimensions& dims, int min_side) {
  if (min_side <= 0) return 1;
  for (int scale : {8, 4, 2}) {
    std::int64_t needed = std::int64_t{scale} * min_side;
    if (dims.width >= needed && dims.height >= needed) return scale;
  }
  return 1;
}

int jpeg_flags(bool gray, int reduction) {
  switch (reduction) {
    case 8: return gray ? cv::IMREAD_REDUCED_GRAYSCALE_8 : cv::IMREAD_REDUCED_COLOR_8;
    case 4: return gray ? cv::IMREAD_REDUCED_GRAYSCALE_4 : cv::IMREAD_REDUCED_COLOR_4;
    case 2: return gray ? cv::IMREAD_REDUCED_GRAYSCALE_2 : cv::IMREAD_REDUCED_COLOR_2;
    default: return gray ? cv::IMREAD_GRAYSCALE : cv::IMREAD_COLOR;
  }
}

std::uint8_t over_white(unsigned value, unsigned alpha) {
  return static_cast<std::uint8_t>((value * alpha + 255u * (255u - alpha) + 127u) / 255u);
}

// Turns OpenCV's output (BGR or BGRA order, 8 or 16 bits) into 8-bit gray or RGB with
// alpha composited over white. gray_source collapses the BGRA that OpenCV makes of a
// gray+alpha PNG back to one channel.
cv::Mat to_gray_or_rgb(const cv::Mat& decoded, bool gray_source) {
  cv::Mat src = decoded;
  if (src.depth() == CV_16U) {
    src.convertTo(src, CV_8U, 1.0 / 257.0);
  } else if (src.depth() != CV_8U) {
    undecodable("unexpected sample type in decoded image");
  }
  const int cn = src.channels();
  if (cn == 1) return src;
  if (cn == 3) {
    cv::Mat rgb;
    cv::cvtColor(src, rgb, cv::COLOR_BGR2RGB);
    return rgb;
  }
  if (cn != 2 && cn != 4) undecodable("unexpected channel count in decoded image");
  const bool to_gray = cn == 2 || gray_source;
  cv::Mat out(src.size(), to_gray ? CV_8UC1 : CV_8UC3);
  for (int y = 0; y < src.rows; ++y) {
    const std::uint8_t* in = src.ptr<std::uint8_t>(y);
    std::uint8_t* o = out.ptr<std::uint8_t>(y);
    for (int x = 0; x < src.cols; ++x, in += cn) {
      unsigned alpha = in[cn - 1];
      if (to_gray) {
        *o++ = over_white(in[0], alpha);
      } else {
        *o++ = over_white(in[2], alpha);
        *o++ = over_white(in[1], alpha);
        *o++ = over_white(in[0], alpha);
      }
    }
  }
  return out;
}

// Same transforms as OpenCV applies for the orientations it handles itself.
cv::Mat oriented(const cv::Mat& img, int orientation) {
  cv::Mat out;
  switch (orientation) {
    case 2: cv::flip(img, out, 1); break;
    case 3: cv::rotate(img, out, cv::ROTATE_180); break;
    case 4: cv::flip(img, out, 0); break;
    case 5: cv::transpose(img, out); break;
    case 6: cv::rotate(img, out, cv::ROTATE_90_CLOCKWISE); break;
    case 7:
      cv::transpose(img, out);
      cv::flip(out, out, -1);
      break;
    case 8: cv::rotate(img, out, cv::ROTATE_90_COUNTERCLOCKWISE); break;
    default: return img;
  }
  return out;
}

}  // namespace

Image to_image(const cv::Mat& mat) {
  Image image;
  image.width = mat.cols;
  image.height = mat.rows;
  image.channels = mat.channels();
  image.pixels.resize(static_cast<std::size_t>(mat.cols) * mat.rows * mat.channels());
  const std::size_t row_bytes = static_cast<std::size_t>(mat.cols) * mat.channels();
  for (int y = 0; y < mat.rows; ++y) {
    std::memcpy(image.pixels.data() + row_bytes * y, mat.ptr<std::uint8_t>(y), row_bytes);
  }
  return image;
}

const char* to_string(Format format) noexcept {
  switch (format) {
    case Format::kJpeg: return "JPEG";
    case Format::kPng: return "PNG";
    case Format::kWebp: return "WebP";
  }
  return "unknown";
}

Format sniff_format(const std::uint8_t* data, std::size_t size) {
  if (data == nullptr || size == 0) undecodable("empty file: no image data");
  if (starts_with(data, size, 0, "\xFF\xD8\xFF", 3)) return Format::kJpeg;
  if (starts_with(data, size, 0, kPngSignature, sizeof kPngSignature)) return Format::kPng;
  if (starts_with(data, size, 0, "RIFF") && starts_with(data, size, 8, "WEBP")) {
    return Format::kWebp;
  }
  std::string other = recognise_other(data, size);
  if (!other.empty()) {
    throw Error(ErrorKind::kUnsupported, "unsupported image format: looks like " + other +
                                             "; only JPEG, PNG and WebP are accepted");
  }
  if (size < kMinImageBytes) {
    undecodable("too short to be an image (" + std::to_string(size) + " bytes)");
  }
  throw Error(ErrorKind::kUnsupported, "unsupported image format: unknown (starts with " +
                                           hex_prefix(data, size) +
                                           "); only JPEG, PNG and WebP are accepted");
}

Dimensions read_dimensions(const std::uint8_t* data, std::size_t size, Format format) {
  if (data == nullptr) size = 0;
  switch (format) {
    case Format::kJpeg: return parse_jpeg(data, size).dims;
    case Format::kPng: return parse_png(data, size).dims;
    case Format::kWebp: return parse_webp(data, size);
  }
  throw Error(ErrorKind::kInternal, "read_dimensions: unknown format");
}

Image decode(const std::uint8_t* data, std::size_t size, const DecodeLimits& limits, int min_side) {
  if (size > limits.max_file_bytes ||
      size > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    throw Error(ErrorKind::kTooLarge, "image file is " + std::to_string(size) +
                                          " bytes, over the limit of " +
                                          std::to_string(limits.max_file_bytes) + " bytes");
  }
  const Format format = sniff_format(data, size);
  int flags = cv::IMREAD_UNCHANGED;  // keeps alpha and 16 bits, which we convert ourselves
  bool gray_source = false;
  int orientation = 1;  // applied here only where IMREAD_UNCHANGED makes OpenCV skip it
  Dimensions dims;
  switch (format) {
    case Format::kJpeg: {
      JpegHeader header = parse_jpeg(data, size);
      dims = header.dims;
      check_limits(dims, limits);
      if (!jpeg_has_end(data, size)) undecodable("truncated JPEG data: no end-of-image marker");
      // JPEG has no alpha and OpenCV applies its EXIF orientation with these flags.
      flags = jpeg_flags(header.components == 1, jpeg_reduction(dims, min_side));
      break;
    }
    case Format::kPng: {
      PngHeader header = parse_png(data, size);
      dims = header.dims;
      check_limits(dims, limits);
      gray_source = png_is_gray(header.color_type);
      orientation = scan_png_chunks(data, size, limits.max_png_chunks);
      break;
    }
    case Format::kWebp:
      // OpenCV 4.6 reads no EXIF from WebP, so none is applied.
      dims = parse_webp(data, size);
      check_limits(dims, limits);
      break;
  }

  const std::string what = to_string(format);
  try {
    const cv::Mat buffer(1, static_cast<int>(size), CV_8UC1, const_cast<std::uint8_t*>(data));
    const cv::Mat decoded = cv::imdecode(buffer, flags);
    if (decoded.empty()) undecodable("corrupt or truncated " + what + " data");
    return to_image(oriented(to_gray_or_rgb(decoded, gray_source), orientation));
  } catch (const Error&) {
    throw;
  } catch (const cv::Exception& e) {
    undecodable("cannot decode " + what + " data: " + e.what());
  } catch (const std::exception& e) {
    undecodable("cannot decode " + what + " data: " + e.what());
  }
}

Image load_file(const std::filesystem::path& path, const DecodeLimits& limits, int min_side) {
  // read_file's own errors already name the path.
  const std::vector<std::uint8_t> bytes = read_file(path, limits.max_file_bytes);
  try {
    return decode(bytes.data(), bytes.size(), limits, min_side);
  } catch (const Error& e) {
    throw Error(e.kind(), path.string() + ": " + e.what());
  }
}

void parallel_for(std::size_t n, const std::function<void(std::size_t)>& fn) {
  if (n == 0) return;
  cv::parallel_for_(cv::Range(0, static_cast<int>(n)), [&](const cv::Range& range) {
    for (int i = range.start; i < range.end; ++i) fn(static_cast<std::size_t>(i));
  });
}

}  // namespace lookalike::image
