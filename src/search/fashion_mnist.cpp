#include "search/fashion_mnist.h"

#include <zlib.h>

#include <memory>

#include "common/error.h"

namespace lookalike::demo {
namespace fs = std::filesystem;

namespace {

constexpr std::size_t kMaxIdxBytes = 64u << 20;

std::vector<std::uint8_t> gunzip_file(const fs::path& path) {
  if (!fs::exists(path)) {
    throw Error(ErrorKind::kNotFound, "missing " + path.string() +
                                          " (install Debian's dataset-fashion-mnist: scripts/setup.sh)");
  }
  std::unique_ptr<gzFile_s, int (*)(gzFile)> gz(gzopen(path.c_str(), "rb"), gzclose);
  if (!gz) throw Error(ErrorKind::kIO, "cannot open " + path.string());
  std::vector<std::uint8_t> out;
  std::uint8_t buf[1 << 16];
  int n;
  while ((n = gzread(gz.get(), buf, sizeof(buf))) > 0) {
    out.insert(out.end(), buf, buf + n);
    if (out.size() > kMaxIdxBytes) throw Error(ErrorKind::kInvalidInput, path.string() + " is too large");
  }
  if (n < 0) throw Error(ErrorKind::kInvalidInput, path.string() + " is not valid gzip data");
  return out;
}

std::uint32_t be32(const std::vector<std::uint8_t>& b, std::size_t pos) {
  return (std::uint32_t(b[pos]) << 24) | (std::uint32_t(b[pos + 1]) << 16) | (std::uint32_t(b[pos + 2]) << 8) |
         std::uint32_t(b[pos + 3]);
}

}  // namespace

fs::path default_fashion_mnist_dir() { return "/usr/share/datasets/fashion-mnist"; }

FashionMnistSplit read_fashion_mnist(const fs::path& dir, const std::string& split) {
  fs::path images_path = dir / (split + "-images-idx3-ubyte.gz");
  fs::path labels_path = dir / (split + "-labels-idx1-ubyte.gz");
  auto images = gunzip_file(images_path);
  auto labels = gunzip_file(labels_path);
  auto bad = [](const fs::path& p) { return Error(ErrorKind::kInvalidInput, p.string() + " is not an IDX file of the expected shape"); };
  if (images.size() < 16 || be32(images, 0) != 0x00000803) throw bad(images_path);
  if (labels.size() < 8 || be32(labels, 0) != 0x00000801) throw bad(labels_path);
  std::uint32_t count = be32(images, 4), rows = be32(images, 8), cols = be32(images, 12);
  if (rows != 28 || cols != 28 || images.size() != 16 + std::size_t(count) * rows * cols) throw bad(images_path);
  if (be32(labels, 4) != count || labels.size() != 8 + std::size_t(count)) throw bad(labels_path);
  FashionMnistSplit out;
  out.rows = static_cast<int>(rows);
  out.cols = static_cast<int>(cols);
  out.pixels.assign(images.begin() + 16, images.end());
  out.labels.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    if (labels[8 + i] > 9) throw bad(labels_path);
    out.labels.push_back(labels[8 + i]);
  }
  return out;
}

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> names{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                              "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return names;
}

}  // namespace lookalike::demo
