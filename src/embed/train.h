// Training the CNN embedder with libtorch, with one of two objectives:
//
// - supervised (train_model): a cosine-margin classifier over the catalog's
//   categories (normalised softmax with an additive margin, "CosFace"), whose
//   penultimate, L2-normalised layer is the embedding. Classes become tight
//   clusters on the sphere, which is what category retrieval needs.
// - self-supervised (train_self_supervised): no labels. Each catalog image is
//   paired with a synthetic shopper photo of itself (image::distort), and an
//   InfoNCE loss over the batch pulls the two together and pushes every other
//   image of the batch away, so each product gets its own point: what instance
//   retrieval (finding the exact product from a photo) needs.
//
// Both share one loop: learning-rate schedule, checkpoint and resume, progress,
// seeding and the atomic model write.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "image/distort.h"
#include "image/image.h"

namespace lookalike::embed {

// A labelled training set, already preprocessed: n x C x H x W floats.
struct LabelledSet {
  image::InputSpec input;
  std::vector<float> inputs;
  std::vector<int> labels;  // 0 .. class_names.size() - 1
  std::vector<std::string> class_names;
  // The decoded images, in the order of labels (as ImageSet keeps them): needed
  // only for TrainOptions::instance_weight > 0, empty otherwise.
  std::vector<image::Image> images;
  std::size_t size() const { return labels.size(); }
};

// An unlabelled training set: the catalog's images, decoded. Images larger than
// image::kWorkSide on a side are kept shrunk to it (training_data.h), as every
// synthetic photo is made on a canvas of that size anyway.
struct ImageSet {
  image::InputSpec input;  // what the trained model will expect
  std::vector<image::Image> images;
  std::size_t size() const { return images.size(); }
};

// kJoint: the supervised loss plus TrainOptions::instance_weight times the
// self-supervised one, on a labelled set with its images.
enum class Objective { kSupervised, kSelfSupervised, kJoint };

// "supervised", "self-supervised" or "supervised+instance", as written in
// checkpoints' errors and trained_with.
const char* to_string(Objective objective) noexcept;

struct TrainProgress {
  Objective objective = Objective::kSupervised;
  int epoch = 0;  // 1-based
  int epochs = 0;
  int first_epoch = 1;   // where this run started (later than 1 when resumed)
  std::size_t step = 0;  // within the epoch
  std::size_t steps = 0;
  double loss = 0;  // running mean over the epoch so far
  // Running mean over the epoch so far. Supervised and joint: training accuracy
  // of the margin-free logits. Self-supervised: share of synthetic photos whose
  // nearest catalog image in the batch is their own ("pair accuracy").
  double accuracy = 0;
  double seconds = 0;  // since training (or the resumed run) started
  // Self-supervised and joint: seconds this epoch spent making its shopper photos (part of `seconds`).
  double photo_seconds = 0;
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
  // Supervised only. When > 0, the self-supervised loss (below) is added with
  // this weight to the supervised one, so that one model learns categories and
  // tells products apart (needs LabelledSet::images).
  double instance_weight = 0;
  // Self-supervised (and instance_weight > 0) only. Softmax temperature of the InfoNCE loss: lower values
  // weigh the hardest negatives of the batch more.
  double temperature = 0.1;
  // Self-supervised (and instance_weight > 0) only. Chance that the shopper photo of a pair is the catalog
  // image merely enlarged to the photo canvas (Distortion::kNone) instead of a
  // suite distortion drawn uniformly.
  double clean_probability = 0.2;
  // Self-supervised (and instance_weight > 0) only. Suite distortions never used to make training photos,
  // so that eval-robustness can measure how the model does on a kind of photo it
  // has not seen.
  std::vector<image::Distortion> held_out;
  // Where a checkpoint is written after every epoch; training resumes from it
  // when it exists and `resume` is set. A checkpoint records its objective and
  // is refused (Error(kInvalidInput)) by a run of the other objective.
  std::filesystem::path checkpoint;
  bool resume = false;
  std::function<void(const TrainProgress&)> on_progress;
};

// Trains with the supervised objective (with options.instance_weight > 0: the
// joint one, model name "joint-cnn") and writes the model file to `out`
// atomically. Reproducible for a given seed, data order and thread count. Throws
// Error(kInvalidInput) for an empty set, fewer than two classes, a negative
// instance weight, or a positive one without data.images (one per label) or
// with the self-supervised options out of range (see train_self_supervised).
void train_model(const LabelledSet& data, const TrainOptions& options, const std::filesystem::path& out);

// Trains with the self-supervised objective and writes the model file (named
// "selfsup-cnn", no class names) to `out` atomically. A pair is the catalog image
// preprocessed as ingest does (plus the same random 2-pixel shift and flip as
// supervised training) and a photo of it made with image::distort and preprocessed
// as a search upload is. Each photo's seed is derived from the training seed, the
// epoch and the image's position with a tag of its own, so training photos are
// other random draws than eval-robustness's (which are seeded by product id).
// The photos of an epoch are made before its first step, spread over OpenCV's
// threads (set_compute_threads). Reproducible for a given seed, data order and
// thread count. Throws Error(kInvalidInput) for fewer than two images, a
// temperature outside (0, 10], a clean probability outside [0, 1] or when every
// distortion is held out.
void train_self_supervised(const ImageSet& data, const TrainOptions& options,
                           const std::filesystem::path& out);

// The input a freshly trained model expects (28 x 28 gray, mean/std of Fashion-MNIST).
image::InputSpec default_input_spec();

}  // namespace lookalike::embed
