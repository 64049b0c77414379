#include "embed/train.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <mutex>
#include <numeric>
#include <opencv2/core.hpp>
#include <optional>
#include <random>
#include <sstream>

#include "common/error.h"
#include "common/hash.h"
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
// Mixed into every training photo's seed, so that no other user of image::distort
// (eval-robustness seeds by product id) derives its seeds the same way.
constexpr std::uint64_t kPhotoSeedTag = 0x73656c6673757031ULL;  // "selfsup1"

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

const char* to_string(Objective objective) noexcept {
  switch (objective) {
    case Objective::kSupervised:
      return "supervised";
    case Objective::kSelfSupervised:
      return "self-supervised";
    case Objective::kJoint:
      return "supervised+instance";
  }
  return "unknown";
}

image::InputSpec default_input_spec() {
  image::InputSpec spec;
  spec.width = 28;
  spec.height = 28;
  spec.channels = 1;
  spec.mean = {0.2860f};  // Fashion-MNIST training set pixel mean and std
  spec.stddev = {0.3530f};
  return spec;
}

namespace {

// What differs between the objectives: the extra parameters they train, the loss
// of a batch and what goes into the model file. The loop around it is shared.
class Trainer {
 public:
  virtual ~Trainer() = default;
  virtual Objective objective() const = 0;
  // Registers trainable parameters beyond the network's (created now, after the
  // network, so that the seeded initialisation order stays fixed).
  virtual void add_parameters(torch::nn::Module& state, const Architecture& arch) = 0;
  virtual void begin_epoch(int /*epoch*/) {}
  // The loss of the samples `idx` (a 1-D long tensor of positions in the set);
  // adds to `correct` how many of them were right (see TrainProgress::accuracy).
  virtual torch::Tensor loss(EmbeddingNet& net, const torch::Tensor& idx, std::mt19937_64& rng,
                             std::size_t& correct) = 0;
  virtual void describe(ModelHeader& header, std::ostringstream& trained_with) const = 0;
};

class SupervisedTrainer final : public Trainer {
 public:
  SupervisedTrainer(const LabelledSet& data, const TrainOptions& o)
      : data_(data), options_(o), labels_(torch::tensor(data.labels, torch::kLong)) {}
  Objective objective() const override { return Objective::kSupervised; }
  void add_parameters(torch::nn::Module& state, const Architecture& arch) override {
    const long classes = static_cast<long>(data_.class_names.size());
    prototypes_ = torch::nn::init::xavier_uniform_(torch::empty({classes, arch.dim})).requires_grad_(true);
    state.register_parameter("prototypes", prototypes_);
  }
  torch::Tensor loss(EmbeddingNet& net, const torch::Tensor& idx, std::mt19937_64& rng,
                     std::size_t& correct) override {
    const auto& spec = data_.input;
    const float background = background_value(spec);
    auto all = torch::from_blob(const_cast<float*>(data_.inputs.data()),
                                {static_cast<long>(data_.size()), spec.channels, spec.height, spec.width},
                                torch::kFloat32);
    auto batch = augment(all.index_select(0, idx) - background, options_.erase_probability,
                         1.f / spec.stddev[0], rng) +
                 background;
    auto labels = labels_.index_select(0, idx);
    auto embeddings = net->forward(batch);
    auto cosine = torch::matmul(
        embeddings,
        torch::nn::functional::normalize(prototypes_, torch::nn::functional::NormalizeFuncOptions().dim(1))
            .t());
    auto margin = torch::zeros_like(cosine).scatter_(1, labels.unsqueeze(1), kMargin);
    correct += static_cast<std::size_t>(cosine.argmax(1).eq(labels).sum().item<long>());
    return criterion_(kScale * (cosine - margin), labels);
  }
  void describe(ModelHeader& header, std::ostringstream& with) const override {
    header.info.name = "fashion-cnn";
    header.class_names = data_.class_names;
    with << " erase=" << options_.erase_probability;
  }

 private:
  const LabelledSet& data_;
  const TrainOptions& options_;
  torch::Tensor labels_;
  torch::Tensor prototypes_;
  torch::nn::CrossEntropyLoss criterion_{
      torch::nn::CrossEntropyLossOptions().label_smoothing(kLabelSmoothing)};
};

class SelfSupervisedTrainer final : public Trainer {
 public:
  SelfSupervisedTrainer(const ImageSet& data, const TrainOptions& o) : data_(data), options_(o) {
    const auto& spec = data.input;
    per_input_ = static_cast<std::size_t>(spec.channels) * spec.width * spec.height;
    catalog_.resize(data.size() * per_input_);
    photos_.resize(data.size() * per_input_);
    for (std::size_t i = 0; i < data.size(); ++i) {
      image::preprocess(data.images[i], spec, catalog_.data() + i * per_input_);
    }
    for (auto d : image::suite_distortions()) {
      if (std::find(o.held_out.begin(), o.held_out.end(), d) == o.held_out.end()) distortions_.push_back(d);
    }
  }
  Objective objective() const override { return Objective::kSelfSupervised; }
  void add_parameters(torch::nn::Module&, const Architecture&) override {}

