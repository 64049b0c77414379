// Bring your own model: ONNX files run by OpenCV's DNN module, and the project's
// own model written as ONNX (embedder.h).
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <numeric>
#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>
#include <set>
#include <thread>

#include "common/error.h"
#include "common/files.h"
#include "embed/model_config.h"
#include "embed/model_format.h"
#include "embed/net.h"

namespace lookalike::embed {
namespace fs = std::filesystem;

namespace {

constexpr std::int64_t kProbeBatch = 2;
// SHA-256 of the serialised graph, written with the config: protobuf has no
// checksum, and a flipped byte inside a weight tensor would parse as another weight.
constexpr const char* kGraphShaKey = "lookalike/graph_sha256";
// opset 11 (IR version 6): every operator the export uses exists there unchanged,
// and OpenCV 4.6's importer reads it.
constexpr std::int64_t kExportOpset = 11;
constexpr std::int64_t kExportIrVersion = 6;

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

// A dimension as the graph declares it: a number, a symbol, or unknown.
std::string dim_text(const onnx::TensorShapeProto_Dimension& d) {
  if (d.has_dim_value()) return std::to_string(d.dim_value());
  if (d.has_dim_param() && !d.dim_param().empty()) return d.dim_param();
  return "?";
}

std::string declared_shape(const onnx::ValueInfoProto& value) {
  std::string s;
  for (const auto& d : value.type().tensor_type().shape().dim()) s += (s.empty() ? "" : " x ") + dim_text(d);
  return s;
}

bool has_declared_shape(const onnx::ValueInfoProto& value) {
  return value.type().has_tensor_type() && value.type().tensor_type().has_shape();
}

std::string metadata(const onnx::ModelProto& model, const std::string& key) {
  for (const auto& p : model.metadata_props())
    if (p.key() == key) return p.value();
  return "";
}

void set_metadata(onnx::ModelProto& model, const std::string& key, const std::string& value) {
  for (auto& p : *model.mutable_metadata_props()) {
    if (p.key() == key) {
      p.set_value(value);
      return;
    }
  }
  auto* p = model.add_metadata_props();
  p->set_key(key);
  p->set_value(value);
}

std::string graph_sha(const onnx::ModelProto& model) {
  const std::string bytes = model.graph().SerializeAsString();
  return sha256_hex(bytes.data(), bytes.size());
}

onnx::ModelProto parse_proto(const std::vector<std::uint8_t>& bytes, const std::string& what) {
  onnx::ModelProto model;
  if (bytes.size() > std::size_t(INT_MAX) || !model.ParseFromArray(bytes.data(), int(bytes.size()))) {
    throw invalid_model(what,
                        "not a readable ONNX model (the protobuf does not parse: corrupt or truncated)");
  }
  if (!model.has_graph() || model.graph().node_size() == 0) {
    throw invalid_model(what, "not an ONNX model: it holds no graph (corrupt or truncated?)");
  }
  const std::string sha = metadata(model, kGraphShaKey);
  if (!sha.empty() && sha != graph_sha(model)) {
    throw invalid_model(what,
                        "the ONNX graph fails its SHA-256 check (the file is corrupt or was cut short)");
  }
  return model;
}

// What the graph says about itself, checked against the config before OpenCV sees it.
struct GraphPlan {
  std::string input;
  std::string output;
  std::int64_t fixed_batch = 0;  // > 0 when the graph only takes batches of exactly this size
};

GraphPlan check_graph(const onnx::ModelProto& model, const ModelConfig& config, const std::string& what) {
  const auto& graph = model.graph();
  for (const auto& node : graph.node()) {
    if (!node.domain().empty() && node.domain() != "ai.onnx") {
      throw invalid_model(what, "node \"" + node.name() + "\" uses operator " + node.op_type() +
                                    " of domain \"" + node.domain() +
                                    "\", which OpenCV's ONNX importer does not support");
    }
  }
  std::set<std::string> initializers;
  for (const auto& t : graph.initializer()) initializers.insert(t.name());
  std::vector<const onnx::ValueInfoProto*> inputs;
  for (const auto& in : graph.input())
    if (!initializers.count(in.name())) inputs.push_back(&in);
  if (inputs.size() != 1) {
    std::string names;
    for (const auto* in : inputs) names += (names.empty() ? "" : ", ") + in->name();
    throw invalid_model(what, "the graph has " + std::to_string(inputs.size()) + " inputs (" + names +
                                  "); lookalike feeds it one batch of images");
  }
  GraphPlan plan;
  const auto& input = *inputs.front();
  plan.input = input.name();
  const auto& in = config.info.input;
  const std::string expected = "n x " + std::to_string(in.channels) + " x " + std::to_string(in.height) +
                               " x " + std::to_string(in.width) +
                               " (n x input.channels x input.height x input.width)";
  if (input.type().has_tensor_type() && input.type().tensor_type().elem_type() != onnx::TensorProto::FLOAT) {
    throw invalid_model(what, "input \"" + plan.input + "\" is of element type " +
                                  onnx::TensorProto_DataType_Name(
                                      onnx::TensorProto_DataType(input.type().tensor_type().elem_type())) +
                                  "; lookalike feeds float32");
  }
  if (has_declared_shape(input)) {
    const auto& dims = input.type().tensor_type().shape().dim();
    bool fits = dims.size() == 4;
    const int want[3] = {in.channels, in.height, in.width};
    for (int i = 1; fits && i < 4; ++i) fits = !dims[i].has_dim_value() || dims[i].dim_value() == want[i - 1];
    if (!fits) {
      throw invalid_model(what, "input \"" + plan.input + "\" is " + declared_shape(input) +
                                    ", but the config says " + expected);
    }
    if (dims[0].has_dim_value() && dims[0].dim_value() > 0) plan.fixed_batch = dims[0].dim_value();
  }

  std::string names;
  for (const auto& out : graph.output()) names += (names.empty() ? "" : ", ") + out.name();
  const onnx::ValueInfoProto* output = nullptr;
  if (!config.output_name.empty()) {
    for (const auto& out : graph.output())
      if (out.name() == config.output_name) output = &out;
    if (!output) {
      throw invalid_model(
          what, "the graph has no output \"" + config.output_name + "\" (its outputs: " + names + ")");
    }
  } else if (config.output >= graph.output_size()) {
    throw invalid_model(what, "output " + std::to_string(config.output) + " asked for, but the graph has " +
                                  std::to_string(graph.output_size()) + " (" + names + ")");
  } else {
    output = &graph.output(config.output);
  }
  plan.output = output->name();
  if (has_declared_shape(*output)) {
    const auto& dims = output->type().tensor_type().shape().dim();
    const int rank = config.pooling == "none" ? 2 : 4;
    if (dims.size() != rank) {
      throw invalid_model(what, "output \"" + plan.output + "\" is " + declared_shape(*output) + " (rank " +
                                    std::to_string(dims.size()) + "), but pooling \"" + config.pooling +
                                    "\" needs " + (rank == 2 ? "n x dim" : "n x dim x H x W"));
    }
    if (dims[1].has_dim_value() && dims[1].dim_value() != config.info.dim) {
      throw invalid_model(what, "output \"" + plan.output + "\" is " + declared_shape(*output) + ": " +
                                    std::to_string(dims[1].dim_value()) +
                                    " values per image, the config says dim " +
                                    std::to_string(config.info.dim));
    }
  }
  return plan;
}

// OpenCV names the operator it cannot create as `... of type "Foo" ...`.
std::string opencv_import_failure(const cv::Exception& e) {
  const std::string message = first_line(e.err.empty() ? std::string(e.what()) : e.err);
  const auto at = message.find("of type \"");
  if (at != std::string::npos) {
    const auto start = at + 9, end = message.find('"', start);
    if (end != std::string::npos) {
      return "operator " + message.substr(start, end - start) +
             " is not supported by OpenCV's DNN module (OpenCV " CV_VERSION ")";
    }
  }
  return "OpenCV's ONNX importer cannot read the graph: " + message;
}

class OnnxEmbedder final : public Embedder {
 public:
  OnnxEmbedder(std::vector<std::uint8_t> bytes, ModelConfig config, GraphPlan plan, const std::string& what)
      : bytes_(std::move(bytes)),
        config_(std::move(config)),
        plan_(std::move(plan)),
        max_nets_(std::max(1u, std::thread::hardware_concurrency())) {
    try {
      idle_.push_back(make_net());
      created_ = 1;
    } catch (const cv::Exception& e) {
      throw invalid_model(what, opencv_import_failure(e));
    }
    // Validation: a probe batch (dark, mid-grey and bright inputs) must come out
    // n x dim and finite.
    const auto& in = config_.info.input;
    const std::size_t per_input = std::size_t(in.channels) * in.width * in.height;
    std::vector<float> probe(std::size_t(kProbeBatch) * per_input);
    for (std::size_t i = 0; i < probe.size(); ++i) probe[i] = i < per_input ? -1.f : float(i % 7) / 3.f;
    std::vector<float> out(std::size_t(kProbeBatch) * std::size_t(config_.info.dim));
    try {
      run(probe.data(), std::size_t(kProbeBatch), out.data());
    } catch (const Error& e) {
      throw invalid_model(what, e.what());
    } catch (const cv::Exception& e) {
      throw invalid_model(what, "OpenCV fails to run the graph on a " + std::to_string(kProbeBatch) + " x " +
                                    std::to_string(in.channels) + " x " + std::to_string(in.height) + " x " +
                                    std::to_string(in.width) + " input: " + first_line(e.err));
    }
    for (float v : out) {
      if (!std::isfinite(v)) throw invalid_model(what, "the model gives non-finite values on a probe");
    }
  }

