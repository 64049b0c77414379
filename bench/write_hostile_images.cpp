// Writes the hostile images of tests/support/hostile_images.h into a folder, one
// file each, for bench/hostile.sh. Prints name, bytes, expected HTTP status.
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
  return 0;
}
