#include "embed/embedder.h"

#include <cmath>

#include "common/error.h"

namespace lookalike::embed {

std::string ModelInfo::identity() const {
  // Value grey makes other vectors from the same weights (an imported model's config
  // can say either), so it is part of the identity; luma is left unsaid, as it was
  // before there was a choice, so that stored vectors keep their identity.
  const bool value = input.channels == 1 && input.gray == image::Gray::kValue;
  return name + "/" + version + "/" + std::to_string(input.width) + "x" + std::to_string(input.height) + "x" +
         std::to_string(input.channels) + (value ? "-value" : "") + "/d" + std::to_string(dim) + "/" +
         weights_sha;
}

void Embedder::embed(const std::vector<image::Image>& images, float* out) const {
  const auto& spec = info().input;
  std::size_t per_image = static_cast<std::size_t>(spec.channels) * spec.width * spec.height;
  std::vector<float> inputs(images.size() * per_image);
  for (std::size_t i = 0; i < images.size(); ++i) {
    image::preprocess(images[i], spec, inputs.data() + i * per_image);
  }
  embed_preprocessed(inputs.data(), images.size(), out);
}

void Embedder::embed_queries(Match, const float* inputs, std::size_t n, float* out) const {
  embed_preprocessed(inputs, n, out);
}

void Embedder::weight_queries(Match, float*, std::size_t) const {}

Match parse_match(const std::string& name) {
  if (name == "similar") return Match::kSimilar;
  if (name == "exact") return Match::kExact;
  throw Error(ErrorKind::kInvalidInput,
              "match must be \"similar\" or \"exact\", not \"" + name.substr(0, 32) + "\"");
}

const char* to_string(Match match) noexcept { return match == Match::kExact ? "exact" : "similar"; }

namespace {

class PixelEmbedder final : public Embedder {
 public:
  explicit PixelEmbedder(const image::InputSpec& input) {
    info_.name = "pixels";
    info_.version = "1";
    info_.input = input;
    info_.dim = input.width * input.height * input.channels;
  }
  const ModelInfo& info() const override { return info_; }

  void embed_preprocessed(const float* inputs, std::size_t n, float* out) const override {
    std::size_t d = static_cast<std::size_t>(info_.dim);
    for (std::size_t i = 0; i < n; ++i) {
      const float* x = inputs + i * d;
      float* y = out + i * d;
      double norm = 0;
      for (std::size_t j = 0; j < d; ++j) norm += double(x[j]) * x[j];
      float scale = norm > 0 ? static_cast<float>(1.0 / std::sqrt(norm)) : 0.f;
      for (std::size_t j = 0; j < d; ++j) y[j] = x[j] * scale;
    }
  }

 private:
  ModelInfo info_;
};

}  // namespace

std::unique_ptr<Embedder> pixel_embedder(const image::InputSpec& input) {
  return std::make_unique<PixelEmbedder>(input);
}

}  // namespace lookalike::embed
