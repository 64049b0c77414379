// Bring your own model: TorchScript files with an embedded config (embedder.h).
#include <torch/script.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <sstream>

#include "common/error.h"
#include "common/files.h"
#include "embed/model_config.h"
#include "embed/model_format.h"
#include "embed/net.h"

namespace lookalike::embed {
namespace fs = std::filesystem;

namespace {

constexpr std::int64_t kProbeBatch = 2;

// TorchScript outputs have no names: forward() returns a value, a tuple or a list.
ModelConfig parse_config(const std::string& text, const std::string& what) {
  ModelConfig config = parse_model_config(text, what);
  if (!config.output_name.empty()) {
    throw invalid_model(what,
                        "model config: output \"" + config.output_name +
                            "\" is a name; a TorchScript model's output is chosen by position (0, 1, ...)");
  }
  return config;
}

class TorchScriptEmbedder final : public Embedder {
 public:
  TorchScriptEmbedder(torch::jit::Module module, ModelConfig config, const std::string& what)
      : module_(std::move(module)), config_(std::move(config)) {
    module_.eval();
    // Validation: a probe batch must come out n x dim and finite.
    const auto& in = config_.info.input;
    std::vector<float> zeros(std::size_t(kProbeBatch) * in.channels * in.width * in.height, 0.f);
    torch::Tensor y;
    try {
      y = run(zeros.data(), kProbeBatch);
    } catch (const Error& e) {
      throw invalid_model(what, e.what());
    } catch (const std::exception& e) {
      throw invalid_model(what, std::string("forward() fails on a ") + std::to_string(kProbeBatch) + " x " +
                                    std::to_string(in.channels) + " x " + std::to_string(in.height) + " x " +
                                    std::to_string(in.width) + " input: " + first_line(e.what()));
    }
    if (!torch::isfinite(y).all().item<bool>())
      throw invalid_model(what, "the model gives non-finite values on a probe");
  }

  const ModelInfo& info() const override { return config_.info; }

  void embed_preprocessed(const float* inputs, std::size_t n, float* out) const override {
    if (n == 0) return;
    torch::Tensor y;
    try {
      y = run(inputs, static_cast<std::int64_t>(n));
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Error(ErrorKind::kInternal,
                  "model " + config_.info.identity() + " failed: " + first_line(e.what()));
    }
    std::memcpy(out, y.data_ptr<float>(), n * static_cast<std::size_t>(config_.info.dim) * sizeof(float));
  }

  ModelInfo& mutable_info() { return config_.info; }

 private:
  static std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

  // n preprocessed inputs -> n x dim contiguous floats, as configured.
  torch::Tensor run(const float* inputs, std::int64_t n) const {
    const auto& in = config_.info.input;
    c10::InferenceMode guard;
    auto x =
        torch::from_blob(const_cast<float*>(inputs), {n, in.channels, in.height, in.width}, torch::kFloat32);
    if (config_.bgr) x = x.flip({1});
    torch::IValue result = module_.forward({x});
    if (result.isTuple()) {
      const auto& elements = result.toTupleRef().elements();
      if (std::size_t(config_.output) >= elements.size()) {
        throw Error(ErrorKind::kInvalidInput, "output " + std::to_string(config_.output) +
                                                  " asked for, but forward() returns " +
                                                  std::to_string(elements.size()) + " outputs");
      }
      result = elements[std::size_t(config_.output)];
    } else if (result.isList()) {
      auto list = result.toList();
      if (std::size_t(config_.output) >= list.size()) {
        throw Error(ErrorKind::kInvalidInput, "output " + std::to_string(config_.output) +
                                                  " asked for, but forward() returns " +
                                                  std::to_string(list.size()) + " outputs");
      }
      result = list.get(std::size_t(config_.output));
    } else if (config_.output != 0) {
      throw Error(ErrorKind::kInvalidInput, "output " + std::to_string(config_.output) +
                                                " asked for, but forward() returns a single value");
    }
    if (!result.isTensor()) throw Error(ErrorKind::kInvalidInput, "the selected output is not a tensor");
    auto y = result.toTensor().to(torch::kFloat32);
    if (config_.pooling == "avg" || config_.pooling == "max") {
      if (y.dim() != 4) {
        throw Error(ErrorKind::kInvalidInput,
                    "pooling \"" + config_.pooling + "\" needs an n x C x H x W output, got " + shape(y));
      }
      y = config_.pooling == "avg" ? y.mean({2, 3}) : y.amax({2, 3});
    }
    if (y.dim() != 2 || y.size(0) != n || y.size(1) != config_.info.dim) {
      throw Error(ErrorKind::kInvalidInput, "the output is " + shape(y) + ", the config says " +
                                                std::to_string(n) + " x " + std::to_string(config_.info.dim) +
                                                " (dim)");
    }
    if (config_.normalize) {
      y = torch::nn::functional::normalize(y, torch::nn::functional::NormalizeFuncOptions().dim(1));
    }
    return y.contiguous();
  }

