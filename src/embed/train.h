// Training the CNN embedder with libtorch: a cosine-margin classifier over the
// catalog's categories (normalised softmax with an additive margin, "CosFace"),
// whose penultimate, L2-normalised layer is the embedding. Classes become tight
// clusters on the sphere, which is what nearest-neighbour retrieval needs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "image/image.h"

namespace lookalike::embed {

// A labelled training set, already preprocessed: n x C x H x W floats.
struct LabelledSet {
  image::InputSpec input;
  std::vector<float> inputs;
  std::vector<int> labels;  // 0 .. class_names.size() - 1
  std::vector<std::string> class_names;
  std::size_t size() const { return labels.size(); }
};

struct TrainProgress {
  int epoch = 0;  // 1-based
  int epochs = 0;
  int first_epoch = 1;   // where this run started (later than 1 when resumed)
  std::size_t step = 0;  // within the epoch
  std::size_t steps = 0;
  double loss = 0;      // running mean over the epoch so far
  double accuracy = 0;  // running training accuracy (of the margin-free logits)
  double seconds = 0;   // since training (or the resumed run) started
  bool epoch_done = false;
};

struct TrainOptions {
  int epochs = 30;
  int batch_size = 128;
  double learning_rate = 3e-3;  // peak, after warm-up; cosine decay to zero
  double weight_decay = 5e-4;
  int dim = 128;                 // embedding size
  double width = 1.0;            // multiplies the channel count of every conv block
  double erase_probability = 0;  // chance that a training sample gets a random-erasing patch
  std::uint64_t seed = 1;
  // Where a checkpoint is written after every epoch; training resumes from it
  // when it exists and `resume` is set.
  std::filesystem::path checkpoint;
  bool resume = false;
  std::function<void(const TrainProgress&)> on_progress;
};

// Trains and writes the model file to `out` atomically. Reproducible for a given
// seed, data order and thread count. Throws Error(kInvalidInput) for an empty set
// or fewer than two classes.
void train_model(const LabelledSet& data, const TrainOptions& options, const std::filesystem::path& out);

// The input a freshly trained model expects (28 x 28 gray, mean/std of Fashion-MNIST).
image::InputSpec default_input_spec();

}  // namespace lookalike::embed
