// Fused models (embedder.h): several embedders behind one, their vectors scaled
// and concatenated.
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>

#include "common/container_file.h"
#include "common/error.h"
#include "common/files.h"
#include "embed/embedder.h"
#include "embed/model_format.h"

namespace lookalike::embed {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr std::uint32_t kFusedFormatVersion = 1;

const char* format_name(ModelFormat format) {
  switch (format) {
    case ModelFormat::kNative:
      return "lookalike";
    case ModelFormat::kFused:
      return "fused";
    case ModelFormat::kTorchScript:
      return "torchscript";
    case ModelFormat::kOnnx:
      return "onnx";
  }
  return "";
}

ModelFormat parse_format(const std::string& name) {
  for (ModelFormat format : {ModelFormat::kNative, ModelFormat::kTorchScript, ModelFormat::kOnnx}) {
    if (name == format_name(format)) return format;
  }
  throw std::invalid_argument("unknown part format \"" + name + "\"");
}

bool same_input(const image::InputSpec& a, const image::InputSpec& b) {
  return a.width == b.width && a.height == b.height && a.channels == b.channels && a.mean == b.mean &&
         a.stddev == b.stddev && (a.channels != 1 || a.gray == b.gray);
}

std::string input_text(const image::InputSpec& spec) {
  json j = {{"size", std::to_string(spec.width) + "x" + std::to_string(spec.height) + "x" +
                         std::to_string(spec.channels)},
            {"mean", spec.mean},
            {"std", spec.stddev}};
  if (spec.channels == 1) j["gray"] = image::to_string(spec.gray);
  return j.dump();
}

// Checks that every part takes the first part's input; `name_of(i)` names part i.
template <typename NameOf>
void check_same_inputs(const std::vector<std::unique_ptr<Embedder>>& parts, const NameOf& name_of) {
  for (std::size_t i = 1; i < parts.size(); ++i) {
    const auto& first = parts.front()->info().input;
    const auto& input = parts[i]->info().input;
    if (!same_input(first, input)) {
      throw Error(ErrorKind::kInvalidInput, name_of(i) + " takes another input (" + input_text(input) +
                                                ") than " + name_of(0) + " (" + input_text(first) +
                                                "); fused parts share one preprocessing");
    }
  }
}

bool valid_weight(double weight) { return std::isfinite(weight) && weight > 0; }
bool valid_exact_weight(double weight) { return std::isfinite(weight) && weight >= 0; }

// Scale of each part for `weights`: sqrt(w / sum of w).
std::vector<float> part_scales(const std::vector<double>& weights) {
  double total = 0;
  for (double w : weights) total += w;
  std::vector<float> scales;
  for (double w : weights) scales.push_back(static_cast<float>(std::sqrt(w / total)));
  return scales;
}

class FusedEmbedder final : public Embedder {
 public:
  FusedEmbedder(std::vector<std::unique_ptr<Embedder>> parts, const std::vector<double>& weights,
                const std::vector<double>& exact_weights, const std::string& file_sha)
      : parts_(std::move(parts)), scales_(part_scales(weights)) {
    // Query and catalog parts both carry scale, so their product carries scale^2, the
    // weight's share; multiplying the query's part by (exact_scale / scale)^2 makes
    // it exact_scale^2 = e / sum of e, the exact weight's share.
    const auto exact_scales = part_scales(exact_weights);
    for (std::size_t p = 0; p < parts_.size(); ++p) {
      const float ratio = exact_scales[p] / scales_[p];
      exact_query_scales_.push_back(ratio * ratio);
      if (std::abs(exact_query_scales_.back() - 1.0f) > 1e-6f) exact_differs_ = true;
    }
    info_.name = "fused";
    info_.version = "1";
    info_.weights_sha = file_sha.substr(0, 16);
    info_.input = parts_.front()->info().input;
    for (std::size_t p = 0; p < parts_.size(); ++p) {
      info_.dim += parts_[p]->info().dim;
      std::ostringstream part;
      part << parts_[p]->info().identity() << " weight " << weights[p] << " exact " << exact_weights[p];
      info_.parts.push_back(part.str());
    }
  }

  const ModelInfo& info() const override { return info_; }

