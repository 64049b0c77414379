#include <algorithm>
#include <cctype>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "common/container_file.h"
#include "common/error.h"
#include "common/files.h"
#include "embed/model_format.h"
#include "embed/net.h"

namespace lookalike::embed {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::string kMagic("LKMODEL", 8);
constexpr std::uint32_t kFormatVersion = 1;

json header_to_json(const ModelHeader& h) {
  json blocks = json::array();
  for (const auto& [channels, stride] : h.arch.blocks) blocks.push_back({channels, stride});
  json j = {
      {"name", h.info.name},
      {"version", h.info.version},
      {"input",
       {{"width", h.info.input.width},
        {"height", h.info.input.height},
        {"channels", h.info.input.channels},
        {"mean", h.info.input.mean},
        {"std", h.info.input.stddev}}},
      {"dim", h.arch.dim},
      {"blocks", blocks},
      {"pooling", h.arch.pooling},
      {"class_names", h.class_names},
      {"trained_with", h.trained_with},
  };
  if (h.info.input.channels == 1) j["input"]["gray"] = image::to_string(h.info.input.gray);
  return j;
}

ModelHeader header_from_json(const json& j) {
  ModelHeader h;
  h.info.name = j.at("name").get<std::string>();
  h.info.version = j.at("version").get<std::string>();
  const json& in = j.at("input");
  h.info.input.width = in.at("width").get<int>();
  h.info.input.height = in.at("height").get<int>();
  h.info.input.channels = in.at("channels").get<int>();
  h.info.input.mean = in.at("mean").get<std::vector<float>>();
  h.info.input.stddev = in.at("std").get<std::vector<float>>();
  // Files written before the choice existed have no "gray": they were trained on luma.
  h.info.input.gray = image::parse_gray(in.value("gray", "luma"), "input.gray");
  h.arch.dim = j.at("dim").get<int>();
  h.arch.blocks.clear();
  for (const auto& b : j.at("blocks")) h.arch.blocks.emplace_back(b.at(0).get<int>(), b.at(1).get<int>());
  h.arch.pooling = j.value("pooling", std::vector<int>{1});
  h.class_names = j.at("class_names").get<std::vector<std::string>>();
  h.trained_with = j.value("trained_with", "");
  h.info.dim = h.arch.dim;
  const auto& spec = h.info.input;
  bool sane = spec.width > 0 && spec.width <= 1024 && spec.height > 0 && spec.height <= 1024 &&
              (spec.channels == 1 || spec.channels == 3) &&
              spec.mean.size() == static_cast<std::size_t>(spec.channels) &&
              spec.stddev.size() == static_cast<std::size_t>(spec.channels) && h.arch.dim > 0 &&
              h.arch.dim <= 4096 && !h.arch.blocks.empty() && h.arch.blocks.size() <= 64;
  for (const auto& [channels, stride] : h.arch.blocks) {
    sane = sane && channels > 0 && channels <= 2048 && (stride == 1 || stride == 2);
  }
  for (float s : spec.stddev) sane = sane && s > 0;
  sane = sane && !h.arch.pooling.empty() && h.arch.pooling.size() <= 4;
  for (int g : h.arch.pooling) sane = sane && g >= 1 && g <= 8;
  if (!sane) throw std::invalid_argument("architecture or input out of range");
  return h;
}

class CnnEmbedder final : public Embedder {
 public:
  CnnEmbedder(LoadedModel model, bool fold) : model_(std::move(model)) {
    model_.net->eval();
    if (fold) folded_ = fold_batch_norm(model_.net);
  }
  const ModelInfo& info() const override { return model_.header.info; }

