#include "embed/train.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>
#include <sstream>

#include "common/error.h"
#include "common/files.h"
#include "embed/net.h"

namespace lookalike::embed {
namespace fs = std::filesystem;

namespace {

// Margin and scale of the cosine classifier. A margin pulls each class tighter
// than plain softmax would, and the scale keeps the softmax from saturating.
constexpr double kScale = 16.0;
constexpr double kMargin = 0.2;
constexpr double kLabelSmoothing = 0.1;
constexpr int kWarmupEpochs = 1;
constexpr int kTranslatePixels = 2;
// Random erasing (Zhong et al., 2017), with probability TrainOptions::erase_probability:
// a rectangle of noise over part of the item, so the embedding cannot rest on any one
// region. Also what occlusion looks like.
constexpr double kEraseMinArea = 0.02, kEraseMaxArea = 0.25;
constexpr double kEraseMaxAspect = 3.0;

struct Checkpoint : torch::nn::Module {
  Checkpoint(EmbeddingNet& net, torch::Tensor& prototypes) {
    register_module("net", net.ptr());
    register_parameter("prototypes", prototypes);
  }
};

// Random shifts by up to kTranslatePixels (zero fill), horizontal flips and random
// erasing, per sample. `batch` is shifted so that the background is 0; erased
// pixels get uniform noise up to `erase_scale` (a white pixel in that space). Done
// on the batch tensor: cheap next to the forward pass.
torch::Tensor augment(const torch::Tensor& batch, double erase_probability, float erase_scale,
                      std::mt19937_64& rng) {
  const long n = batch.size(0), h = batch.size(2), w = batch.size(3);
  const long pad = kTranslatePixels;
  auto padded = torch::constant_pad_nd(batch, {pad, pad, pad, pad}, 0.0);
  auto out = torch::empty_like(batch);
  std::uniform_int_distribution<long> shift(0, 2 * pad);
  std::bernoulli_distribution flip(0.5), erase(erase_probability);
  std::uniform_real_distribution<double> area(kEraseMinArea, kEraseMaxArea);
  std::uniform_real_distribution<double> log_aspect(-std::log(kEraseMaxAspect), std::log(kEraseMaxAspect));
  for (long i = 0; i < n; ++i) {
    auto crop = padded[i].narrow(1, shift(rng), h).narrow(2, shift(rng), w);
    out[i].copy_(flip(rng) ? crop.flip({2}) : crop);
    // Without erasing no draw is made, so the random sequence (and the model) is that
    // of the recipe before erasing existed.
    if (erase_probability <= 0 || !erase(rng)) continue;
    const double a = area(rng) * h * w, aspect = std::exp(log_aspect(rng));
    const long eh = std::clamp(std::lround(std::sqrt(a * aspect)), 1L, h);
    const long ew = std::clamp(std::lround(std::sqrt(a / aspect)), 1L, w);
    const long top = std::uniform_int_distribution<long>(0, h - eh)(rng);
    const long left = std::uniform_int_distribution<long>(0, w - ew)(rng);
    auto patch = out[i].narrow(1, top, eh).narrow(2, left, ew);
    patch.copy_(torch::rand(patch.sizes()) * erase_scale);
  }
  return out;
}

double learning_rate_at(const TrainOptions& o, double progress_epochs) {
  if (progress_epochs < kWarmupEpochs) return o.learning_rate * progress_epochs / kWarmupEpochs;
  double t = (progress_epochs - kWarmupEpochs) / std::max(1, o.epochs - kWarmupEpochs);
  return 0.5 * o.learning_rate * (1.0 + std::cos(M_PI * std::min(1.0, t)));
}

// The background value of a preprocessed image (what a zero pixel becomes), used
// to fill pixels shifted in by augmentation.
float background_value(const image::InputSpec& spec) { return (0.f - spec.mean[0]) / spec.stddev[0]; }

}  // namespace

image::InputSpec default_input_spec() {
  image::InputSpec spec;
  spec.width = 28;
  spec.height = 28;
  spec.channels = 1;
  spec.mean = {0.2860f};  // Fashion-MNIST training set pixel mean and std
  spec.stddev = {0.3530f};
  return spec;
}

void train_model(const LabelledSet& data, const TrainOptions& o, const fs::path& out) {
  const auto& spec = data.input;
  const std::size_t n = data.size();
  const long classes = static_cast<long>(data.class_names.size());
  const std::size_t per_image = static_cast<std::size_t>(spec.channels) * spec.width * spec.height;
  if (n == 0) throw Error(ErrorKind::kInvalidInput, "no labelled images to train on");
  if (classes < 2) throw Error(ErrorKind::kInvalidInput, "training needs at least two categories");
  if (data.inputs.size() != n * per_image)
    throw Error(ErrorKind::kInternal, "training inputs have the wrong size");
  if (o.epochs < 1 || o.batch_size < 2)
    throw Error(ErrorKind::kInvalidInput, "epochs must be >= 1 and batch size >= 2");

  torch::manual_seed(o.seed);
  if (!(o.width > 0 && o.width <= 8)) throw Error(ErrorKind::kInvalidInput, "width must be in (0, 8]");
  if (!(o.erase_probability >= 0 && o.erase_probability <= 1)) {
    throw Error(ErrorKind::kInvalidInput, "erase probability must be in [0, 1]");
  }
  Architecture arch;
  arch.dim = o.dim;
  for (auto& block : arch.blocks) {
    block.first = std::max(8, static_cast<int>(std::lround(block.first * o.width / 8.0)) * 8);
  }
  EmbeddingNet net(arch, spec.channels);
  auto prototypes = torch::nn::init::xavier_uniform_(torch::empty({classes, arch.dim})).requires_grad_(true);
  Checkpoint state(net, prototypes);
  torch::optim::AdamW optimizer(state.parameters(),
                                torch::optim::AdamWOptions(o.learning_rate).weight_decay(o.weight_decay));

  int first_epoch = 1;
  if (o.resume && !o.checkpoint.empty() && fs::exists(o.checkpoint)) {
    auto cannot_resume = [&](const std::string& why) {
      return Error(ErrorKind::kInvalidInput,
                   "cannot resume from checkpoint " + o.checkpoint.string() + ": " + why);
    };
    const TensorLayout expected = tensor_layout(state);
    try {
      torch::serialize::InputArchive archive;
      archive.load_from(o.checkpoint.string());
      torch::serialize::InputArchive model_archive, optim_archive;
      archive.read("model", model_archive);
      archive.read("optimizer", optim_archive);
      state.load(model_archive);
      optimizer.load(optim_archive);
      torch::Tensor epoch;
      archive.read("epoch", epoch);
      first_epoch = static_cast<int>(epoch.item<long>()) + 1;
    } catch (const c10::Error& e) {
      throw cannot_resume(e.what_without_backtrace());
    }
    // A checkpoint of another dimension or category count loads without complaint.
    if (tensor_layout(state) != expected) {
      throw cannot_resume("it was made with another embedding size or number of categories");
    }
    if (first_epoch < 2) throw cannot_resume("bad epoch number");
  }

  auto all =
      torch::from_blob(const_cast<float*>(data.inputs.data()),
                       {static_cast<long>(n), spec.channels, spec.height, spec.width}, torch::kFloat32);
  auto all_labels = torch::tensor(data.labels, torch::kLong);
  const float background = background_value(spec);
  const float erase_scale = 1.f / spec.stddev[0];
  // A last batch of one sample is dropped (batch norm needs two), so it is no step:
  // the progress of the last real step then says the epoch is done.
  const std::size_t batch = static_cast<std::size_t>(o.batch_size);
  const std::size_t steps = n / batch + (n % batch >= 2 ? 1 : 0);
  auto criterion =
      torch::nn::CrossEntropyLoss(torch::nn::CrossEntropyLossOptions().label_smoothing(kLabelSmoothing));
  auto start = std::chrono::steady_clock::now();

  for (int epoch = first_epoch; epoch <= o.epochs; ++epoch) {
    // Seeded per epoch, so resuming from a checkpoint replays the same order.
    std::mt19937_64 rng(o.seed * 1000003ULL + static_cast<std::uint64_t>(epoch));
    torch::manual_seed(o.seed * 1000003ULL + static_cast<std::uint64_t>(epoch));
    std::vector<long> order(n);
    std::iota(order.begin(), order.end(), 0L);
    std::shuffle(order.begin(), order.end(), rng);
    auto order_tensor = torch::tensor(order, torch::kLong);

    net->train();
    double loss_sum = 0;
    std::size_t correct = 0, seen = 0;
    for (std::size_t step = 0; step < steps; ++step) {
      long begin = static_cast<long>(step) * o.batch_size;
      long end = std::min<long>(begin + o.batch_size, static_cast<long>(n));
      auto idx = order_tensor.slice(0, begin, end);
      auto batch =
          augment(all.index_select(0, idx) - background, o.erase_probability, erase_scale, rng) + background;
      auto labels = all_labels.index_select(0, idx);

      double lr = learning_rate_at(o, (epoch - 1) + double(step) / steps);
      for (auto& group : optimizer.param_groups()) {
        static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
      }
      auto embeddings = net->forward(batch);
      auto cosine = torch::matmul(
          embeddings,
          torch::nn::functional::normalize(prototypes, torch::nn::functional::NormalizeFuncOptions().dim(1))
              .t());
      auto margin = torch::zeros_like(cosine).scatter_(1, labels.unsqueeze(1), kMargin);
      auto loss = criterion(kScale * (cosine - margin), labels);
      optimizer.zero_grad();
      loss.backward();
      optimizer.step();

      loss_sum += loss.item<double>() * (end - begin);
      correct += static_cast<std::size_t>(cosine.argmax(1).eq(labels).sum().item<long>());
      seen += static_cast<std::size_t>(end - begin);
      if (o.on_progress) {
        TrainProgress p;
        p.epoch = epoch;
        p.epochs = o.epochs;
        p.first_epoch = first_epoch;
        p.step = step + 1;
        p.steps = steps;
        p.loss = loss_sum / seen;
        p.accuracy = double(correct) / seen;
        p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        p.epoch_done = step + 1 == steps;
        o.on_progress(p);
      }
    }
    if (!o.checkpoint.empty()) {
      torch::serialize::OutputArchive archive, model_archive, optim_archive;
      state.save(model_archive);
      optimizer.save(optim_archive);
      archive.write("model", model_archive);
      archive.write("optimizer", optim_archive);
      archive.write("epoch", torch::tensor(static_cast<long>(epoch)));
      std::ostringstream bytes;
      archive.save_to(bytes);
      const std::string checkpoint = bytes.str();
      write_file_atomic(o.checkpoint, checkpoint.data(), checkpoint.size());
    }
  }

  ModelHeader header;
  header.info.name = "fashion-cnn";
  header.info.version = "1";
  header.info.input = spec;
  header.arch = arch;
  header.class_names = data.class_names;
  std::ostringstream with;
  with << "epochs=" << o.epochs << " batch=" << o.batch_size << " lr=" << o.learning_rate
       << " wd=" << o.weight_decay << " dim=" << o.dim << " width=" << o.width
       << " erase=" << o.erase_probability << " seed=" << o.seed << " images=" << n;
  header.trained_with = with.str();
  net->eval();
  write_model_file(out, header, net);
}

}  // namespace lookalike::embed
