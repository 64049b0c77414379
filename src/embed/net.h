// Internal to the embed module (includes libtorch): the CNN and its file format.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "embed/embedder.h"

namespace lookalike::embed {

// The architecture, stored in the model file's header so a file describes itself.
struct Architecture {
  // (output channels, stride) of each 3x3 conv + batch-norm + ReLU block.
  std::vector<std::pair<int, int>> blocks{{32, 1}, {32, 2}, {64, 1}, {64, 2}, {128, 1}};
  int dim = 128;
};

struct ConvBlockImpl : torch::nn::Module {
  ConvBlockImpl(int in, int out, int stride);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
};
TORCH_MODULE(ConvBlock);

// Conv blocks, global average pooling, a linear projection, L2 normalisation.
struct EmbeddingNetImpl : torch::nn::Module {
  EmbeddingNetImpl(const Architecture& arch, int in_channels);
  torch::Tensor forward(torch::Tensor x);  // n x C x H x W -> n x dim, unit rows
  torch::nn::Sequential features{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(EmbeddingNet);

// What a model file holds besides the weights.
struct ModelHeader {
  ModelInfo info;
  Architecture arch;
  std::vector<std::string> class_names;  // the categories it was trained on
  std::string trained_with;               // the options, for the record
};

// A model file is a container file (common/container_file.h) with magic "LKMODEL":
// the header JSON describes input, architecture and classes, the payload is the
// torch archive of the weights. Written atomically.
void write_model_file(const std::filesystem::path& path, ModelHeader header, EmbeddingNet& net);

struct LoadedModel {
  ModelHeader header;
  EmbeddingNet net{nullptr};
};
LoadedModel read_model_file(const std::filesystem::path& path);

}  // namespace lookalike::embed