  void embed_preprocessed(const float* inputs, std::size_t n, float* out) const override {
    if (n == 0) return;
    const auto& spec = info().input;
    c10::InferenceMode guard;
    auto x = torch::from_blob(const_cast<float*>(inputs),
                              {static_cast<long>(n), spec.channels, spec.height, spec.width},
                              torch::kFloat32);
    torch::Tensor y;
    if (folded_) {
      y = folded_->head(pyramid_pool(folded_->features->forward(x), folded_->pooling));
      y = torch::nn::functional::normalize(y, torch::nn::functional::NormalizeFuncOptions().dim(1));
    } else {
      y = model_.net->forward(x);
    }
    y = y.contiguous();
    std::memcpy(out, y.data_ptr<float>(), n * static_cast<std::size_t>(info().dim) * sizeof(float));
  }

 private:
  // forward() is non-const in libtorch's API, but in eval mode under InferenceMode
  // it changes no state, which is what makes concurrent embed calls safe.
  mutable LoadedModel model_;
  mutable std::optional<FoldedNet> folded_;
};

}  // namespace

FoldedNet fold_batch_norm(EmbeddingNet& net) {
  torch::NoGradGuard no_grad;
  FoldedNet folded;
  for (const auto& child : net->features->children()) {
    auto block = std::dynamic_pointer_cast<ConvBlockImpl>(child);
    if (!block) throw Error(ErrorKind::kInternal, "unexpected layer in the embedding network");
    const auto& conv_options = block->conv->options;
    auto conv = torch::nn::Conv2d(torch::nn::Conv2dOptions(conv_options.in_channels(), conv_options.out_channels(),
                                                           conv_options.kernel_size())
                                      .stride(conv_options.stride())
                                      .padding(conv_options.padding())
                                      .bias(true));
    auto& bn = block->bn;
    auto scale = bn->weight / torch::sqrt(bn->running_var + bn->options.eps());
    conv->weight.copy_(block->conv->weight * scale.view({-1, 1, 1, 1}));
    conv->bias.copy_(bn->bias - bn->running_mean * scale);
    folded.features->push_back(conv);
    folded.features->push_back(torch::nn::ReLU());
  }
  folded.pooling = net->pooling;
  folded.head = torch::nn::Linear(net->head->options);
  folded.head->weight.copy_(net->head->weight);
  folded.head->bias.copy_(net->head->bias);
  folded.features->eval();
  folded.head->eval();
  return folded;
}

ConvBlockImpl::ConvBlockImpl(int in, int out, int stride) {
  conv = register_module(
      "conv", torch::nn::Conv2d(
                  torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false)));
  bn = register_module("bn", torch::nn::BatchNorm2d(out));
}

torch::Tensor ConvBlockImpl::forward(const torch::Tensor& x) { return torch::relu(bn(conv(x))); }

EmbeddingNetImpl::EmbeddingNetImpl(const Architecture& arch, int in_channels) {
  features = register_module("features", torch::nn::Sequential());
  int channels = in_channels;
  for (const auto& [out, stride] : arch.blocks) {
    features->push_back(ConvBlock(channels, out, stride));
    channels = out;
  }
  int pooled = 0;
  for (int g : arch.pooling) pooled += channels * g * g;
  head = register_module("head", torch::nn::Linear(pooled, arch.dim));
  pooling = arch.pooling;
}

torch::Tensor pyramid_pool(const torch::Tensor& x, const std::vector<int>& grids) {
  std::vector<torch::Tensor> parts;
  for (int g : grids) {
    parts.push_back(g == 1 ? x.mean({2, 3}) : torch::adaptive_avg_pool2d(x, {g, g}).flatten(1));
  }
  return parts.size() == 1 ? parts.front() : torch::cat(parts, 1);
}

torch::Tensor EmbeddingNetImpl::forward(torch::Tensor x) {
  x = head(pyramid_pool(features->forward(x), pooling));
  return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(1));
}

TensorLayout tensor_layout(const torch::nn::Module& module) {
  TensorLayout layout;
  for (const auto& p : module.named_parameters()) {
    layout[p.key()] = {p.value().sizes().vec(), p.value().scalar_type()};
  }
  for (const auto& b : module.named_buffers()) {
    layout[b.key()] = {b.value().sizes().vec(), b.value().scalar_type()};
  }
  return layout;
}