  // Makes this epoch's photo of every image: distortion and strength drawn from
  // a seed of (training seed, epoch, position), so a resumed run makes the same ones.
  void begin_epoch(int epoch) override {
    const std::uint64_t epoch_seed =
        splitmix64(splitmix64(kPhotoSeedTag ^ options_.seed) ^ static_cast<std::uint64_t>(epoch));
    const auto& spec = data_.input;
    std::mutex failure_mutex;
    std::optional<Error> failure;
    cv::parallel_for_(cv::Range(0, static_cast<int>(data_.size())), [&](const cv::Range& range) {
      // No exception may leave a parallel region; the first one is rethrown below.
      try {
        for (int i = range.start; i < range.end; ++i) {
          const std::uint64_t seed = splitmix64(epoch_seed ^ static_cast<std::uint64_t>(i));
          const double u = double(splitmix64(seed ^ 1) >> 11) * 0x1.0p-53;
          const auto distortion = u < options_.clean_probability
                                      ? image::Distortion::kNone
                                      : distortions_[splitmix64(seed ^ 2) % distortions_.size()];
          image::preprocess(image::distort(data_.images[static_cast<std::size_t>(i)], distortion, seed), spec,
                            photos_.data() + static_cast<std::size_t>(i) * per_input_);
        }
      } catch (const Error& e) {
        std::lock_guard<std::mutex> lock(failure_mutex);
        if (!failure) failure = e;
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(failure_mutex);
        if (!failure)
          failure = Error(ErrorKind::kInternal, std::string("making a training photo: ") + e.what());
      }
    });
    if (failure) throw *failure;
  }

  torch::Tensor loss(EmbeddingNet& net, const torch::Tensor& idx, std::mt19937_64& rng,
                     std::size_t& correct) override {
    const auto& spec = data_.input;
    const long n = static_cast<long>(data_.size());
    const float background = background_value(spec);
    auto as_tensor = [&](std::vector<float>& v) {
      return torch::from_blob(v.data(), {n, spec.channels, spec.height, spec.width}, torch::kFloat32);
    };
    auto catalog = augment(as_tensor(catalog_).index_select(0, idx) - background, 0, 1.f, rng) + background;
    auto photos = as_tensor(photos_).index_select(0, idx);
    // One forward pass over both views: batch norm sees them together, as the
    // index holds catalog images and is searched with photos.
    const long m = idx.size(0);
    auto z = net->forward(torch::cat({catalog, photos}));
    auto logits = torch::matmul(z.narrow(0, 0, m), z.narrow(0, m, m).t()) / options_.temperature;
    auto targets = torch::arange(m, torch::kLong);
    correct += static_cast<std::size_t>(logits.argmax(0).eq(targets).sum().item<long>());
    // Symmetric: each catalog image must pick its photo and each photo its image.
    return 0.5 * (criterion_(logits, targets) + criterion_(logits.t(), targets));
  }
  void describe(ModelHeader& header, std::ostringstream& with) const override {
    header.info.name = "selfsup-cnn";
    header.class_names.clear();
    with << " temperature=" << options_.temperature << " clean=" << options_.clean_probability
         << " held_out=";
    for (std::size_t i = 0; i < options_.held_out.size(); ++i) {
      with << (i ? "," : "") << image::to_string(options_.held_out[i]);
    }
    if (options_.held_out.empty()) with << "none";
  }

 private:
  const ImageSet& data_;
  const TrainOptions& options_;
  std::size_t per_input_ = 0;
  std::vector<float> catalog_;  // every image preprocessed as ingest does
  std::vector<float> photos_;   // this epoch's photo of every image, preprocessed as a search upload
  std::vector<image::Distortion> distortions_;
  torch::nn::CrossEntropyLoss criterion_;
};

// Both losses on the same samples: categories from the supervised one, products
// told apart by the self-supervised one, weighted by TrainOptions::instance_weight.
class JointTrainer final : public Trainer {
 public:
  JointTrainer(const LabelledSet& data, const TrainOptions& o)
      : images_{data.input, data.images},
        supervised_(data, o),
        instance_(images_, o),
        weight_(o.instance_weight) {}
  Objective objective() const override { return Objective::kJoint; }
  void add_parameters(torch::nn::Module& state, const Architecture& arch) override {
    supervised_.add_parameters(state, arch);
  }
  void begin_epoch(int epoch) override { instance_.begin_epoch(epoch); }
  // `correct` counts the supervised accuracy, what a labelled run reports.
  torch::Tensor loss(EmbeddingNet& net, const torch::Tensor& idx, std::mt19937_64& rng,
                     std::size_t& correct) override {
    std::size_t pairs = 0;
    auto categories = supervised_.loss(net, idx, rng, correct);
    return categories + weight_ * instance_.loss(net, idx, rng, pairs);
  }
  void describe(ModelHeader& header, std::ostringstream& with) const override {
    instance_.describe(header, with);
    supervised_.describe(header, with);
    header.info.name = "joint-cnn";
    with << " instance_weight=" << weight_;
  }

