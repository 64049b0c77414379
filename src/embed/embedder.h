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

// Loads a model file written by `lookalike train`, or a TorchScript file (below). Throws Error(kNotFound)
// when missing and Error(kInvalidInput) naming the file when it is truncated, corrupt (checksum) or of an
// unknown format version.
std::unique_ptr<Embedder> load_model(const std::filesystem::path& file);

// The same model run exactly as trained, without the inference optimisations of
// load_model (batch norm folded into convolutions): the plain reference the
// optimised path is checked against. Same identity, same vectors within 1e-4.
std::unique_ptr<Embedder> load_model_reference(const std::filesystem::path& file);

// Bring your own model: TorchScript (libtorch's torch::jit). A TorchScript file
// that lookalike loads carries its description as the archive's extra file
// "lookalike/model.json" (kTorchScriptConfigName):
//   {"name": "my-net", "version": "1",
//    "input": {"width": 224, "height": 224, "channels": 3, "channel_order": "rgb",
//              "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
//    "output": 0, "pooling": "none", "normalize": true, "dim": 512}
// input: what forward() takes, n x channels x height x width floats made as
// image::preprocess documents (pixel / 255 - mean) / std; channel_order "bgr"
// reverses the three channels first. output: which element when forward returns a
// tuple or list (else 0). pooling: "none" when that output is n x dim, "avg" or
// "max" to pool an n x dim x H x W map. normalize: L2-normalise the rows (false
// only for a model that does it itself). load_model() recognises such files by
// their zip signature and validates them: the config (every field, in range), the
// archive, then a probe batch of zeros must give an n x dim output of finite values;
// errors (Error(kInvalidInput)) name the file and what was wrong. The identity's
// weights_sha is that of the whole file.
inline constexpr const char* kTorchScriptConfigName = "lookalike/model.json";

// Writes a model file of `lookalike train` as a TorchScript file with its config
// (batch norm folded; same vectors as load_model within 1e-4), atomically.
void export_torchscript(const std::filesystem::path& model_file, const std::filesystem::path& out);

// Packages a TorchScript file made elsewhere (e.g. torch.jit.save in Python) with
// a config (the JSON above, as text) into a file load_model() accepts, after
// validating both as load_model() would. Written atomically.
void package_torchscript(const std::filesystem::path& torchscript, const std::string& config_json,
                         const std::filesystem::path& out);

// The raw-pixel baseline: the preprocessed pixels themselves, L2-normalised.
// The floor every trained model is measured against.
std::unique_ptr<Embedder> pixel_embedder(const image::InputSpec& input);

}  // namespace lookalike::embed
