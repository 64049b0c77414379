// Internal to the embed module: the small config that describes a model brought
// from elsewhere (TorchScript or ONNX), as documented in embedder.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/error.h"
#include "embed/embedder.h"

namespace lookalike::embed {

struct ModelConfig {
  ModelInfo info;                // name, version, input and dim; weights_sha is set by the loader
  bool bgr = false;              // input.channel_order "bgr": reverse the three channels before the model
  int output = 0;                // which output, by position
  std::string output_name;       // or by name (ONNX only); empty when chosen by position
  std::string pooling = "none";  // "none", "avg" or "max" over an n x dim x H x W output
  bool normalize = true;         // L2-normalise the rows after pooling
};

// Parses and checks every field of a config (unknown keys and out-of-range values
// included, so that a typo is an error rather than a silent default). Throws
// Error(kInvalidInput) whose message starts with `what` (e.g. "model file X").
ModelConfig parse_model_config(const std::string& text, const std::string& what);

// The config as JSON text, in the form parse_model_config reads.
std::string model_config_json(const ModelConfig& config);

// Error(kInvalidInput, what + ": " + why).
Error invalid_model(const std::string& what, const std::string& why);

// "2 x 128 x 7 x 7"; "a scalar" for no dimensions.
std::string shape_text(const std::int64_t* sizes, std::size_t rank);

}  // namespace lookalike::embed
