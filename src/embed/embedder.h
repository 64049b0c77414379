// Embedders turn images into fixed-length vectors: a batch in, an n x dim
// row-major float matrix out, every row L2-normalised, so that inner product is
// cosine similarity.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "image/image.h"

namespace lookalike::embed {

// What a search wants from a photo: products that look like it, or that exact
// product (the shopper's own photo of an item, a merchant's new listing). The two
// differ only for a fused model that gives its parts other weights for exact
// matches (FusedPart::exact_weight); every other model answers both the same way.
enum class Match {
  kSimilar,  // the model's own weighting: category and look
  kExact,    // the same item: a fused model's exact weights
};

// Parses "similar" or "exact"; Error(kInvalidInput) otherwise.
Match parse_match(const std::string& name);
const char* to_string(Match match) noexcept;

// What made a vector. Vectors, and indexes built from them, are only comparable
// when identity() is equal.
struct ModelInfo {
  std::string name;           // e.g. "fashion-cnn"
  std::string version;        // format/architecture version of that name
  std::string weights_sha;    // first 16 hex digits of the weights' SHA-256; empty for pixels
  image::InputSpec input;
  int dim = 0;
  // A fused model's parts, "<identity> weight <w> exact <e>" each, in vector order; empty otherwise.
  std::vector<std::string> parts;

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

  // embed_preprocessed for query photos that a search asks `match` of. A fused
  // model skips the parts that `match` gives no weight (weight_queries would zero
  // them) and leaves their share of each row zero, normalised as if the part had
  // returned a unit row; after weight_queries the rows equal those of
  // embed_preprocessed + weight_queries. Every other model embeds as
  // embed_preprocessed. Thread-safe like it.
  virtual void embed_queries(Match match, const float* inputs, std::size_t n, float* out) const;

  // Preprocesses and embeds; out holds images.size() x info().dim floats.
  void embed(const std::vector<image::Image>& images, float* out) const;

