// Embedders turn images into fixed-length vectors: a batch in, an n x dim
// row-major float matrix out, every row L2-normalised, so that inner product is
// cosine similarity.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "image/image.h"

namespace lookalike::embed {

// What made a vector. Vectors, and indexes built from them, are only comparable
// when identity() is equal.
struct ModelInfo {
  std::string name;           // e.g. "fashion-cnn"
  std::string version;        // format/architecture version of that name
  std::string weights_sha;    // first 16 hex digits of the weights' SHA-256; empty for pixels
  image::InputSpec input;
  int dim = 0;

  // "name/version/WxHxC/dDIM/weights_sha": stored with every vector and index.
  std::string identity() const;
};

class Embedder {
 public:
  virtual ~Embedder() = default;
  virtual const ModelInfo& info() const = 0;

  // inputs: n preprocessed images, n x channels x height x width floats as written
  // by image::preprocess with info().input. out: n x info().dim floats.
  // Thread-safe: concurrent calls on one Embedder are allowed.
  virtual void embed_preprocessed(const float* inputs, std::size_t n, float* out) const = 0;

  // Preprocesses and embeds; out holds images.size() x info().dim floats.
  void embed(const std::vector<image::Image>& images, float* out) const;
};

// Sets how many threads embedding uses (libtorch's intra-op pool, shared by the
// whole process). Call once at start-up, before any embedding.
void set_compute_threads(int threads);

// Loads a model file written by `lookalike train`. Throws Error(kNotFound) when
// missing and Error(kInvalidInput) naming the file when it is truncated, corrupt
// (checksum) or of an unknown format version.
std::unique_ptr<Embedder> load_model(const std::filesystem::path& file);

// The same model run exactly as trained, without the inference optimisations of
// load_model (batch norm folded into convolutions): the plain reference the
// optimised path is checked against. Same identity, same vectors within 1e-4.
std::unique_ptr<Embedder> load_model_reference(const std::filesystem::path& file);

// The raw-pixel baseline: the preprocessed pixels themselves, L2-normalised.
// The floor every trained model is measured against.
std::unique_ptr<Embedder> pixel_embedder(const image::InputSpec& input);

}  // namespace lookalike::embed
