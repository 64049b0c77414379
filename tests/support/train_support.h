// Helpers shared by the tests of both training objectives (embed/train.h).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <vector>

#include "embed/embedder.h"
#include "embed/train.h"

namespace lookalike::testing {

// Training is reproducible only for a fixed thread count: a test binary that
// includes this header runs every test with one compute thread.
class SingleThreadedTorch : public ::testing::Environment {
 public:
  void SetUp() override { embed::set_compute_threads(1); }
};
inline ::testing::Environment* const single_threaded_torch =
    ::testing::AddGlobalTestEnvironment(new SingleThreadedTorch);

// Options for a training run of a fraction of a second on a few dozen images.
inline embed::TrainOptions tiny_options(std::uint64_t seed) {
  embed::TrainOptions o;
  o.epochs = 2;
  o.batch_size = 8;
  o.learning_rate = 1e-2;
  o.dim = 16;
  o.seed = seed;
  return o;
}

// Trains like `train(options, out)` does, but in two runs: the first epoch with a
// checkpoint in dir (its model written to dir / "after1.model"), then a resumed
// run to options.epochs, written to dir / "resumed.model", whose path is returned.
// Checks that the checkpoint was written and that the resumed run reported every
// epoch after the first as done, and no other.
inline std::filesystem::path train_in_two_runs(
    const std::function<void(const embed::TrainOptions&, const std::filesystem::path&)>& train,
    const embed::TrainOptions& options, const std::filesystem::path& dir) {
  embed::TrainOptions first = options;
  first.epochs = 1;
  first.checkpoint = dir / "run.ckpt";
  train(first, dir / "after1.model");
  EXPECT_TRUE(std::filesystem::exists(first.checkpoint));

  embed::TrainOptions rest = options;
  rest.checkpoint = first.checkpoint;
  rest.resume = true;
  std::vector<int> epochs_seen;
  rest.on_progress = [&](const embed::TrainProgress& p) {
    if (p.epoch_done) epochs_seen.push_back(p.epoch);
  };
  train(rest, dir / "resumed.model");
  std::vector<int> expected;
  for (int e = 2; e <= options.epochs; ++e) expected.push_back(e);
  EXPECT_EQ(epochs_seen, expected);
  return dir / "resumed.model";
}

}  // namespace lookalike::testing