  static std::string shape(const torch::Tensor& t) { return shape_text(t.sizes().data(), t.sizes().size()); }

  // forward() is not const in libtorch's API; running a scripted module in
  // inference mode from several threads at once is safe.
  mutable torch::jit::Module module_;
  ModelConfig config_;
};

std::uint32_t le(const std::vector<std::uint8_t>& b, std::size_t at, int bytes) {
  std::uint32_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | b[at + std::size_t(i)];
  return v;
}

// libtorch's reader does not check the zip CRCs, and the tensors are stored
// uncompressed: a flipped byte in the weights would load as other weights. So the
// CRC-32 of every stored entry is checked here (deflated entries are checked by
// inflating them). Returns why the archive is damaged, or "".
std::string damaged_zip(const std::vector<std::uint8_t>& b) {
  constexpr std::size_t kEocd = 22;
  if (b.size() < kEocd) return "too short for a zip archive";
  std::size_t eocd = std::string::npos;
  for (std::size_t at = b.size() - kEocd + 1; at-- > 0 && b.size() - at <= kEocd + 65535;) {
    if (le(b, at, 4) == 0x06054b50) {
      eocd = at;
      break;
    }
  }
  if (eocd == std::string::npos) return "no zip end-of-directory record (truncated?)";
  const std::size_t entries = le(b, eocd + 10, 2), dir_size = le(b, eocd + 12, 4),
                    dir_at = le(b, eocd + 16, 4);
  if (dir_at == 0xFFFFFFFFu || entries == 0xFFFF)
    return "";  // zip64: not produced below 4 GiB; left to libtorch
  if (dir_at + dir_size > eocd) return "the zip directory lies outside the file";
  std::size_t at = dir_at;
  for (std::size_t i = 0; i < entries; ++i) {
    if (at + 46 > eocd || le(b, at, 4) != 0x02014b50) return "a damaged zip directory entry";
    const std::uint32_t method = le(b, at + 10, 2), crc = le(b, at + 16, 4), size = le(b, at + 20, 4);
    const std::size_t name_len = le(b, at + 28, 2), extra_len = le(b, at + 30, 2),
                      comment_len = le(b, at + 32, 2);
    const std::size_t local = le(b, at + 42, 4);
    const std::string name(b.begin() + long(at + 46), b.begin() + long(std::min(eocd, at + 46 + name_len)));
    at += 46 + name_len + extra_len + comment_len;
    if (method != 0 || size == 0xFFFFFFFFu) continue;
    if (local + 30 > b.size() || le(b, local, 4) != 0x04034b50) return "a damaged zip entry " + name;
    const std::size_t data = local + 30 + le(b, local + 26, 2) + le(b, local + 28, 2);
    if (data + size > b.size()) return "zip entry " + name + " is cut short";
    if (::crc32(0L, b.data() + data, size) != crc) return "zip entry " + name + " fails its CRC-32 check";
  }
  return "";
}

// Loads a TorchScript archive from bytes with its config extra file (empty when absent).
torch::jit::Module load_archive(const std::vector<std::uint8_t>& bytes, const std::string& what,
                                std::string& config) {
  const std::string damage = damaged_zip(bytes);
  if (!damage.empty()) throw invalid_model(what, "a corrupt TorchScript archive: " + damage);
  torch::jit::ExtraFilesMap extra{{kModelConfigName, ""}};
  try {
    std::istringstream in(std::string(bytes.begin(), bytes.end()));
    auto module = torch::jit::load(in, torch::kCPU, extra);
    config = extra[kModelConfigName];
    return module;
  } catch (const std::exception& e) {
    std::string message = e.what();
    throw invalid_model(what,
                        "not a readable TorchScript archive (" + message.substr(0, message.find('\n')) + ")");
  }
}

std::unique_ptr<TorchScriptEmbedder> make_embedder(const std::vector<std::uint8_t>& bytes,
                                                   torch::jit::Module module, const std::string& config_text,
                                                   const std::string& what) {
  if (config_text.empty()) {
    throw invalid_model(
        what,
        std::string("the TorchScript file has no ") + kModelConfigName +
            "; add one with `lookalike export-model --torchscript FILE --config CONFIG.json --out OUT`");
  }
  ModelConfig config = parse_config(config_text, what);
  config.info.weights_sha = sha256_hex(bytes.data(), bytes.size()).substr(0, 16);
  return std::make_unique<TorchScriptEmbedder>(std::move(module), std::move(config), what);
}

void save_atomic(const torch::jit::Module& module, const std::string& config, const fs::path& out) {
  std::ostringstream archive;
  module.save(archive, {{kModelConfigName, config}});
  const std::string bytes = archive.str();
  write_file_atomic(out, bytes.data(), bytes.size());
}

}  // namespace

std::unique_ptr<Embedder> load_torchscript_model(const std::vector<std::uint8_t>& bytes,
                                                 const std::string& what) {
  std::string config;
  auto module = load_archive(bytes, what, config);
  return make_embedder(bytes, std::move(module), config, what);
}

void export_torchscript(const fs::path& model_file, const fs::path& out) {
  LoadedModel model = read_model_file(model_file);
  model.net->eval();
  FoldedNet folded = fold_batch_norm(model.net);
  torch::NoGradGuard no_grad;
  torch::jit::Module module("lookalike_embedding_net");
  std::ostringstream source;
  source << "def forward(self, x):\n";
  int index = 0;
  for (const auto& child : folded.features->children()) {
    auto conv = std::dynamic_pointer_cast<torch::nn::Conv2dImpl>(child);
    if (!conv) continue;  // the ReLUs, written inline below
    const auto& o = conv->options;
    const auto stride = (*o.stride())[0];
    const auto padding = c10::get<torch::ExpandingArray<2>>(o.padding());
    module.register_buffer("w" + std::to_string(index), conv->weight.detach().clone());
    module.register_buffer("b" + std::to_string(index), conv->bias.detach().clone());
    source << "    x = torch.relu(torch.conv2d(x, self.w" << index << ", self.b" << index << ", [" << stride
           << ", " << stride << "], [" << (*padding)[0] << ", " << (*padding)[1] << "]))\n";
    ++index;
  }
  std::string parts;
  for (int g : folded.pooling) {
    std::string part = "p" + std::to_string(g);
    source << "    " << part << " = "
           << (g == 1 ? std::string("torch.mean(x, [2, 3])")
                      : "torch.flatten(torch.adaptive_avg_pool2d(x, [" + std::to_string(g) + ", " +
                            std::to_string(g) + "]), 1)")
           << "\n";
    parts += (parts.empty() ? "" : ", ") + part;
  }
  module.register_buffer("head_w", folded.head->weight.detach().clone());
  module.register_buffer("head_b", folded.head->bias.detach().clone());
  source << "    y = torch.cat([" << parts << "], 1)\n";
  source << "    return torch.matmul(y, self.head_w.t()) + self.head_b\n";
  module.define(source.str());

  ModelConfig config;
  config.info = model.header.info;
  config.info.version += "-torchscript";
  config.pooling = "none";
  config.normalize = true;
  save_atomic(module, model_config_json(config), out);
}

void package_torchscript(const fs::path& torchscript, const std::string& config_json_text,
                         const fs::path& out) {
  const std::string what = "TorchScript file " + torchscript.string();
  auto bytes = read_file(torchscript, kMaxModelBytes);
  std::string ignored;
  auto module = load_archive(bytes, what, ignored);
  ModelConfig config = parse_config(config_json_text, what);
  // Validates shapes and the probe before anything is written.
  TorchScriptEmbedder check(module.clone(), config, what);
  save_atomic(module, model_config_json(config), out);
}

}  // namespace lookalike::embed