  void weight_queries(Match match, float* vectors, std::size_t n) const override {
    if (match != Match::kExact || !exact_differs_) return;
    const std::size_t dim = static_cast<std::size_t>(info_.dim);
    for (std::size_t i = 0; i < n; ++i) {
      float* row = vectors + i * dim;
      for (std::size_t p = 0; p < parts_.size(); ++p) {
        const std::size_t d = static_cast<std::size_t>(parts_[p]->info().dim);
        for (std::size_t j = 0; j < d; ++j) row[j] *= exact_query_scales_[p];
        row += d;
      }
    }
  }

  void embed_preprocessed(const float* inputs, std::size_t n, float* out) const override {
    embed_parts(inputs, n, out, /*skip_unweighted_exact=*/false);
  }

  // An exact search with the shipped default gives the category part exact weight
  // 0: skipping it makes each exact query view about four times cheaper to embed.
  void embed_queries(Match match, const float* inputs, std::size_t n, float* out) const override {
    embed_parts(inputs, n, out, match == Match::kExact);
  }

 private:
  void embed_parts(const float* inputs, std::size_t n, float* out, bool skip_unweighted_exact) const {
    const std::size_t dim = static_cast<std::size_t>(info_.dim);
    std::vector<float> part_out;
    std::size_t offset = 0;
    // A skipped part counts as the unit row it is checked to give, scaled.
    double skipped_norm = 0;
    for (std::size_t p = 0; p < parts_.size(); ++p) {
      const std::size_t d = static_cast<std::size_t>(parts_[p]->info().dim);
      if (skip_unweighted_exact && exact_query_scales_[p] == 0) {
        for (std::size_t i = 0; i < n; ++i) std::fill_n(out + i * dim + offset, d, 0.f);
        skipped_norm += double(scales_[p]) * scales_[p];
        offset += d;
        continue;
      }
      part_out.resize(n * d);
      parts_[p]->embed_preprocessed(inputs, n, part_out.data());
      for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t j = 0; j < d; ++j) out[i * dim + offset + j] = scales_[p] * part_out[i * d + j];
      }
      offset += d;
    }
    // Unit-norm parts give a unit-norm row already; a part that returned a zero
    // row (nothing to see) must not leave the fused row short.
    for (std::size_t i = 0; i < n; ++i) {
      float* row = out + i * dim;
      double norm = skipped_norm;
      for (std::size_t j = 0; j < dim; ++j) norm += double(row[j]) * row[j];
      if (norm <= 0) continue;
      const float scale = static_cast<float>(1.0 / std::sqrt(norm));
      for (std::size_t j = 0; j < dim; ++j) row[j] *= scale;
    }
  }

  std::vector<std::unique_ptr<Embedder>> parts_;
  std::vector<float> scales_;
  std::vector<float> exact_query_scales_;  // query part multipliers for Match::kExact
  bool exact_differs_ = false;             // some multiplier is not 1
  ModelInfo info_;
};

}  // namespace

void write_fused_model(const std::vector<FusedPart>& parts, const fs::path& out) {
  if (parts.size() < 2 || parts.size() > kMaxFusedParts) {
    throw Error(ErrorKind::kInvalidInput, "a fused model has 2 to " + std::to_string(kMaxFusedParts) +
                                              " parts, not " + std::to_string(parts.size()));
  }
  json header_parts = json::array();
  std::string payload;
  std::vector<std::unique_ptr<Embedder>> loaded;
  double exact_total = 0;
  for (const auto& part : parts) {
    const std::string name = "part " + part.model.string();
    if (!valid_weight(part.weight)) {
      throw Error(ErrorKind::kInvalidInput,
                  name + " has weight " + std::to_string(part.weight) + "; weights must be greater than 0");
    }
    const double exact = part.exact_weight.value_or(part.weight);
    if (!valid_exact_weight(exact)) {
      throw Error(ErrorKind::kInvalidInput,
                  name + " has exact weight " + std::to_string(exact) + "; exact weights must be 0 or more");
    }
    exact_total += exact;
    auto bytes = read_file(part.model, kMaxModelBytes);
    const ModelFormat format = model_format(bytes, part.model);
    if (format == ModelFormat::kFused) {
      throw Error(ErrorKind::kInvalidInput, name + " is a fused model itself; fuse its parts instead");
    }
    loaded.push_back(load_model_bytes(bytes, format, part.model.string()));
    header_parts.push_back({{"file", part.model.filename().string()},
                            {"format", format_name(format)},
                            {"identity", loaded.back()->info().identity()},
                            {"weight", part.weight},
                            {"bytes", bytes.size()}});
    if (part.exact_weight) header_parts.back()["exact_weight"] = *part.exact_weight;
    payload.append(bytes.begin(), bytes.end());
  }
  if (exact_total <= 0)
    throw Error(ErrorKind::kInvalidInput, "every part has exact weight 0; one needs more");
  check_same_inputs(loaded, [&](std::size_t i) { return "part " + parts[i].model.string(); });
  if (payload.size() > kMaxModelBytes) {
    throw Error(ErrorKind::kInvalidInput,
                "the fused model would exceed " + std::to_string(kMaxModelBytes) + " bytes");
  }
  const json header = {{"parts", header_parts}};
  write_container_file(out, std::string(kFusedMagic, 8), kFusedFormatVersion, header.dump(), payload);
}

