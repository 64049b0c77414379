// Reader for Fashion-MNIST as Debian's dataset-fashion-mnist ships it (gzipped
// IDX files), the source of the bundled demo catalog.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace lookalike::demo {

struct FashionMnistSplit {
  int rows = 28;
  int cols = 28;
  std::vector<std::uint8_t> pixels;  // count x rows x cols, white item on black
  std::vector<int> labels;           // 0..9
  std::size_t size() const { return labels.size(); }
};

// Folder of the Debian package's files.
std::filesystem::path default_fashion_mnist_dir();

// Reads "train" (60,000 images) or "t10k" (10,000). Throws Error(kNotFound) naming
// the package when the files are missing and Error(kInvalidInput) when corrupt.
FashionMnistSplit read_fashion_mnist(const std::filesystem::path& dir, const std::string& split);

// The dataset's ten category names, by label.
const std::vector<std::string>& fashion_mnist_classes();

}  // namespace lookalike::demo