  const ModelInfo& info() const override { return config_.info; }

  void embed_preprocessed(const float* inputs, std::size_t n, float* out) const override {
    if (n == 0) return;
    try {
      run(inputs, n, out);
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Error(ErrorKind::kInternal,
                  "model " + config_.info.identity() + " failed: " + first_line(e.what()));
    }
  }

  ModelConfig& config() { return config_; }

 private:
  cv::dnn::Net make_net() const {
    cv::dnn::Net net = cv::dnn::readNetFromONNX(reinterpret_cast<const char*>(bytes_.data()), bytes_.size());
    net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
    net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
    return net;
  }

  // cv::dnn::Net::forward is not safe to call concurrently (a net keeps its
  // input and activation blobs), so each call borrows a net of its own from a
  // pool. A pool rather than one net behind a mutex: the server embeds one query
  // photo per request on several workers at once, and a mutex would run them one
  // after another on one core. Nets are made on demand, at most one per core
  // (callers beyond that wait), so a single-threaded ingest holds just one.
  class Lease {
   public:
    explicit Lease(const OnnxEmbedder& owner) : owner_(owner) {
      std::unique_lock<std::mutex> lock(owner_.pool_mutex_);
      owner_.pool_cv_.wait(lock, [&] { return !owner_.idle_.empty() || owner_.created_ < owner_.max_nets_; });
      if (!owner_.idle_.empty()) {
        net_ = owner_.idle_.back();
        owner_.idle_.pop_back();
        return;
      }
      ++owner_.created_;
      lock.unlock();
      try {
        net_ = owner_.make_net();
      } catch (...) {
        lock.lock();
        --owner_.created_;
        owner_.pool_cv_.notify_one();
        throw;
      }
    }
    ~Lease() {
      {
        std::lock_guard<std::mutex> lock(owner_.pool_mutex_);
        owner_.idle_.push_back(net_);
      }
      owner_.pool_cv_.notify_one();
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    cv::dnn::Net& net() { return net_; }

   private:
    const OnnxEmbedder& owner_;
    cv::dnn::Net net_;
  };