  // Re-weights n query vectors made by this model, in place, so that their inner
  // product with the model's stored (catalog) vectors is the similarity `match`
  // asks for: for a fused model with exact weights and Match::kExact, the
  // exact-weighted mean of the parts' cosine similarities (the rows are then not
  // unit length); for every other model and match, nothing changes.
  virtual void weight_queries(Match match, float* vectors, std::size_t n) const;
};

// Sets how many threads embedding uses: libtorch's intra-op pool and OpenCV's
// (which runs ONNX models, and resizes images), both shared by the whole process.
// Call once at start-up, before any embedding.
void set_compute_threads(int threads);

// Loads a model file written by `lookalike train`, a TorchScript file, an ONNX
// file or a fused model (below), told apart by their first bytes (and the extension .onnx). Throws
// Error(kNotFound) when missing and Error(kInvalidInput) naming the file when it is
// truncated, corrupt (checksum), of an unknown format version, or does not fit its config.
std::unique_ptr<Embedder> load_model(const std::filesystem::path& file);

// The same model run exactly as trained, without the inference optimisations of
// load_model (batch norm folded into convolutions): the plain reference the
// optimised path is checked against. Same identity, same vectors within 1e-4.
std::unique_ptr<Embedder> load_model_reference(const std::filesystem::path& file);

// Bring your own model: TorchScript (libtorch's torch::jit) or ONNX (OpenCV's DNN
// module). Such a file carries its description, the model config, as
// "lookalike/model.json" (kModelConfigName): a TorchScript archive's extra file, or
// an ONNX model's metadata property of that key:
//   {"name": "my-net", "version": "1",
//    "input": {"width": 224, "height": 224, "channels": 3, "channel_order": "rgb",
//              "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
//    "output": 0, "pooling": "none", "normalize": true, "dim": 512}
// input: what forward() takes, n x channels x height x width floats made as
// image::preprocess documents (pixel / 255 - mean) / std; channel_order "bgr"
// reverses the three channels first; "gray" (1 channel only, optional): "luma", the
// default, or "value", how a colour photo is made grey (image::Gray). output: which element when forward
// returns a tuple or list (else 0); for ONNX, the graph's output at that position, or the output of that name
// when a string. pooling: "none" when that output is n x dim, "avg" or "max" to pool an n x dim x H x W map.
// normalize: L2-normalise the rows (false only for a model that does it itself). load_model() recognises such
// files by their zip signature and validates them: the config (every field, in range), the archive, then a
// probe batch of zeros must give an n x dim output of finite values; errors (Error(kInvalidInput)) name the
// file and what was wrong. The identity's weights_sha is that of the whole file.
//
// ONNX files are checked before they run: the protobuf parses, the graph's SHA-256
// (metadata "lookalike/graph_sha256", written by export and packaging) matches, every
// operator is of the standard domain and OpenCV can create it, the graph has one
// float input whose declared shape fits the config (a fixed batch size is honoured
// by feeding batches of that size), the chosen output exists with the rank the
// pooling needs (2, or 4 for "avg"/"max") and, when declared, dim values per image;
// then a probe batch must give an n x dim output of finite values.
// Thread safety: cv::dnn::Net::forward must not run concurrently, so an ONNX
// embedder keeps a pool of nets (one per concurrent caller, at most one per core;
// further callers wait), made on demand from the file's bytes held in memory.
inline constexpr const char* kModelConfigName = "lookalike/model.json";

// Writes a model file of `lookalike train` as a TorchScript file with its config
// (batch norm folded; same vectors as load_model within 1e-4), atomically.
void export_torchscript(const std::filesystem::path& model_file, const std::filesystem::path& out);

// Packages a TorchScript file made elsewhere (e.g. torch.jit.save in Python) with
// a config (the JSON above, as text) into a file load_model() accepts, after
// validating both as load_model() would. Written atomically.
void package_torchscript(const std::filesystem::path& torchscript, const std::string& config_json,
                         const std::filesystem::path& out);

// Writes a model file of `lookalike train` as an ONNX model (opset 11: Conv with
// batch norm folded in, Relu, GlobalAveragePool/AveragePool for the pooling
// pyramid, Flatten, Concat, Gemm, ReduceL2 and Div: OpenCV 4.6 has no
// LpNormalization) with its config and graph
// checksum as metadata, atomically. Same vectors as load_model within 1e-4 when
// run by load_model. Throws Error(kUnsupported) for a pooling grid whose windows
// are of unequal size on the model's feature map (ONNX's AveragePool cannot express it).
void export_onnx(const std::filesystem::path& model_file, const std::filesystem::path& out);

// Packages an ONNX model made elsewhere (e.g. torch.onnx.export) with a config
// (the JSON above, as text) into a file load_model() accepts, after validating
// both as load_model() would. Written atomically.
void package_onnx(const std::filesystem::path& onnx, const std::string& config_json,
                  const std::filesystem::path& out);

// Fused models: one embedder made of several, e.g. one trained for categories and
// one for exact items, when no single model is good at both. Each part's vector is
// scaled by sqrt(weight / sum of weights) and the parts are concatenated, so that
// the fused cosine similarity is the weighted mean of the parts' cosine
// similarities. A part may carry a second weight for exact matches
// (Embedder::weight_queries with Match::kExact): the catalog's vectors stay those
// of the weights, and the query is re-weighted, so one index answers both; e.g. a
// category part with exact weight 0 leaves exact matches to the instance part. The
// parts must take the same input (size, channels, mean and std),
// so that one preprocessing serves all of them. The file (a container file, magic
// "LKFUSED") holds each part's own file whole, so a data folder's one model file
// stays self-contained; load_model() reads it like any model file and validates
// every part as it would on its own. Its identity is "fused/1/<input>/d<sum of
// dims>/<first 16 hex digits of the file's SHA-256>": other weights, another model.
struct FusedPart {
  std::filesystem::path model;  // a model file load_model() reads, not itself fused
  double weight = 1;            // > 0
  // Weight for exact matches (Match::kExact), >= 0, at least one part's > 0;
  // unset: the same as weight.
  std::optional<double> exact_weight = std::nullopt;
};
inline constexpr std::size_t kMaxFusedParts = 8;

// Writes the fused model of 2..kMaxFusedParts parts atomically. Throws
// Error(kInvalidInput) naming the part when one cannot be loaded, is fused
// itself, takes another input than the first, or has a weight that is not > 0 or
// an exact weight below 0 (or every exact weight 0).
void write_fused_model(const std::vector<FusedPart>& parts, const std::filesystem::path& out);

// The raw-pixel baseline: the preprocessed pixels themselves, L2-normalised.
// The floor every trained model is measured against.
std::unique_ptr<Embedder> pixel_embedder(const image::InputSpec& input);

}  // namespace lookalike::embed
