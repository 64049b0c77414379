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

struct Checkpoint : torch::nn::Module {
  Checkpoint(EmbeddingNet& net, torch::Tensor& prototypes) {
    register_module("net", net.ptr());
    register_parameter("prototypes", prototypes);
  }
};

// Random shifts by up to kTranslatePixels (zero fill) and horizontal flips, per
// sample. Done on the batch tensor: cheap next to the forward pass.
torch::Tensor augment(const torch::Tensor& batch, std::mt19937_64& rng) {
  const long n = batch.size(0), h = batch.size(2), w = batch.size(3);
  const long pad = kTranslatePixels;
  auto padded = torch::constant_pad_nd(batch, {pad, pad, pad, pad}, 0.0);
  auto out = torch::empty_like(batch);
  std::uniform_int_distribution<long> shift(0, 2 * pad);
  std::bernoulli_distribution flip(0.5);
  for (long i = 0; i < n; ++i) {
    auto crop = padded[i].narrow(1, shift(rng), h).narrow(2, shift(rng), w);
    out[i].copy_(flip(rng) ? crop.flip({2}) : crop);
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
  spec.mean = {0.2860f};   // Fashion-MNIST training set pixel mean and std
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
  if (data.inputs.size() != n * per_image) throw Error(ErrorKind::kInternal, "training inputs have the wrong size");
  if (o.epochs < 1 || o.batch_size < 2) throw Error(ErrorKind::kInvalidInput, "epochs must be >= 1 and batch size >= 2");

  torch::manual_seed(o.seed);
  Architecture arch;
  arch.dim = o.dim;
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

  auto all = torch::from_blob(const_cast<float*>(data.inputs.data()),
                              {static_cast<long>(n), spec.channels, spec.height, spec.width}, torch::kFloat32);
  auto all_labels = torch::tensor(data.labels, torch::kLong);
  const float background = background_value(spec);
  // A last batch of one sample is dropped (batch norm needs two), so it is no step:
  // the progress of the last real step then says the epoch is done.
  const std::size_t batch = static_cast<std::size_t>(o.batch_size);
  const std::size_t steps = n / batch + (n % batch >= 2 ? 1 : 0);
  auto criterion = torch::nn::CrossEntropyLoss(torch::nn::CrossEntropyLossOptions().label_smoothing(kLabelSmoothing));
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
      auto batch = augment(all.index_select(0, idx) - background, rng) + background;
      auto labels = all_labels.index_select(0, idx);

      double lr = learning_rate_at(o, (epoch - 1) + double(step) / steps);
      for (auto& group : optimizer.param_groups()) {
        static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
      }
      auto embeddings = net->forward(batch);
      auto cosine = torch::matmul(embeddings, torch::nn::functional::normalize(
                                                  prototypes, torch::nn::functional::NormalizeFuncOptions().dim(1))
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
       << " wd=" << o.weight_decay << " dim=" << o.dim << " seed=" << o.seed << " images=" << n;
  header.trained_with = with.str();
  net->eval();
  write_model_file(out, header, net);
}

}  // namespace lookalike::embed