  // n preprocessed inputs -> n x dim floats, as configured.
  void run(const float* inputs, std::size_t n, float* out) const {
    const auto& in = config_.info.input;
    const std::size_t per_input = std::size_t(in.channels) * in.width * in.height;
    const std::size_t dim = std::size_t(config_.info.dim);
    const std::size_t chunk = plan_.fixed_batch > 0 ? std::size_t(plan_.fixed_batch) : n;
    Lease lease(*this);
    std::vector<float> reordered;
    for (std::size_t begin = 0; begin < n; begin += chunk) {
      const std::size_t count = std::min(chunk, n - begin);
      // A graph with a fixed batch size gets exactly that many inputs; the unused
      // tail of a last, short chunk is zeros and its outputs are dropped.
      const std::size_t fed = plan_.fixed_batch > 0 ? chunk : count;
      const float* x = inputs + begin * per_input;
      if (config_.bgr || fed != count) {
        reordered.assign(fed * per_input, 0.f);
        const std::size_t plane = std::size_t(in.width) * in.height;
        for (std::size_t i = 0; i < count; ++i) {
          for (int c = 0; c < in.channels; ++c) {
            const int from = config_.bgr ? in.channels - 1 - c : c;
            std::memcpy(reordered.data() + i * per_input + std::size_t(c) * plane,
                        x + i * per_input + std::size_t(from) * plane, plane * sizeof(float));
          }
        }
        x = reordered.data();
      }
      const int shape[4] = {int(fed), in.channels, in.height, in.width};
      cv::Mat blob(4, shape, CV_32F, const_cast<float*>(x));
      lease.net().setInput(blob, plan_.input);
      cv::Mat y = lease.net().forward(plan_.output);
      collect(y, fed, count, out + begin * dim);
    }
  }