void write_model_file(const fs::path& path, ModelHeader header, EmbeddingNet& net) {
  std::ostringstream weights;
  torch::save(net, weights);
  header.info.dim = header.arch.dim;
  write_container_file(path, kMagic, kFormatVersion, header_to_json(header).dump(), weights.str());
}

LoadedModel read_model_file(const fs::path& path) {
  return parse_model_file(read_file(path, kMaxModelBytes), path.string());
}

LoadedModel parse_model_file(const std::vector<std::uint8_t>& bytes, const std::string& name) {
  auto file = parse_container_file(bytes, kMagic, kFormatVersion, "model file", name);
  auto corrupt = [&](const std::string& why) {
    return Error(ErrorKind::kInvalidInput, "model file " + name + " " + why);
  };
  LoadedModel model;
  try {
    model.header = header_from_json(json::parse(file.header));
  } catch (const std::exception& e) {
    throw corrupt(std::string("has an invalid header: ") + e.what());
  }
  model.net = EmbeddingNet(model.header.arch, model.header.info.input.channels);
  const auto expected = tensor_layout(*model.net);
  try {
    std::istringstream in(std::string(file.payload.begin(), file.payload.end()));
    torch::load(model.net, in);
  } catch (const std::exception& e) {
    throw corrupt(std::string("has weights that do not fit its architecture: ") + e.what());
  }
  for (const auto& [name, layout] : tensor_layout(*model.net)) {
    auto it = expected.find(name);
    if (it == expected.end() || it->second != layout) {
      throw corrupt("has weights that do not fit its architecture: " + name + " has the wrong shape or type");
    }
  }
  model.header.info.weights_sha = sha256_hex(file.payload.data(), file.payload.size()).substr(0, 16);
  return model;
}

void set_compute_threads(int threads) {
  torch::set_num_threads(threads);
  set_opencv_threads(threads);
}

ModelFormat model_format(const std::vector<std::uint8_t>& bytes, const fs::path& path) {
  auto starts_with = [&](const char* magic, std::size_t size) {
    return bytes.size() >= size && std::memcmp(bytes.data(), magic, size) == 0;
  };
  if (starts_with(kMagic.data(), kMagic.size())) return ModelFormat::kNative;
  if (starts_with(kFusedMagic, 8)) return ModelFormat::kFused;
  if (starts_with("PK\x03\x04", 4)) return ModelFormat::kTorchScript;
  std::string extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  // An ONNX model starts with its first field, ir_version (field 1, a varint: tag
  // byte 0x08).
  if (extension == ".onnx" || starts_with("\x08", 1)) return ModelFormat::kOnnx;
  return ModelFormat::kNative;  // parsing it reports what is wrong
}

std::unique_ptr<Embedder> load_model_bytes(std::vector<std::uint8_t> bytes, ModelFormat format,
                                           const std::string& name) {
  switch (format) {
    case ModelFormat::kFused:
      return load_fused_model(bytes, name);
    case ModelFormat::kTorchScript:
      return load_torchscript_model(bytes, "model file " + name);
    case ModelFormat::kOnnx:
      return load_onnx_model(std::move(bytes), "model file " + name);
    case ModelFormat::kNative:
      break;
  }
  return std::make_unique<CnnEmbedder>(parse_model_file(bytes, name), /*fold=*/true);
}

std::unique_ptr<Embedder> load_model(const fs::path& file) {
  auto bytes = read_file(file, kMaxModelBytes);
  const ModelFormat format = model_format(bytes, file);
  return load_model_bytes(std::move(bytes), format, file.string());
}

std::unique_ptr<Embedder> load_model_reference(const fs::path& file) {
  return std::make_unique<CnnEmbedder>(read_model_file(file), /*fold=*/false);
}

}  // namespace lookalike::embed
