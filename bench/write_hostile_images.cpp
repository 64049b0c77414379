// Writes the hostile images of tests/support/hostile_images.h into a folder, one
// file each, for bench/hostile.sh, and two files of zeros at the pixel limit that
// are accepted. Prints name, bytes, expected HTTP status.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "support/hostile_images.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: write_hostile_images DIR\n");
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  for (const auto& image : lookalike::testing::hostile_images()) {
    std::ofstream out(dir / image.name, std::ios::binary);
    out.write(reinterpret_cast<const char*>(image.bytes.data()),
              static_cast<std::streamsize>(image.bytes.size()));
    if (!out) {
      std::fprintf(stderr, "cannot write %s\n", (dir / image.name).c_str());
      return 1;
    }
    std::printf("%s %zu %d\n", image.name.c_str(), image.bytes.size(), image.http_status);
  }
  // The largest images the default limits let through (50,000,000 pixels), as small
  // files of zeros: what one decode may cost at most.
  const struct {
    const char* name;
    std::uint32_t side;
    bool rgba16;
  } allowed[] = {{"allowed-7071x7071-gray1.png", 7071, false}, {"allowed-7071x7071-rgba16.png", 7071, true}};
  for (const auto& a : allowed) {
    const auto bytes = lookalike::testing::png_of_zeros(a.side, a.side, a.rgba16);
    std::ofstream out(dir / a.name, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    std::printf("%s %zu %d\n", a.name, bytes.size(), 200);
  }
  return 0;
}