  // Pools and normalises an output blob into count x dim floats.
  void collect(const cv::Mat& y, std::size_t fed, std::size_t count, float* out) const {
    const std::size_t dim = std::size_t(config_.info.dim);
    std::vector<std::int64_t> sizes(std::size_t(y.dims));
    for (int i = 0; i < y.dims; ++i) sizes[std::size_t(i)] = y.size[i];
    if (y.type() != CV_32F) throw Error(ErrorKind::kInvalidInput, "the selected output is not float32");
    const std::string got = shape_text(sizes.data(), sizes.size());
    const cv::Mat values = y.isContinuous() ? y : y.clone();
    const float* data = values.ptr<float>();
    if (config_.pooling == "avg" || config_.pooling == "max") {
      if (sizes.size() != 4) {
        throw Error(ErrorKind::kInvalidInput,
                    "pooling \"" + config_.pooling + "\" needs an n x C x H x W output, got " + got);
      }
      if (std::size_t(sizes[0]) != fed || std::size_t(sizes[1]) != dim) {
        throw Error(ErrorKind::kInvalidInput, "the output is " + got + ", the config says " +
                                                  std::to_string(fed) + " x " + std::to_string(dim) +
                                                  " x H x W (dim)");
      }
      const std::size_t area = std::size_t(sizes[2] * sizes[3]);
      for (std::size_t i = 0; i < count * dim; ++i) {
        const float* cell = data + i * area;
        out[i] = config_.pooling == "avg" ? float(std::accumulate(cell, cell + area, 0.0) / double(area))
                                          : *std::max_element(cell, cell + area);
      }
    } else {
      // OpenCV sometimes keeps trailing unit dimensions (n x dim x 1 x 1) where the
      // graph declares n x dim; they hold the same values.
      std::size_t rank = sizes.size();
      while (rank > 2 && sizes[rank - 1] == 1) --rank;
      if (rank != 2 || std::size_t(sizes[0]) != fed || std::size_t(sizes[1]) != dim) {
        throw Error(ErrorKind::kInvalidInput, "the output is " + got + ", the config says " +
                                                  std::to_string(fed) + " x " + std::to_string(dim) +
                                                  " (dim)");
      }
      std::memcpy(out, data, count * dim * sizeof(float));
    }
    if (!config_.normalize) return;
    for (std::size_t i = 0; i < count; ++i) {
      float* row = out + i * dim;
      double sum = 0;
      for (std::size_t j = 0; j < dim; ++j) sum += double(row[j]) * row[j];
      // As torch's normalize: divide by max(norm, 1e-12), so a zero row stays zero.
      const float scale = float(1.0 / std::max(std::sqrt(sum), 1e-12));
      for (std::size_t j = 0; j < dim; ++j) row[j] *= scale;
    }
  }

  const std::vector<std::uint8_t> bytes_;
  ModelConfig config_;
  const GraphPlan plan_;
  const int max_nets_;
  mutable std::mutex pool_mutex_;
  mutable std::condition_variable pool_cv_;
  mutable std::vector<cv::dnn::Net> idle_;
  mutable int created_ = 0;
};

std::unique_ptr<OnnxEmbedder> make_embedder(std::vector<std::uint8_t> bytes, const onnx::ModelProto& model,
                                            const ModelConfig& config, const std::string& what) {
  GraphPlan plan = check_graph(model, config, what);
  return std::make_unique<OnnxEmbedder>(std::move(bytes), config, std::move(plan), what);
}

// ---- writing the project's model as an ONNX graph ----

class GraphBuilder {
 public:
  explicit GraphBuilder(onnx::GraphProto& graph) : graph_(graph) {}