std::unique_ptr<Embedder> load_fused_model(const std::vector<std::uint8_t>& bytes, const std::string& name) {
  const auto file =
      parse_container_file(bytes, std::string(kFusedMagic, 8), kFusedFormatVersion, "model file", name);
  auto invalid = [&](const std::string& why) {
    return Error(ErrorKind::kInvalidInput, "model file " + name + " " + why);
  };
  struct PartEntry {
    std::string file;
    ModelFormat format;
    std::string identity;
    double weight;
    double exact_weight;
    std::size_t bytes;
  };
  std::vector<PartEntry> entries;
  try {
    const json header = json::parse(file.header);
    for (const auto& p : header.at("parts")) {
      const double weight = p.at("weight").get<double>();
      entries.push_back({p.at("file").get<std::string>(), parse_format(p.at("format").get<std::string>()),
                         p.at("identity").get<std::string>(), weight, p.value("exact_weight", weight),
                         p.at("bytes").get<std::size_t>()});
    }
  } catch (const std::exception& e) {
    throw invalid(std::string("has an invalid fused-model header: ") + e.what());
  }
  if (entries.size() < 2 || entries.size() > kMaxFusedParts) {
    throw invalid("has " + std::to_string(entries.size()) + " parts; a fused model has 2 to " +
                  std::to_string(kMaxFusedParts));
  }
  std::size_t offset = 0;
  std::vector<std::unique_ptr<Embedder>> parts;
  std::vector<double> weights;
  std::vector<double> exact_weights;
  auto part_name = [&](std::size_t i) {
    return name + " (part " + std::to_string(i + 1) + ", " + entries[i].file + ")";
  };
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const auto& entry = entries[i];
    if (!valid_weight(entry.weight)) throw invalid("has a part whose weight is not greater than 0");
    if (!valid_exact_weight(entry.exact_weight)) throw invalid("has a part whose exact weight is below 0");
    if (entry.bytes > file.payload.size() - offset) throw invalid("has parts longer than its payload");
    std::vector<std::uint8_t> part_bytes(file.payload.begin() + static_cast<long>(offset),
                                         file.payload.begin() + static_cast<long>(offset + entry.bytes));
    offset += entry.bytes;
    parts.push_back(load_model_bytes(std::move(part_bytes), entry.format, part_name(i)));
    if (parts.back()->info().identity() != entry.identity) {
      throw invalid("has part " + std::to_string(i + 1) + " that loads as " +
                    parts.back()->info().identity() + ", not the recorded " + entry.identity);
    }
    weights.push_back(entry.weight);
    exact_weights.push_back(entry.exact_weight);
  }
  if (offset != file.payload.size()) throw invalid("has bytes after its last part");
  if (std::all_of(exact_weights.begin(), exact_weights.end(), [](double e) { return e == 0; })) {
    throw invalid("has exact weight 0 on every part");
  }
  check_same_inputs(parts, [&](std::size_t i) { return "model file " + part_name(i); });
  return std::make_unique<FusedEmbedder>(std::move(parts), weights, exact_weights,
                                         sha256_hex(bytes.data(), bytes.size()));
}

}  // namespace lookalike::embed
