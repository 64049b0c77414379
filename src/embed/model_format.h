// Internal to the embed module: the kinds of model file load_model() reads and
// their loaders, each working on the file's bytes so that a fused model can load
// its parts from memory. Kept free of libtorch and OpenCV headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "embed/embedder.h"

namespace lookalike::embed {

// No model file is read whole beyond this.
inline constexpr std::size_t kMaxModelBytes = std::size_t(1) << 30;

// Told apart by their first bytes (and the extension .onnx): lookalike's own
// ("LKMODEL", cnn.cpp), fused (kFusedMagic, fused.cpp), TorchScript (a zip
// archive, torchscript.cpp) and ONNX (onnx.cpp).
enum class ModelFormat { kNative, kFused, kTorchScript, kOnnx };
inline constexpr char kFusedMagic[9] = "LKFUSED";  // with its terminating zero: 8 bytes
ModelFormat model_format(const std::vector<std::uint8_t>& bytes, const std::filesystem::path& path);
std::unique_ptr<Embedder> load_model_bytes(std::vector<std::uint8_t> bytes, ModelFormat format,
                                           const std::string& name);

// Each loader validates what it reads; `what` names the file in messages.
std::unique_ptr<Embedder> load_torchscript_model(const std::vector<std::uint8_t>& bytes,
                                                 const std::string& what);
std::unique_ptr<Embedder> load_onnx_model(std::vector<std::uint8_t> bytes, const std::string& what);
std::unique_ptr<Embedder> load_fused_model(const std::vector<std::uint8_t>& bytes, const std::string& name);

}  // namespace lookalike::embed