  std::string initializer(const std::string& name, const torch::Tensor& tensor) {
    const auto t = tensor.detach().to(torch::kFloat32).contiguous();
    auto* proto = graph_.add_initializer();
    proto->set_name(name);
    proto->set_data_type(onnx::TensorProto::FLOAT);
    for (auto size : t.sizes()) proto->add_dims(size);
    // raw_data is little-endian, as is every machine lookalike is built for.
    proto->set_raw_data(t.data_ptr<float>(), std::size_t(t.numel()) * sizeof(float));
    return name;
  }

  onnx::NodeProto& node(const std::string& op, const std::vector<std::string>& inputs,
                        const std::string& output) {
    auto* n = graph_.add_node();
    n->set_op_type(op);
    n->set_name(output);
    for (const auto& i : inputs) n->add_input(i);
    n->add_output(output);
    return *n;
  }

  static void ints(onnx::NodeProto& n, const std::string& name, const std::vector<std::int64_t>& values) {
    auto* a = n.add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (auto v : values) a->add_ints(v);
  }

  static void integer(onnx::NodeProto& n, const std::string& name, std::int64_t value) {
    auto* a = n.add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(value);
  }

  void value(onnx::ValueInfoProto* v, const std::string& name, const std::vector<std::int64_t>& dims) {
    v->set_name(name);
    auto* t = v->mutable_type()->mutable_tensor_type();
    t->set_elem_type(onnx::TensorProto::FLOAT);
    auto* shape = t->mutable_shape();
    for (auto d : dims) {
      auto* dim = shape->add_dim();
      if (d < 0) {
        dim->set_dim_param("batch");
      } else {
        dim->set_dim_value(d);
      }
    }
  }

 private:
  onnx::GraphProto& graph_;
};

// torch's adaptive average pooling of `size` cells into `grid` windows uses
// [floor(i * size / grid), ceil((i + 1) * size / grid)). ONNX's AveragePool
// expresses it when every window has the same length and step.
std::pair<std::int64_t, std::int64_t> uniform_windows(std::int64_t size, std::int64_t grid) {
  std::int64_t kernel = -1, stride = -1;
  for (std::int64_t i = 0; i < grid; ++i) {
    const std::int64_t start = i * size / grid, end = ((i + 1) * size + grid - 1) / grid;
    if (kernel >= 0 && end - start != kernel) return {-1, -1};
    kernel = end - start;
    if (i + 1 < grid) {
      const std::int64_t step = (i + 1) * size / grid - start;
      if (stride >= 0 && step != stride) return {-1, -1};
      stride = step;
    }
  }
  return {kernel, stride < 0 ? 1 : stride};
}

std::mutex opencv_threads_mutex;
int opencv_threads = 0;

}  // namespace

void set_opencv_threads(int threads) {
  // cv::setNumThreads is process-wide and rebuilds OpenCV's thread pool; the
  // server's workers each call this at start, so repeat calls are skipped.
  std::lock_guard<std::mutex> lock(opencv_threads_mutex);
  if (threads == opencv_threads) return;
  opencv_threads = threads;
  cv::setNumThreads(threads);
}

std::unique_ptr<Embedder> load_onnx_model(std::vector<std::uint8_t> bytes, const std::string& what) {
  const onnx::ModelProto model = parse_proto(bytes, what);
  const std::string config_text = metadata(model, kModelConfigName);
  if (config_text.empty()) {
    throw invalid_model(what,
                        std::string("the ONNX model has no \"") + kModelConfigName +
                            "\" metadata; add a config with `lookalike export-model --onnx FILE --config "
                            "CONFIG.json --out OUT`");
  }
  ModelConfig config = parse_model_config(config_text, what);
  config.info.weights_sha = sha256_hex(bytes.data(), bytes.size()).substr(0, 16);
  return make_embedder(std::move(bytes), model, config, what);
}

void export_onnx(const fs::path& model_file, const fs::path& out) {
  LoadedModel loaded = read_model_file(model_file);
  loaded.net->eval();
  FoldedNet folded = fold_batch_norm(loaded.net);
  torch::NoGradGuard no_grad;
  const ModelInfo& info = loaded.header.info;

  onnx::ModelProto model;
  model.set_ir_version(kExportIrVersion);
  model.set_producer_name("lookalike");
  model.set_model_version(1);
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kExportOpset);
  auto& graph = *model.mutable_graph();
  graph.set_name(info.name);
  GraphBuilder g(graph);
  g.value(graph.add_input(), "input", {-1, info.input.channels, info.input.height, info.input.width});