 private:
  const ImageSet images_;  // a copy: the self-supervised part reads an ImageSet
  SupervisedTrainer supervised_;
  SelfSupervisedTrainer instance_;
  double weight_;
};

// Checks the options of the self-supervised loss and the images it distorts.
void check_self_supervised(const std::vector<image::Image>& images, const TrainOptions& o) {
  if (!(o.temperature > 0 && o.temperature <= 10)) {
    throw Error(ErrorKind::kInvalidInput, "temperature must be in (0, 10]");
  }
  if (!(o.clean_probability >= 0 && o.clean_probability <= 1)) {
    throw Error(ErrorKind::kInvalidInput, "clean probability must be in [0, 1]");
  }
  std::size_t held_out = 0;
  for (auto d : image::suite_distortions()) {
    held_out += std::find(o.held_out.begin(), o.held_out.end(), d) != o.held_out.end();
  }
  if (held_out == image::suite_distortions().size()) {
    throw Error(ErrorKind::kInvalidInput,
                "every distortion is held out: nothing to make training photos with");
  }
  for (const auto& img : images) {
    if (img.width < 1 || img.height < 1 || (img.channels != 1 && img.channels != 3) ||
        img.pixels.size() != std::size_t(img.width) * img.height * img.channels) {
      throw Error(ErrorKind::kInvalidInput, "a training image is empty or malformed");
    }
  }
}

// The loop both objectives share.
void run_training(Trainer& trainer, std::size_t n, const image::InputSpec& spec, const TrainOptions& o,
                  const fs::path& out) {
  if (o.epochs < 1 || o.batch_size < 2)
    throw Error(ErrorKind::kInvalidInput, "epochs must be >= 1 and batch size >= 2");
  if (!(o.width > 0 && o.width <= 8)) throw Error(ErrorKind::kInvalidInput, "width must be in (0, 8]");
  if (!(o.erase_probability >= 0 && o.erase_probability <= 1)) {
    throw Error(ErrorKind::kInvalidInput, "erase probability must be in [0, 1]");
  }
  torch::manual_seed(o.seed);
  Architecture arch;
  arch.dim = o.dim;
  for (auto& block : arch.blocks) {
    block.first = std::max(8, static_cast<int>(std::lround(block.first * o.width / 8.0)) * 8);
  }
  EmbeddingNet net(arch, spec.channels);
  torch::nn::Module state;
  state.register_module("net", net.ptr());
  trainer.add_parameters(state, arch);
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
      // Checked first: the other objective's weights would not load, with a less
      // helpful message. Checkpoints from before self-supervised training existed
      // have no objective and are supervised.
      torch::Tensor objective_tensor;
      const auto objective = archive.try_read("objective", objective_tensor)
                                 ? static_cast<Objective>(objective_tensor.item<long>())
                                 : Objective::kSupervised;
      if (objective != trainer.objective()) {
        throw cannot_resume(std::string("it was made by ") + to_string(objective) +
                            " training, this run is " + to_string(trainer.objective()) +
                            "; delete it or run the other objective");
      }
      // Checkpoints from before the grey choice existed were made on luma.
      torch::Tensor gray_tensor;
      const auto gray = archive.try_read("gray", gray_tensor)
                            ? static_cast<image::Gray>(gray_tensor.item<long>())
                            : image::Gray::kLuma;
      if (gray != spec.gray) {
        throw cannot_resume(std::string("it was made on ") + image::to_string(gray) +
                            " grey pictures, this run asks for " + image::to_string(spec.gray) +
                            "; delete it or run with --gray " + image::to_string(gray));
      }
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

  // A last batch of one sample is dropped (batch norm needs two), so it is no step:
  // the progress of the last real step then says the epoch is done.
  const std::size_t batch = static_cast<std::size_t>(o.batch_size);
  const std::size_t steps = n / batch + (n % batch >= 2 ? 1 : 0);
  auto start = std::chrono::steady_clock::now();

  for (int epoch = first_epoch; epoch <= o.epochs; ++epoch) {
    // Seeded per epoch, so resuming from a checkpoint replays the same order.
    std::mt19937_64 rng(o.seed * 1000003ULL + static_cast<std::uint64_t>(epoch));
    torch::manual_seed(o.seed * 1000003ULL + static_cast<std::uint64_t>(epoch));
    std::vector<long> order(n);
    std::iota(order.begin(), order.end(), 0L);
    std::shuffle(order.begin(), order.end(), rng);
    auto order_tensor = torch::tensor(order, torch::kLong);
    const auto epoch_start = std::chrono::steady_clock::now();
    trainer.begin_epoch(epoch);
    const double photo_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();

    net->train();
    double loss_sum = 0;
    std::size_t correct = 0, seen = 0;
    for (std::size_t step = 0; step < steps; ++step) {
      long begin = static_cast<long>(step) * o.batch_size;
      long end = std::min<long>(begin + o.batch_size, static_cast<long>(n));
      double lr = learning_rate_at(o, (epoch - 1) + double(step) / steps);
      for (auto& group : optimizer.param_groups()) {
        static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
      }
      auto loss = trainer.loss(net, order_tensor.slice(0, begin, end), rng, correct);
      optimizer.zero_grad();
      loss.backward();
      optimizer.step();

      loss_sum += loss.item<double>() * (end - begin);
      seen += static_cast<std::size_t>(end - begin);
      if (o.on_progress) {
        TrainProgress p;
        p.objective = trainer.objective();
        p.epoch = epoch;
        p.epochs = o.epochs;
        p.first_epoch = first_epoch;
        p.step = step + 1;
        p.steps = steps;
        p.loss = loss_sum / seen;
        p.accuracy = double(correct) / seen;
        p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        p.photo_seconds = photo_seconds;
        p.epoch_done = step + 1 == steps;
        o.on_progress(p);
      }
    }
    if (!o.checkpoint.empty()) {
      torch::serialize::OutputArchive archive, model_archive, optim_archive;
      state.save(model_archive);
      optimizer.save(optim_archive);
      archive.write("objective", torch::tensor(static_cast<long>(trainer.objective())));
      archive.write("gray", torch::tensor(static_cast<long>(spec.gray)));
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
  header.info.version = "1";
  header.info.input = spec;
  header.arch = arch;
  std::ostringstream with;
  if (trainer.objective() != Objective::kSupervised)
    with << "objective=" << to_string(trainer.objective()) << " ";
  with << "epochs=" << o.epochs << " batch=" << o.batch_size << " lr=" << o.learning_rate
       << " wd=" << o.weight_decay << " dim=" << o.dim << " width=" << o.width;
  trainer.describe(header, with);
  if (spec.channels == 1 && spec.gray != image::Gray::kLuma) with << " gray=" << image::to_string(spec.gray);
  with << " seed=" << o.seed << " images=" << n;
  header.trained_with = with.str();
  net->eval();
  write_model_file(out, header, net);
}

}  // namespace

void train_model(const LabelledSet& data, const TrainOptions& o, const fs::path& out) {
  const auto& spec = data.input;
  const std::size_t n = data.size();
  const std::size_t per_image = static_cast<std::size_t>(spec.channels) * spec.width * spec.height;
  if (n == 0) throw Error(ErrorKind::kInvalidInput, "no labelled images to train on");
  if (data.class_names.size() < 2)
    throw Error(ErrorKind::kInvalidInput, "training needs at least two categories");
  if (data.inputs.size() != n * per_image)
    throw Error(ErrorKind::kInternal, "training inputs have the wrong size");
  if (!(o.instance_weight >= 0)) throw Error(ErrorKind::kInvalidInput, "instance weight must be >= 0");
  if (o.instance_weight == 0) {
    SupervisedTrainer trainer(data, o);
    run_training(trainer, n, spec, o, out);
    return;
  }
  if (data.images.size() != n) {
    throw Error(ErrorKind::kInvalidInput,
                "an instance weight needs the decoded image of every training example");
  }
  check_self_supervised(data.images, o);
  JointTrainer trainer(data, o);
  run_training(trainer, n, spec, o, out);
}

void train_self_supervised(const ImageSet& data, const TrainOptions& o, const fs::path& out) {
  if (data.size() < 2) {
    throw Error(ErrorKind::kInvalidInput, "self-supervised training needs at least two images");
  }
  check_self_supervised(data.images, o);
  SelfSupervisedTrainer trainer(data, o);
  run_training(trainer, data.size(), data.input, o, out);
}

}  // namespace lookalike::embed
