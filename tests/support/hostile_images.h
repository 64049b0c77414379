// Hostile image files, generated in memory (small files; some claim huge pixel
// counts): decompression bombs, lying headers, formats outside the allow-list,
// empty and truncated files. Shared by the image and server tests and by
// bench/hostile.sh (through the write_hostile_images tool).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lookalike::testing {

struct HostileImage {
  std::string name;  // also a file name, with the extension a careless upload would carry
  std::vector<std::uint8_t> bytes;
  std::string error_kind;    // what image::decode must throw: to_string(ErrorKind), e.g. "too_large"
  int http_status;           // what POST /v1/search must answer
  std::string message_part;  // a part of the error message that names the problem
};

// Every hostile image, each built once per process (the biggest is 12 MB, a
// million PNG chunks).
const std::vector<HostileImage>& hostile_images();

// A PNG of zeros, width x height, 1-bit gray (small raw data) or 16-bit RGBA
// (8 bytes a pixel once decoded), with a real deflate stream of the filtered rows.
std::vector<std::uint8_t> png_of_zeros(std::uint32_t width, std::uint32_t height, bool rgba16);

// A valid small PNG (gray, 16 x 16) with `chunks` zero-length private ancillary
// chunks between IHDR and IDAT.
std::vector<std::uint8_t> png_with_chunks(std::size_t chunks);

}  // namespace lookalike::testing