  std::string x = "input";
  std::int64_t height = info.input.height, width = info.input.width;
  int index = 0;
  for (const auto& child : folded.features->children()) {
    auto conv = std::dynamic_pointer_cast<torch::nn::Conv2dImpl>(child);
    if (!conv) continue;  // the ReLUs, written after each convolution below
    const auto& o = conv->options;
    const std::int64_t stride = (*o.stride())[0], kernel = (*o.kernel_size())[0];
    const std::int64_t padding = (*c10::get<torch::ExpandingArray<2>>(o.padding()))[0];
    const std::string id = std::to_string(index++);
    auto& node = g.node("Conv",
                        {x, g.initializer("conv" + id + ".weight", conv->weight),
                         g.initializer("conv" + id + ".bias", conv->bias)},
                        "conv" + id);
    GraphBuilder::ints(node, "kernel_shape", {kernel, kernel});
    GraphBuilder::ints(node, "strides", {stride, stride});
    GraphBuilder::ints(node, "pads", {padding, padding, padding, padding});
    x = g.node("Relu", {"conv" + id}, "relu" + id).output(0);
    height = (height + 2 * padding - kernel) / stride + 1;
    width = (width + 2 * padding - kernel) / stride + 1;
  }

  std::vector<std::string> parts;
  for (int grid : folded.pooling) {
    const std::string id = "pool" + std::to_string(grid);
    if (grid == 1) {
      g.node("GlobalAveragePool", {x}, id);
    } else {
      const auto [kh, sh] = uniform_windows(height, grid);
      const auto [kw, sw] = uniform_windows(width, grid);
      if (kh < 0 || kw < 0) {
        throw Error(ErrorKind::kUnsupported, "model file " + model_file.string() + ": its " +
                                                 std::to_string(grid) + " x " + std::to_string(grid) +
                                                 " pooling of a " + std::to_string(height) + " x " +
                                                 std::to_string(width) +
                                                 " feature map has windows of unequal size, which ONNX's "
                                                 "AveragePool cannot express");
      }
      auto& node = g.node("AveragePool", {x}, id);
      GraphBuilder::ints(node, "kernel_shape", {kh, kw});
      GraphBuilder::ints(node, "strides", {sh, sw});
    }
    GraphBuilder::integer(g.node("Flatten", {id}, id + ".flat"), "axis", 1);
    parts.push_back(id + ".flat");
  }
  std::string pooled = parts.front();
  if (parts.size() > 1) {
    pooled = "pooled";
    GraphBuilder::integer(g.node("Concat", parts, pooled), "axis", 1);
  }
  auto& head = g.node("Gemm",
                      {pooled, g.initializer("head.weight", folded.head->weight),
                       g.initializer("head.bias", folded.head->bias)},
                      "head");
  GraphBuilder::integer(head, "transB", 1);
  // L2 normalisation as ReduceL2 and Div: OpenCV 4.6 has no LpNormalization.
  auto& norm = g.node("ReduceL2", {"head"}, "head.norm");
  GraphBuilder::ints(norm, "axes", {1});
  GraphBuilder::integer(norm, "keepdims", 1);
  g.node("Div", {"head", "head.norm"}, "embedding");
  g.value(graph.add_output(), "embedding", {-1, info.dim});

  ModelConfig config;
  config.info = info;
  config.info.weights_sha.clear();
  config.info.version += "-onnx";
  config.output_name = "embedding";
  config.pooling = "none";
  config.normalize = false;  // the graph ends in LpNormalization
  set_metadata(model, kModelConfigName, model_config_json(config));
  set_metadata(model, kGraphShaKey, graph_sha(model));
  const std::string bytes = model.SerializeAsString();
  write_file_atomic(out, bytes.data(), bytes.size());
}

void package_onnx(const fs::path& onnx_file, const std::string& config_json, const fs::path& out) {
  const std::string what = "ONNX file " + onnx_file.string();
  auto bytes = read_file(onnx_file, kMaxModelBytes);
  onnx::ModelProto model = parse_proto(bytes, what);
  ModelConfig config = parse_model_config(config_json, what);
  // Validates the graph against the config, and the probe, before anything is written.
  make_embedder(bytes, model, config, what);
  set_metadata(model, kModelConfigName, model_config_json(config));
  set_metadata(model, kGraphShaKey, graph_sha(model));
  const std::string serialised = model.SerializeAsString();
  write_file_atomic(out, serialised.data(), serialised.size());
}

}  // namespace lookalike::embed
