// Internal to the embed module (includes libtorch): the CNN and its file format.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "embed/embedder.h"

namespace lookalike::embed {

// The architecture, stored in the model file's header so a file describes itself.
struct Architecture {
  // (output channels, stride) of each 3x3 conv + batch-norm + ReLU block.
  std::vector<std::pair<int, int>> blocks{{32, 1}, {64, 2}, {64, 1}, {128, 2}, {128, 1}};
  int dim = 128;
  // Pooling pyramid over the last feature map: 1 is global average pooling, 2 adds
  // the average of each quarter, which keeps where a feature is (sleeves, collar,
  // heel) while staying independent of the input size.
  std::vector<int> pooling{1, 2};
};

// Concatenates adaptive average pooling at each grid size of `grids`, flattened:
// n x C x H x W -> n x (C * sum of g^2).
torch::Tensor pyramid_pool(const torch::Tensor& x, const std::vector<int>& grids);

struct ConvBlockImpl : torch::nn::Module {
  ConvBlockImpl(int in, int out, int stride);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
};
TORCH_MODULE(ConvBlock);

// Conv blocks, pyramid average pooling, a linear projection, L2 normalisation.
struct EmbeddingNetImpl : torch::nn::Module {
  EmbeddingNetImpl(const Architecture& arch, int in_channels);
  torch::Tensor forward(torch::Tensor x);  // n x C x H x W -> n x dim, unit rows
  torch::nn::Sequential features{nullptr};
  torch::nn::Linear head{nullptr};
  std::vector<int> pooling;
};
TORCH_MODULE(EmbeddingNet);

// Shape and type of every parameter and buffer of a module, by name. torch::load
// and Module::load replace a tensor with whatever the archive holds, whatever its
// shape, so loaders compare the layout before and after to refuse weights that do
// not fit the architecture.
using TensorLayout = std::map<std::string, std::pair<std::vector<std::int64_t>, c10::ScalarType>>;
TensorLayout tensor_layout(const torch::nn::Module& module);

// The network as inference runs it: each batch norm folded into the convolution
// before it (w' = w * g / sqrt(var + eps), b' = beta - mean * g / sqrt(var + eps)),
// so a block is one convolution and a ReLU instead of three passes over the
// activations. Checked against the unfolded network in the tests.
struct FoldedNet {
  torch::nn::Sequential features;
  torch::nn::Linear head{nullptr};
  std::vector<int> pooling;
};
FoldedNet fold_batch_norm(EmbeddingNet& net);

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
// The same from the file's bytes; `name` stands for the file in messages.
LoadedModel parse_model_file(const std::vector<std::uint8_t>& bytes, const std::string& name);

// OpenCV's process-wide thread count (cv::setNumThreads).
void set_opencv_threads(int threads);

}  // namespace lookalike::embed
