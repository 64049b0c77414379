#include <gtest/gtest.h>
#include <onnx/checker.h>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/container_file.h"
#include "common/error.h"
#include "embed/embedder.h"
#include "embed/train.h"
#include "support/test_support.h"
#include "support/train_support.h"

namespace lookalike {

namespace embed {
namespace {

namespace fs = std::filesystem;
using lookalike::testing::read_text;
using lookalike::testing::contains;
using lookalike::testing::error_from;
using lookalike::testing::TempDir;
using lookalike::testing::tiny_options;
using lookalike::testing::write_bytes;
using Bytes = std::vector<std::uint8_t>;

Bytes read_bytes(const fs::path& path) {
  std::string text = read_text(path);
  return Bytes(text.begin(), text.end());
}

// Three classes a horizontal flip or a 2-pixel shift cannot confuse: a bright top
// half, a bright bottom half, a bright middle band. Pixels in [0, 1] plus noise,
// then normalised like image::preprocess does.
LabelledSet synthetic_set(std::size_t n, std::uint64_t seed) {
  LabelledSet set;
  set.input = default_input_spec();
  set.class_names = {"top", "bottom", "band"};
  const int w = set.input.width, h = set.input.height;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> noise(0.f, 0.15f);
  set.inputs.resize(n * static_cast<std::size_t>(w * h));
  for (std::size_t i = 0; i < n; ++i) {
    int label = static_cast<int>(i % 3);
    set.labels.push_back(label);
    for (int y = 0; y < h; ++y) {
      bool bright = label == 0 ? y < h / 2 : label == 1 ? y >= h / 2 : (y >= h / 3 && y < 2 * h / 3);
      for (int x = 0; x < w; ++x) {
        float pixel = std::clamp((bright ? 0.85f : 0.1f) + noise(rng), 0.f, 1.f);
        set.inputs[i * w * h + y * w + x] = (pixel - set.input.mean[0]) / set.input.stddev[0];
      }
    }
  }
  return set;
}

const LabelledSet& training_set() {
  static const LabelledSet set = synthetic_set(64, 100);
  return set;
}

// Models trained once per process, on first use, in a folder removed at exit.
const TempDir& model_dir() {
  static const TempDir dir;
  return dir;
}

const fs::path& trained_model(std::uint64_t seed) {
  static std::map<std::uint64_t, fs::path> models;
  auto it = models.find(seed);
  if (it == models.end()) {
    fs::path path = model_dir() / ("seed" + std::to_string(seed) + ".model");
    train_model(training_set(), tiny_options(seed), path);
    it = models.emplace(seed, path).first;
  }
  return it->second;
}

std::vector<float> embed_all(const Embedder& embedder, const LabelledSet& set) {
  std::vector<float> out(set.size() * static_cast<std::size_t>(embedder.info().dim));
  embedder.embed_preprocessed(set.inputs.data(), set.size(), out.data());
  return out;
}

double norm(const float* v, int dim) {
  double sum = 0;
  for (int j = 0; j < dim; ++j) sum += double(v[j]) * v[j];
  return std::sqrt(sum);
}

// ---- raw pixels ----

TEST(PixelEmbedder, OutputIsTheL2NormalisedInput) {
  image::InputSpec spec;
  spec.width = 4;
  spec.height = 3;
  spec.channels = 1;
  auto embedder = pixel_embedder(spec);
  ASSERT_EQ(embedder->info().dim, 12);
  std::vector<float> inputs(2 * 12);
  for (std::size_t i = 0; i < inputs.size(); ++i) inputs[i] = static_cast<float>(i % 7) - 2.5f;
  std::vector<float> out(inputs.size());
  embedder->embed_preprocessed(inputs.data(), 2, out.data());
  for (int row = 0; row < 2; ++row) {
    const float* x = inputs.data() + row * 12;
    EXPECT_NEAR(norm(out.data() + row * 12, 12), 1.0, 1e-6);
    double n = norm(x, 12);
    for (int j = 0; j < 12; ++j)
      EXPECT_NEAR(out[row * 12 + j], x[j] / n, 1e-6) << "row " << row << " j " << j;
  }
}

TEST(PixelEmbedder, AllZeroInputGivesZerosNotNaN) {
  auto embedder = pixel_embedder(image::InputSpec{});
  std::vector<float> inputs(784, 0.f), out(784, 7.f);
  embedder->embed_preprocessed(inputs.data(), 1, out.data());
  for (float v : out) EXPECT_EQ(v, 0.f);
}

TEST(PixelEmbedder, IdentityNamesInputAndDimension) {
  image::InputSpec spec;
  spec.width = 32;
  spec.height = 24;
  spec.channels = 3;
  spec.mean = {0, 0, 0};
  spec.stddev = {1, 1, 1};
  EXPECT_EQ(pixel_embedder(spec)->info().identity(), "pixels/1/32x24x3/d2304/");
}

// ---- training and the trained model ----

TEST(TrainModel, WritesAModelWhoseEmbeddingsAreUnitNorm) {
  auto model = load_model(trained_model(1));
  const ModelInfo& info = model->info();
  EXPECT_EQ(info.dim, 16);
  EXPECT_EQ(info.input.width, 28);
  EXPECT_EQ(info.input.height, 28);
  EXPECT_EQ(info.input.channels, 1);
  EXPECT_EQ(info.weights_sha.size(), 16u);
  EXPECT_EQ(info.identity(), "fashion-cnn/1/28x28x1/d16/" + info.weights_sha);

  auto vectors = embed_all(*model, training_set());
  for (std::size_t i = 0; i < training_set().size(); ++i) {
    EXPECT_NEAR(norm(vectors.data() + i * 16, 16), 1.0, 1e-5) << "image " << i;
  }
}

TEST(TrainModel, SameSeedGivesIdenticalWeightsAndVectors) {
  TempDir dir;
  train_model(training_set(), tiny_options(1), dir / "again.model");
  auto first = load_model(trained_model(1));
  auto second = load_model(dir / "again.model");
  EXPECT_EQ(first->info().weights_sha, second->info().weights_sha);
  EXPECT_EQ(first->info().identity(), second->info().identity());
  EXPECT_EQ(read_bytes(trained_model(1)), read_bytes(dir / "again.model"));
  auto a = embed_all(*first, training_set());
  auto b = embed_all(*second, training_set());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
}

TEST(TrainModel, DifferentSeedsGiveDifferentIdentities) {
  auto a = load_model(trained_model(1));
  auto b = load_model(trained_model(2));
  EXPECT_NE(a->info().identity(), b->info().identity());
  EXPECT_NE(a->info().weights_sha, b->info().weights_sha);
}

// Unseen images as queries against the training images as catalog.
TEST(TrainModel, SeparatesTheClassesOfUnseenImages) {
  auto model = load_model(trained_model(1));
  const LabelledSet& catalog = training_set();
  const LabelledSet queries = synthetic_set(30, 200);
  auto catalog_vectors = embed_all(*model, catalog);
  auto query_vectors = embed_all(*model, queries);
  const int dim = model->info().dim;
  std::size_t right = 0, same_pairs = 0, other_pairs = 0;
  double same_cosine = 0, other_cosine = 0;
  for (std::size_t q = 0; q < queries.size(); ++q) {
    std::size_t best = 0;
    float best_score = -2;
    for (std::size_t c = 0; c < catalog.size(); ++c) {
      float score = 0;
      for (int j = 0; j < dim; ++j) score += query_vectors[q * dim + j] * catalog_vectors[c * dim + j];
      if (score > best_score) {
        best_score = score;
        best = c;
      }
      if (catalog.labels[c] == queries.labels[q]) {
        same_cosine += score;
        ++same_pairs;
      } else {
        other_cosine += score;
        ++other_pairs;
      }
    }
    if (catalog.labels[best] == queries.labels[q]) ++right;
  }
  EXPECT_GE(double(right) / queries.size(), 0.9) << right << " of " << queries.size();
  // Nearest neighbours alone are easy on this data even before training (about
  // 0.001 between the two means); training must pull the classes apart.
  same_cosine /= same_pairs;
  other_cosine /= other_pairs;
  EXPECT_GT(same_cosine - other_cosine, 0.15) << "same class " << same_cosine << ", other " << other_cosine;
}

TEST(TrainModel, ResumingFromACheckpointEqualsTrainingStraight) {
  TempDir dir;
  const fs::path resumed_file = lookalike::testing::train_in_two_runs(
      [](const TrainOptions& o, const fs::path& out) { train_model(training_set(), o, out); },
      tiny_options(1), dir.path());

  auto straight = load_model(trained_model(1));
  auto resumed = load_model(resumed_file);
  EXPECT_EQ(resumed->info().identity(), straight->info().identity());
  auto a = embed_all(*straight, training_set());
  auto b = embed_all(*resumed, training_set());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
}

TEST(TrainModel, ResumingFromACheckpointOfAnotherShapeOrGrayIsInvalidInput) {
  TempDir dir;
  TrainOptions first = tiny_options(1);
  first.epochs = 1;
  first.checkpoint = dir / "run.ckpt";
  train_model(training_set(), first, dir / "after1.model");

  TrainOptions wider = tiny_options(1);
  wider.dim = 24;
  wider.checkpoint = first.checkpoint;
  wider.resume = true;
  auto e = error_from([&] { train_model(training_set(), wider, dir / "wider.model"); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput);
  EXPECT_TRUE(contains(e->what(), first.checkpoint.string())) << e->what();
  EXPECT_FALSE(fs::exists(dir / "wider.model"));

  LabelledSet two_classes = synthetic_set(40, 7);
  two_classes.class_names.pop_back();
  for (int& label : two_classes.labels) label %= 2;
  TrainOptions fewer = tiny_options(1);
  fewer.checkpoint = first.checkpoint;
  fewer.resume = true;
  e = error_from([&] { train_model(two_classes, fewer, dir / "fewer.model"); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput);

  // Made on luma, resumed on value grey.
  LabelledSet value_set = training_set();
  value_set.input.gray = image::Gray::kValue;
  TrainOptions value = tiny_options(1);
  value.checkpoint = first.checkpoint;
  value.resume = true;
  e = error_from([&] { train_model(value_set, value, dir / "value.model"); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput);
  EXPECT_TRUE(contains(e->what(), "--gray luma")) << e->what();
  EXPECT_FALSE(fs::exists(dir / "value.model"));
}

TEST(TrainModel, WiderNetworkAndRandomErasingTrainWorkingModels) {
  TempDir dir;
  TrainOptions wider = tiny_options(1);
  wider.width = 2;
  train_model(training_set(), wider, dir / "wider.model");
  TrainOptions erased = tiny_options(1);
  erased.erase_probability = 0.5;
  train_model(training_set(), erased, dir / "erased.model");

  // Twice the channels: about four times the conv weights in the file.
  EXPECT_GT(fs::file_size(dir / "wider.model"), 3 * fs::file_size(trained_model(1)));
  const auto plain = load_model(trained_model(1));
  for (const char* name : {"wider.model", "erased.model"}) {
    auto model = load_model(dir / name);
    EXPECT_NE(model->info().weights_sha, plain->info().weights_sha) << name;
    auto vectors = embed_all(*model, training_set());
    for (std::size_t i = 0; i < training_set().size(); ++i) {
      ASSERT_NEAR(norm(vectors.data() + i * 16, 16), 1.0, 1e-5) << name << " image " << i;
    }
  }
}

TEST(TrainModel, WidthAndErasingOutOfRangeAreInvalidInput) {
  TempDir dir;
  TrainOptions o = tiny_options(1);
  o.width = 0;
  auto e = error_from([&] { train_model(training_set(), o, dir / "m.model"); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput);
  EXPECT_TRUE(contains(e->what(), "width")) << e->what();
  o = tiny_options(1);
  o.erase_probability = 1.5;
  e = error_from([&] { train_model(training_set(), o, dir / "m.model"); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput);
  EXPECT_TRUE(contains(e->what(), "erase")) << e->what();
  EXPECT_FALSE(fs::exists(dir / "m.model"));
}

TEST(TrainModel, CheckpointThatCannotBeWrittenIsAnIOError) {
  TempDir dir;
  TrainOptions o = tiny_options(1);
  o.epochs = 1;
  o.checkpoint = dir / "no-such-folder" / "run.ckpt";
  auto e = error_from([&] { train_model(training_set(), o, dir / "m.model"); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kIO);
  EXPECT_FALSE(fs::exists(dir / "m.model"));
}

TEST(TrainModel, CheckpointIsReplacedWithoutLeavingTempFiles) {
  TempDir dir;
  TrainOptions o = tiny_options(1);
  o.checkpoint = dir / "run.ckpt";
  train_model(training_set(), o, dir / "m.model");
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir.path()))
    names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"m.model", "run.ckpt"}));
}

TEST(TrainModel, ResumingFromACorruptCheckpointIsInvalidInput) {
  TempDir dir;
  TrainOptions o = tiny_options(1);
  o.checkpoint = dir / "run.ckpt";
  o.resume = true;
  lookalike::testing::write_text(o.checkpoint, "not a checkpoint");
  auto e = error_from([&] { train_model(training_set(), o, dir / "m.model"); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput);
  EXPECT_TRUE(contains(e->what(), o.checkpoint.string())) << e->what();
}

TEST(TrainModel, ReportsProgressForEveryStepOfEveryEpoch) {
  TempDir dir;
  LabelledSet small = synthetic_set(20, 300);
  TrainOptions o = tiny_options(3);
  o.batch_size = 8;
  std::vector<TrainProgress> seen;
  o.on_progress = [&](const TrainProgress& p) { seen.push_back(p); };
  train_model(small, o, dir / "m.model");
  ASSERT_EQ(seen.size(), 6u);  // 2 epochs x 3 batches (8 + 8 + 4)
  for (std::size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].epoch, static_cast<int>(i / 3) + 1);
    EXPECT_EQ(seen[i].epochs, 2);
    EXPECT_EQ(seen[i].step, i % 3 + 1);
    EXPECT_EQ(seen[i].steps, 3u);
    EXPECT_EQ(seen[i].epoch_done, i % 3 == 2);
    EXPECT_GT(seen[i].loss, 0);
    EXPECT_GE(seen[i].accuracy, 0);
    EXPECT_LE(seen[i].accuracy, 1);
  }
}

// Batch norm cannot train on a last batch of one image; it is skipped, and the
// epoch must still be reported as done.
TEST(TrainModel, ReportsEveryEpochDoneWhenTheLastBatchHoldsOneImage) {
  TempDir dir;
  LabelledSet small = synthetic_set(17, 301);
  TrainOptions o = tiny_options(3);
  o.batch_size = 8;
  std::vector<TrainProgress> seen;
  o.on_progress = [&](const TrainProgress& p) { seen.push_back(p); };
  train_model(small, o, dir / "m.model");
  ASSERT_EQ(seen.size(), 4u);  // 2 epochs x 2 batches of 8
  for (std::size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].steps, 2u);
    EXPECT_EQ(seen[i].step, i % 2 + 1);
    EXPECT_EQ(seen[i].epoch_done, i % 2 == 1) << "report " << i;
  }
}

TEST(TrainModel, RejectsEmptySetsAndSingleClasses) {
  TempDir dir;
  LabelledSet empty;
  empty.input = default_input_spec();
  empty.class_names = {"a", "b"};
  auto e = error_from([&] { train_model(empty, tiny_options(1), dir / "m.model"); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput);

  LabelledSet one_class = synthetic_set(6, 1);
  one_class.class_names = {"only"};
  std::fill(one_class.labels.begin(), one_class.labels.end(), 0);
  e = error_from([&] { train_model(one_class, tiny_options(1), dir / "m.model"); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput);
  EXPECT_FALSE(fs::exists(dir / "m.model"));
}

// ---- model files ----

class ModelFile : public ::testing::Test {
 protected:
  // Only the tests that damage a real model file pay for training one.
  const Bytes& original() {
    if (original_.empty()) original_ = read_bytes(trained_model(1));
    return original_;
  }

  void expect_invalid(const std::string& context) {
    auto e = error_from([&] { load_model(path_); });
    ASSERT_TRUE(e) << context << ": accepted";
    EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput) << context << ": " << e->what();
    EXPECT_TRUE(contains(e->what(), path_.string())) << context << ": " << e->what();
  }

  TempDir dir_;
  fs::path path_ = dir_ / "model.lk";
  Bytes original_;
};

TEST_F(ModelFile, MissingFileIsNotFound) {
  auto e = error_from([&] { load_model(dir_ / "absent.model"); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kNotFound);
  EXPECT_TRUE(contains(e->what(), "absent.model")) << e->what();
}

TEST_F(ModelFile, TruncatedFileIsInvalidInputNamingThePath) {
  const Bytes& bytes = original();
  for (std::size_t size :
       {std::size_t(0), std::size_t(12), std::size_t(100), bytes.size() / 2, bytes.size() - 1}) {
    write_bytes(path_, Bytes(bytes.begin(), bytes.begin() + static_cast<long>(size)));
    expect_invalid("truncated to " + std::to_string(size));
  }
}

TEST_F(ModelFile, CorruptedByteIsInvalidInputNamingThePath) {
  const Bytes& bytes = original();
  for (std::size_t at :
       {std::size_t(0), std::size_t(9), std::size_t(30), bytes.size() / 2, bytes.size() - 1}) {
    Bytes damaged = bytes;
    damaged[at] ^= 0x01;
    write_bytes(path_, damaged);
    expect_invalid("byte " + std::to_string(at) + " changed");
  }
}

TEST_F(ModelFile, IndexFileIsNotAModel) {
  write_container_file(path_, std::string("LKINDEX", 8), 1, "{}", "payload");
  expect_invalid("index file");
}

// A valid envelope does not make valid contents: the header and the weights are
// checked too, so a hand-made or mismatched file is refused, not crashed on.
TEST_F(ModelFile, ValidEnvelopeWithBadContentIsInvalidInput) {
  const std::string magic("LKMODEL", 8);
  auto file = read_container_file(trained_model(1), magic, 1, 1 << 30, "model file");
  const std::string weights(file.payload.begin(), file.payload.end());

  write_container_file(path_, magic, 1, file.header, "not a torch archive");
  expect_invalid("junk weights");

  write_container_file(path_, magic, 1, file.header, weights.substr(0, weights.size() / 2));
  expect_invalid("half the weights");

  auto header = nlohmann::json::parse(file.header);
  header["dim"] = 32;
  write_container_file(path_, magic, 1, header.dump(), weights);
  expect_invalid("dim that does not fit the weights");

  header = nlohmann::json::parse(file.header);
  header["blocks"] = nlohmann::json::array({{32, 1}});
  write_container_file(path_, magic, 1, header.dump(), weights);
  expect_invalid("architecture that does not fit the weights");

  for (const char* key : {"width", "channels"}) {
    header = nlohmann::json::parse(file.header);
    header["input"][key] = 100000;
    write_container_file(path_, magic, 1, header.dump(), weights);
    expect_invalid(std::string("absurd input ") + key);
  }

  header = nlohmann::json::parse(file.header);
  header["input"]["std"] = {0.0};
  write_container_file(path_, magic, 1, header.dump(), weights);
  expect_invalid("zero stddev");

  write_container_file(path_, magic, 1, "[1, 2, 3]", weights);
  expect_invalid("header not an object");

  write_container_file(path_, magic, 2, file.header, weights);
  expect_invalid("format version 2");
}

// ---- the optimised inference path against the plain reference ----

TEST(FoldedInference, MatchesTheNetworkAsTrained) {
  auto fast = load_model(trained_model(1));
  auto reference = load_model_reference(trained_model(1));
  ASSERT_EQ(fast->info().identity(), reference->info().identity());
  const LabelledSet queries = synthetic_set(30, 600);
  auto expected = embed_all(*reference, queries);
  auto actual = embed_all(*fast, queries);
  ASSERT_EQ(actual.size(), expected.size());
  for (std::size_t i = 0; i < actual.size(); ++i) ASSERT_NEAR(actual[i], expected[i], 1e-4) << "value " << i;
}

// ---- bring your own model: TorchScript ----

std::string exported_config(const fs::path& pt) {
  // The config is a file in the zip archive; stored uncompressed, so it can be read back as text.
  std::string bytes = read_text(pt);
  auto start = bytes.find("{\"dim\"");
  auto end = bytes.find("}", bytes.find("\"version\"", start));
  return start == std::string::npos || end == std::string::npos ? "" : bytes.substr(start, end - start + 1);
}

TEST(TorchScript, ExportedModelGivesTheNativeVectors) {
  TempDir dir;
  for (const fs::path& native :
       {trained_model(1), fs::path(LOOKALIKE_SOURCE_DIR) / "models" / "fashion-cnn.lkm"}) {
    const fs::path pt = dir / (native.stem().string() + ".pt");
    export_torchscript(native, pt);
    auto original = load_model(native);
    auto exported = load_model(pt);  // recognised as TorchScript by its bytes
    EXPECT_EQ(exported->info().name, original->info().name);
    EXPECT_EQ(exported->info().version, original->info().version + "-torchscript");
    EXPECT_EQ(exported->info().dim, original->info().dim);
    EXPECT_NE(exported->info().identity(), original->info().identity()) << "another file is another identity";
    const LabelledSet queries = synthetic_set(40, 700);
    auto expected = embed_all(*original, queries);
    auto actual = embed_all(*exported, queries);
    ASSERT_EQ(actual.size(), expected.size());
    for (std::size_t i = 0; i < actual.size(); ++i)
      ASSERT_NEAR(actual[i], expected[i], 1e-4) << native << " value " << i;
  }
}

TEST(TorchScript, CorruptOrForeignFilesAreRefusedNamingTheFile) {
  TempDir dir;
  const fs::path pt = dir / "model.pt";
  export_torchscript(trained_model(1), pt);
  Bytes bytes = read_bytes(pt);
  Bytes flipped = bytes;
  for (std::size_t i = bytes.size() / 3; i < bytes.size() / 3 + 64; ++i) flipped[i] ^= 0x5a;
  write_bytes(dir / "flipped.pt", flipped);
  write_bytes(dir / "truncated.pt",
              Bytes(bytes.begin(), bytes.begin() + static_cast<long>(bytes.size() / 2)));
  write_bytes(dir / "zip.pt", Bytes{'P', 'K', 3, 4, 1, 2, 3, 4, 5, 6, 7, 8});
  for (const char* name : {"flipped.pt", "truncated.pt", "zip.pt"}) {
    auto e = error_from([&] { load_model(dir / name); });
    ASSERT_TRUE(e) << name;
    EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput) << name;
    EXPECT_TRUE(contains(e->what(), name)) << e->what();
  }
}

TEST(TorchScript, PackagingChecksTheConfigAgainstTheModel) {
  TempDir dir;
  const fs::path pt = dir / "model.pt";
  export_torchscript(trained_model(1), pt);
  nlohmann::json config = nlohmann::json::parse(exported_config(pt));
  ASSERT_EQ(config["dim"], 16) << exported_config(pt);

  // A valid config under another name loads and gives the same vectors.
  config["name"] = "shop-net";
  package_torchscript(pt, config.dump(), dir / "shop.pt");
  auto shop = load_model(dir / "shop.pt");
  EXPECT_EQ(shop->info().name, "shop-net");
  const LabelledSet queries = synthetic_set(6, 800);
  auto a = embed_all(*shop, queries);
  auto b = embed_all(*load_model(trained_model(1)), queries);
  for (std::size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-4);

  auto refused = [&](nlohmann::json bad, const std::string& expect) {
    auto e = error_from([&] { package_torchscript(pt, bad.dump(), dir / "bad.pt"); });
    ASSERT_TRUE(e) << bad.dump();
    EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput);
    EXPECT_TRUE(contains(e->what(), expect)) << "expected \"" << expect << "\" in: " << e->what();
    EXPECT_TRUE(contains(e->what(), "model.pt")) << e->what();
    EXPECT_FALSE(fs::exists(dir / "bad.pt"));
  };
  auto wrong_dim = config;
  wrong_dim["dim"] = 17;
  refused(wrong_dim, "16");  // the output is n x 16, the config says 17
  auto typo = config;
  typo["normalise"] = true;
  refused(typo, "normalise");
  auto means = config;
  means["input"]["mean"] = {0.1, 0.2};
  refused(means, "mean");
  auto output = config;
  output["output"] = 1;
  refused(output, "single value");
  auto pooled = config;
  pooled["pooling"] = "avg";
  refused(pooled, "H x W");
  auto order = config;
  order["input"]["channel_order"] = "bgr";
  refused(order, "3 channels");
  auto channels = config;
  channels["input"]["channels"] = 3;
  channels["input"]["mean"] = {0, 0, 0};
  channels["input"]["std"] = {1, 1, 1};
  refused(channels, "input.gray needs 1 channel");
  channels["input"].erase("gray");
  refused(channels, "forward()");  // the network's first convolution takes one channel
  auto hue = config;
  hue["input"]["gray"] = "hue";
  refused(hue, "\"hue\"");
  auto e = error_from([&] { package_torchscript(pt, "{not json", dir / "bad.pt"); });
  ASSERT_TRUE(e);
  EXPECT_TRUE(contains(e->what(), "not JSON")) << e->what();
}

// A model trained on value-grey pictures says so in its file, its identity and its
// exported configs, since the same weights make other vectors from luma.
TEST(TorchScript, ValueGrayIsStoredInTheModelItsIdentityAndItsExports) {
  TempDir dir;
  LabelledSet set = training_set();
  set.input.gray = image::Gray::kValue;
  train_model(set, tiny_options(1), dir / "value.model");
  auto value = load_model(dir / "value.model");
  auto luma = load_model(trained_model(1));
  EXPECT_EQ(value->info().input.gray, image::Gray::kValue);
  EXPECT_EQ(luma->info().input.gray, image::Gray::kLuma);
  EXPECT_EQ(value->info().identity(), "fashion-cnn/1/28x28x1-value/d16/" + value->info().weights_sha);
  EXPECT_NE(value->info().identity(), luma->info().identity());

  export_torchscript(dir / "value.model", dir / "value.pt");
  EXPECT_EQ(nlohmann::json::parse(exported_config(dir / "value.pt"))["input"]["gray"], "value");
  EXPECT_EQ(load_model(dir / "value.pt")->info().input.gray, image::Gray::kValue);
  export_onnx(dir / "value.model", dir / "value.onnx");
  EXPECT_EQ(load_model(dir / "value.onnx")->info().input.gray, image::Gray::kValue);

  // A value-grey part and a luma part cannot share one preprocessing.
  auto e = error_from([&] {
    write_fused_model({{trained_model(1), 1}, {dir / "value.model", 1}}, dir / "f.lkm");
  });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput);
  EXPECT_TRUE(contains(e->what(), "value.model")) << e->what();
  EXPECT_TRUE(contains(e->what(), "\"gray\":\"value\"")) << e->what();
  EXPECT_FALSE(fs::exists(dir / "f.lkm"));
}

// ---- bring your own model: ONNX ----

onnx::ModelProto read_onnx(const fs::path& path) {
  onnx::ModelProto model;
  std::string bytes = read_text(path);
  EXPECT_TRUE(model.ParseFromString(bytes)) << path;
  return model;
}

void write_onnx(const onnx::ModelProto& model, const fs::path& path) {
  std::string bytes = model.SerializeAsString();
  write_bytes(path, Bytes(bytes.begin(), bytes.end()));
}

std::string onnx_metadata(const onnx::ModelProto& model, const std::string& key) {
  for (const auto& p : model.metadata_props())
    if (p.key() == key) return p.value();
  return "";
}

// The exported graph without lookalike's metadata: what a model made elsewhere looks like.
onnx::ModelProto foreign_onnx(const fs::path& exported) {
  onnx::ModelProto model = read_onnx(exported);
  model.clear_metadata_props();
  return model;
}

void expect_same_vectors(const Embedder& a, const Embedder& b, const LabelledSet& set, double tolerance,
                         const std::string& label) {
  auto va = embed_all(a, set);
  auto vb = embed_all(b, set);
  ASSERT_EQ(va.size(), vb.size()) << label;
  for (std::size_t i = 0; i < va.size(); ++i) ASSERT_NEAR(va[i], vb[i], tolerance) << label << " value " << i;
}

TEST(Onnx, ExportedModelGivesTheNativeVectorsAndIsValidOnnx) {
  TempDir dir;
  for (const fs::path& native :
       {trained_model(1), fs::path(LOOKALIKE_SOURCE_DIR) / "models" / "fashion-cnn.lkm"}) {
    const fs::path file = dir / (native.stem().string() + ".onnx");
    export_onnx(native, file);
    // The ONNX project's own checker accepts the graph, so other runtimes can read it too.
    onnx::ModelProto proto = read_onnx(file);
    EXPECT_NO_THROW(onnx::checker::check_model(proto)) << native;
    auto original = load_model(native);
    auto exported = load_model(file);
    EXPECT_EQ(exported->info().name, original->info().name);
    EXPECT_EQ(exported->info().version, original->info().version + "-onnx");
    EXPECT_EQ(exported->info().dim, original->info().dim);
    EXPECT_NE(exported->info().identity(), original->info().identity());
    expect_same_vectors(*original, *exported, synthetic_set(40, 700), 1e-4, native.string());
    // Recognised by its bytes too, as inside a data folder, where every model is model.lkm.
    fs::copy_file(file, dir / "model.lkm", fs::copy_options::overwrite_existing);
    EXPECT_EQ(load_model(dir / "model.lkm")->info().identity(), exported->info().identity());
  }
}

TEST(Onnx, CorruptTruncatedOrForeignFilesAreRefusedNamingTheFile) {
  TempDir dir;
  const fs::path file = dir / "model.onnx";
  export_onnx(trained_model(1), file);
  Bytes bytes = read_bytes(file);
  auto refused = [&](const std::string& name, const Bytes& content, const std::string& expect) {
    write_bytes(dir / name, content);
    auto e = error_from([&] { load_model(dir / name); });
    ASSERT_TRUE(e) << name;
    EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput) << name;
    EXPECT_TRUE(contains(e->what(), name)) << e->what();
    EXPECT_TRUE(contains(e->what(), expect)) << "expected \"" << expect << "\" in: " << e->what();
  };
  // A flipped byte inside the weights still parses as protobuf: the graph's checksum catches it.
  Bytes flipped = bytes;
  flipped[bytes.size() / 3] ^= 0x01;
  refused("flipped.onnx", flipped, "SHA-256");
  refused("half.onnx", Bytes(bytes.begin(), bytes.begin() + long(bytes.size() / 2)), "truncated");
  refused("short.onnx", Bytes(bytes.begin(), bytes.end() - 3), "");
  refused("empty.onnx", Bytes{}, "graph");
  refused("text.onnx", Bytes{'h', 'e', 'l', 'l', 'o', '\n'}, "ONNX");
  write_onnx(foreign_onnx(file), dir / "bare.onnx");
  auto e = error_from([&] { load_model(dir / "bare.onnx"); });
  ASSERT_TRUE(e);
  EXPECT_TRUE(contains(e->what(), "export-model --onnx")) << e->what();
}

TEST(Onnx, PackagingChecksTheConfigAgainstTheGraph) {
  TempDir dir;
  const fs::path file = dir / "model.onnx";
  export_onnx(trained_model(1), file);
  const nlohmann::json config = nlohmann::json::parse(onnx_metadata(read_onnx(file), kModelConfigName));
  ASSERT_EQ(config["dim"], 16) << config.dump();
  const fs::path foreign = dir / "foreign.onnx";
  write_onnx(foreign_onnx(file), foreign);

  // A valid config under another name, output chosen by position: same vectors.
  auto shop_config = config;
  shop_config["name"] = "shop-net";
  shop_config["output"] = 0;
  shop_config["normalize"] = true;
  package_onnx(foreign, shop_config.dump(), dir / "shop.onnx");
  auto shop = load_model(dir / "shop.onnx");
  EXPECT_EQ(shop->info().name, "shop-net");
  expect_same_vectors(*shop, *load_model(trained_model(1)), synthetic_set(6, 800), 1e-4, "packaged");

  auto refused = [&](const nlohmann::json& bad, const std::string& expect) {
    auto e = error_from([&] { package_onnx(foreign, bad.dump(), dir / "bad.onnx"); });
    ASSERT_TRUE(e) << bad.dump();
    EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput);
    EXPECT_TRUE(contains(e->what(), expect)) << "expected \"" << expect << "\" in: " << e->what();
    EXPECT_TRUE(contains(e->what(), "foreign.onnx")) << e->what();
    EXPECT_FALSE(fs::exists(dir / "bad.onnx"));
  };
  auto wrong_dim = config;
  wrong_dim["dim"] = 17;
  refused(wrong_dim, "16 values per image, the config says dim 17");
  auto wrong_size = config;
  wrong_size["input"]["width"] = 32;
  refused(wrong_size, "input \"input\" is batch x 1 x 28 x 28, but the config says n x 1 x 28 x 32");
  auto channels = config;
  channels["input"]["channels"] = 3;
  channels["input"]["mean"] = {0, 0, 0};
  channels["input"]["std"] = {1, 1, 1};
  channels["input"].erase("gray");  // a grey choice on 3 channels is refused first
  refused(channels, "batch x 1 x 28 x 28");
  auto missing = config;
  missing["output"] = "logits";
  refused(missing, "no output \"logits\" (its outputs: embedding)");
  auto second = config;
  second["output"] = 1;
  refused(second, "output 1 asked for, but the graph has 1");
  auto pooled = config;
  pooled["pooling"] = "avg";
  refused(pooled, "rank 2");
  auto typo = config;
  typo["normalise"] = true;
  refused(typo, "normalise");
  auto e = error_from([&] { package_onnx(foreign, "{not json", dir / "bad.onnx"); });
  ASSERT_TRUE(e);
  EXPECT_TRUE(contains(e->what(), "not JSON")) << e->what();
}

TEST(Onnx, UnsupportedOperatorsAndNonFiniteOutputsAreRefused) {
  TempDir dir;
  const fs::path file = dir / "model.onnx";
  export_onnx(trained_model(1), file);
  const std::string config = onnx_metadata(read_onnx(file), kModelConfigName);
  auto refused = [&](const onnx::ModelProto& model, const std::string& expect) {
    write_onnx(model, dir / "changed.onnx");
    auto e = error_from([&] { package_onnx(dir / "changed.onnx", config, dir / "out.onnx"); });
    ASSERT_TRUE(e) << expect;
    EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput);
    EXPECT_TRUE(contains(e->what(), expect)) << "expected \"" << expect << "\" in: " << e->what();
    EXPECT_FALSE(fs::exists(dir / "out.onnx"));
  };
  auto unknown_op = foreign_onnx(file);
  unknown_op.mutable_graph()->mutable_node(1)->set_op_type("Mish2");
  refused(unknown_op, "operator Mish2 is not supported by OpenCV");
  auto custom_domain = foreign_onnx(file);
  custom_domain.mutable_graph()->mutable_node(1)->set_domain("com.example");
  refused(custom_domain, "domain \"com.example\"");
  auto two_inputs = foreign_onnx(file);
  *two_inputs.mutable_graph()->add_input() = two_inputs.graph().input(0);
  two_inputs.mutable_graph()->mutable_input(1)->set_name("mask");
  refused(two_inputs, "2 inputs (input, mask)");
  auto ints = foreign_onnx(file);
  ints.mutable_graph()->mutable_input(0)->mutable_type()->mutable_tensor_type()->set_elem_type(
      onnx::TensorProto::UINT8);
  refused(ints, "UINT8");
  auto nan = foreign_onnx(file);
  for (auto& t : *nan.mutable_graph()->mutable_initializer()) {
    if (t.name() != "head.bias") continue;
    std::vector<float> values(t.raw_data().size() / sizeof(float), std::nanf(""));
    t.set_raw_data(values.data(), values.size() * sizeof(float));
  }
  refused(nan, "non-finite");
}

TEST(Onnx, AGraphWithAFixedBatchSizeIsFedBatchesOfThatSize) {
  TempDir dir;
  const fs::path file = dir / "model.onnx";
  export_onnx(trained_model(1), file);
  auto fixed = read_onnx(file);
  const std::string config = onnx_metadata(fixed, kModelConfigName);
  fixed.clear_metadata_props();
  auto* batch = fixed.mutable_graph()
                    ->mutable_input(0)
                    ->mutable_type()
                    ->mutable_tensor_type()
                    ->mutable_shape()
                    ->mutable_dim(0);
  batch->set_dim_value(4);
  write_onnx(fixed, dir / "fixed.onnx");
  package_onnx(dir / "fixed.onnx", config, dir / "fixed-lookalike.onnx");
  // 11 inputs: two full batches of 4 and a last one of 3, padded.
  expect_same_vectors(*load_model(dir / "fixed-lookalike.onnx"), *load_model(trained_model(1)),
                      synthetic_set(11, 900), 1e-4, "fixed batch");
}

TEST(Onnx, ConcurrentCallsGiveTheSameResultsAsSequentialOnes) {
  TempDir dir;
  const fs::path file = dir / "model.onnx";
  export_onnx(trained_model(1), file);
  auto model = load_model(file);
  const int dim = model->info().dim;
  std::vector<LabelledSet> sets;
  for (int t = 0; t < 4; ++t) sets.push_back(synthetic_set(std::size_t(5 + 7 * t), 1000 + std::uint64_t(t)));
  std::vector<std::vector<float>> expected;
  for (const auto& set : sets) expected.push_back(embed_all(*model, set));
  for (int round = 0; round < 5; ++round) {
    std::vector<std::vector<float>> got(sets.size());
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < sets.size(); ++t) {
      got[t].resize(sets[t].size() * std::size_t(dim));
      threads.emplace_back(
          [&, t] { model->embed_preprocessed(sets[t].inputs.data(), sets[t].size(), got[t].data()); });
    }
    for (auto& thread : threads) thread.join();
    for (std::size_t t = 0; t < sets.size(); ++t)
      for (std::size_t i = 0; i < got[t].size(); ++i)
        ASSERT_NEAR(got[t][i], expected[t][i], 1e-6)
            << "round " << round << " thread " << t << " value " << i;
  }
}

// ---- concurrency ----

TEST(EmbedConcurrency, TwoThreadsAtOnceGiveTheSameResultsAsSequentialCalls) {
  auto model = load_model(trained_model(1));
  const int dim = model->info().dim;
  const LabelledSet a = synthetic_set(48, 400);
  const LabelledSet b = synthetic_set(48, 500);
  auto expected_a = embed_all(*model, a);
  auto expected_b = embed_all(*model, b);

  for (int round = 0; round < 5; ++round) {
    std::vector<float> out_a(a.size() * dim), out_b(b.size() * dim);
    std::thread ta([&] { model->embed_preprocessed(a.inputs.data(), a.size(), out_a.data()); });
    std::thread tb([&] { model->embed_preprocessed(b.inputs.data(), b.size(), out_b.data()); });
    ta.join();
    tb.join();
    for (std::size_t i = 0; i < out_a.size(); ++i) {
      ASSERT_NEAR(out_a[i], expected_a[i], 1e-5) << "round " << round << " value " << i;
      ASSERT_NEAR(out_b[i], expected_b[i], 1e-5) << "round " << round << " value " << i;
    }
  }
}

// ---- fused models ----

class FusedModel : public ::testing::Test {
 protected:
  void expect_refused(const std::vector<FusedPart>& parts, const std::string& named,
                      const std::string& context) {
    auto e = error_from([&] { write_fused_model(parts, out_); });
    ASSERT_TRUE(e) << context << ": accepted";
    EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput) << context << ": " << e->what();
    EXPECT_TRUE(contains(e->what(), named)) << context << ": " << e->what();
    EXPECT_FALSE(fs::exists(out_)) << context;
  }

  void expect_invalid_file(const std::string& context) {
    auto e = error_from([&] { load_model(out_); });
    ASSERT_TRUE(e) << context << ": accepted";
    EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput) << context << ": " << e->what();
    EXPECT_TRUE(contains(e->what(), out_.string())) << context << ": " << e->what();
  }

  double cosine(const std::vector<float>& v, std::size_t i, std::size_t j, int dim) {
    double dot = 0;
    for (int k = 0; k < dim; ++k) dot += double(v[i * dim + k]) * v[j * dim + k];
    return dot;
  }

  TempDir dir_;
  fs::path out_ = dir_ / "fused.lkm";
};

TEST_F(FusedModel, SimilarityIsTheWeightedMeanOfThePartsSimilarities) {
  write_fused_model({{trained_model(1), 3}, {trained_model(2), 1}}, out_);
  auto fused = load_model(out_);
  auto a = load_model(trained_model(1));
  auto b = load_model(trained_model(2));
  const int da = a->info().dim, db = b->info().dim, d = fused->info().dim;
  ASSERT_EQ(d, da + db);
  EXPECT_EQ(fused->info().identity().rfind("fused/1/", 0), 0u) << fused->info().identity();
  ASSERT_EQ(fused->info().parts.size(), 2u);
  EXPECT_EQ(fused->info().parts[0], a->info().identity() + " weight 3 exact 3");
  EXPECT_EQ(fused->info().parts[1], b->info().identity() + " weight 1 exact 1");
  EXPECT_TRUE(a->info().parts.empty());

  const LabelledSet set = synthetic_set(30, 700);
  auto vf = embed_all(*fused, set), va = embed_all(*a, set), vb = embed_all(*b, set);
  for (std::size_t i = 0; i < set.size(); ++i) {
    EXPECT_NEAR(norm(&vf[i * d], d), 1.0, 1e-5);
    for (int k = 0; k < da; ++k) ASSERT_NEAR(vf[i * d + k], std::sqrt(0.75) * va[i * da + k], 1e-5);
    for (int k = 0; k < db; ++k) ASSERT_NEAR(vf[i * d + da + k], std::sqrt(0.25) * vb[i * db + k], 1e-5);
  }
  for (std::size_t i = 0; i + 1 < set.size(); ++i) {
    const double expected = 0.75 * cosine(va, i, i + 1, da) + 0.25 * cosine(vb, i, i + 1, db);
    EXPECT_NEAR(cosine(vf, i, i + 1, d), expected, 1e-5);
  }

  // Other weights are another model: vectors of the two must not be compared.
  write_fused_model({{trained_model(1), 1}, {trained_model(2), 1}}, dir_ / "even.lkm");
  EXPECT_NE(load_model(dir_ / "even.lkm")->info().identity(), fused->info().identity());
}

// Exact weights re-weight the query only: the catalog's vectors stay those of the
// weights, and a query weighted for exact matches meets them with the exact weights'
// mean of the parts' similarities; a similar match, or a model without exact
// weights, leaves the query as it is.
TEST_F(FusedModel, ExactWeightsReweightTheQueryToTheirMeanOfThePartsSimilarities) {
  FusedPart first{trained_model(1), 3}, second{trained_model(2), 1};
  first.exact_weight = 1;
  second.exact_weight = 4;
  write_fused_model({first, second}, out_);
  auto fused = load_model(out_);
  auto a = load_model(trained_model(1));
  auto b = load_model(trained_model(2));
  const int da = a->info().dim, db = b->info().dim, d = fused->info().dim;
  EXPECT_EQ(fused->info().parts[0], a->info().identity() + " weight 3 exact 1");
  EXPECT_EQ(fused->info().parts[1], b->info().identity() + " weight 1 exact 4");

  const LabelledSet set = synthetic_set(20, 900);
  auto catalog = embed_all(*fused, set), va = embed_all(*a, set), vb = embed_all(*b, set);
  auto queries = catalog;
  fused->weight_queries(Match::kSimilar, queries.data(), set.size());
  EXPECT_EQ(queries, catalog);
  fused->weight_queries(Match::kExact, queries.data(), set.size());
  for (std::size_t i = 0; i + 1 < set.size(); ++i) {
    double dot = 0;
    for (int k = 0; k < d; ++k) dot += double(queries[i * d + k]) * catalog[(i + 1) * d + k];
    const double expected = 0.2 * cosine(va, i, i + 1, da) + 0.8 * cosine(vb, i, i + 1, db);
    EXPECT_NEAR(dot, expected, 1e-5);
  }

  // An exact weight of 0 leaves the part out of exact matches.
  first.exact_weight = 0;
  write_fused_model({first, second}, dir_ / "instance-only.lkm");
  auto instance_only = load_model(dir_ / "instance-only.lkm");
  queries = embed_all(*instance_only, set);
  instance_only->weight_queries(Match::kExact, queries.data(), set.size());
  for (std::size_t i = 0; i < set.size(); ++i) {
    for (int k = 0; k < da; ++k) ASSERT_EQ(queries[i * d + k], 0.f);
  }
  // Embedding exact queries skips that part and gives the same weighted rows; a
  // similar query still runs every part.
  std::vector<float> skipped(queries.size());
  instance_only->embed_queries(Match::kExact, set.inputs.data(), set.size(), skipped.data());
  instance_only->weight_queries(Match::kExact, skipped.data(), set.size());
  for (std::size_t j = 0; j < queries.size(); ++j) ASSERT_NEAR(skipped[j], queries[j], 1e-6) << j;
  instance_only->embed_queries(Match::kSimilar, set.inputs.data(), set.size(), skipped.data());
  EXPECT_EQ(skipped, embed_all(*instance_only, set));

  // Without exact weights, exact matches are the similar ones.
  write_fused_model({{trained_model(1), 3}, {trained_model(2), 1}}, dir_ / "plain.lkm");
  auto plain = load_model(dir_ / "plain.lkm");
  auto plain_queries = embed_all(*plain, set);
  const auto before = plain_queries;
  plain->weight_queries(Match::kExact, plain_queries.data(), set.size());
  EXPECT_EQ(plain_queries, before);
  a->weight_queries(Match::kExact, va.data(), set.size());
  EXPECT_EQ(va, embed_all(*a, set));

  EXPECT_EQ(parse_match("exact"), Match::kExact);
  EXPECT_EQ(parse_match("similar"), Match::kSimilar);
  auto e = error_from([] { parse_match("Exact"); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput);
  EXPECT_TRUE(contains(e->what(), "\"Exact\"")) << e->what();
}

TEST_F(FusedModel, PartsOfEveryFormatLoadFromTheOneFile) {
  export_onnx(trained_model(1), dir_ / "part.onnx");
  export_torchscript(trained_model(1), dir_ / "part.pt");
  write_fused_model({{trained_model(1), 1}, {dir_ / "part.onnx", 1}, {dir_ / "part.pt", 2}}, out_);
  // The parts are inside: the fused file works without them.
  fs::remove(dir_ / "part.onnx");
  fs::remove(dir_ / "part.pt");
  auto fused = load_model(out_);
  auto native = load_model(trained_model(1));
  const int d = native->info().dim;
  ASSERT_EQ(fused->info().dim, 3 * d);
  const LabelledSet set = synthetic_set(12, 800);
  auto vf = embed_all(*fused, set), vn = embed_all(*native, set);
  const double scales[] = {0.5, 0.5, std::sqrt(0.5)};
  for (std::size_t i = 0; i < set.size(); ++i) {
    for (int p = 0; p < 3; ++p) {
      for (int k = 0; k < d; ++k) {
        ASSERT_NEAR(vf[i * 3 * d + p * d + k], scales[p] * vn[i * d + k], 1e-4) << "part " << p;
      }
    }
  }
}

TEST_F(FusedModel, BadPartsAreRefusedNamingThem) {
  const fs::path one = trained_model(1), two = trained_model(2);
  expect_refused({{one, 1}}, "2 to 8 parts", "one part");
  expect_refused(std::vector<FusedPart>(kMaxFusedParts + 1, FusedPart{one, 1}), "2 to 8 parts", "nine parts");
  for (double weight : {0.0, -1.0, std::nan("")}) {
    expect_refused({{one, 1}, {two, weight}}, two.string(), "weight " + std::to_string(weight));
  }
  auto missing = error_from([&] { write_fused_model({{one, 1}, {dir_ / "absent.lkm", 1}}, out_); });
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->kind(), ErrorKind::kNotFound);
  EXPECT_TRUE(contains(missing->what(), "absent.lkm")) << missing->what();

  for (double exact : {-1.0, std::nan("")}) {
    FusedPart bad{two, 1};
    bad.exact_weight = exact;
    expect_refused({{one, 1}, bad}, two.string(), "exact weight " + std::to_string(exact));
  }
  FusedPart none_a{one, 1}, none_b{two, 1};
  none_a.exact_weight = 0;
  none_b.exact_weight = 0;
  expect_refused({none_a, none_b}, "exact weight 0", "every exact weight 0");

  write_bytes(dir_ / "junk.lkm", Bytes{'j', 'u', 'n', 'k'});
  expect_refused({{one, 1}, {dir_ / "junk.lkm", 1}}, "junk.lkm", "a part that is no model");

  write_fused_model({{one, 1}, {two, 1}}, dir_ / "inner.lkm");
  expect_refused({{one, 1}, {dir_ / "inner.lkm", 1}}, "inner.lkm", "a fused part");

  // A part that preprocesses differently (another mean) cannot share the input.
  export_torchscript(one, dir_ / "plain.pt");
  auto config = nlohmann::json::parse(exported_config(dir_ / "plain.pt"));
  config["input"]["mean"] = {0.5};
  package_torchscript(dir_ / "plain.pt", config.dump(), dir_ / "shifted.pt");
  expect_refused({{one, 1}, {dir_ / "shifted.pt", 1}}, "shifted.pt", "another input");
}

TEST_F(FusedModel, DamagedOrInconsistentFileIsRefusedNamingIt) {
  write_fused_model({{trained_model(1), 1}, {trained_model(2), 1}}, out_);
  const Bytes good = read_bytes(out_);
  for (std::size_t size : {std::size_t(7), std::size_t(40), good.size() / 2, good.size() - 1}) {
    write_bytes(out_, Bytes(good.begin(), good.begin() + static_cast<long>(size)));
    expect_invalid_file("truncated to " + std::to_string(size));
  }
  for (std::size_t at : {std::size_t(20), good.size() / 3, good.size() - 40}) {
    Bytes damaged = good;
    damaged[at] ^= 0x01;
    write_bytes(out_, damaged);
    expect_invalid_file("byte " + std::to_string(at) + " changed");
  }

  // Valid envelopes with wrong contents: the checks behind the checksum.
  write_bytes(out_, good);
  const std::string magic("LKFUSED", 8);
  auto file = read_container_file(out_, magic, 1, 1 << 30, "model file");
  const std::string payload(file.payload.begin(), file.payload.end());
  const auto header = nlohmann::json::parse(file.header);
  auto rewrite = [&](const nlohmann::json& h, const std::string& p, const std::string& context) {
    write_container_file(out_, magic, 1, h.dump(), p);
    expect_invalid_file(context);
  };
  rewrite(header, payload + "x", "bytes after the last part");
  rewrite(header, payload.substr(0, payload.size() - 10), "payload shorter than the parts");
  auto h = header;
  h["parts"][1]["identity"] = "selfsup-cnn/1/28x28x1/d32/0000000000000000";
  rewrite(h, payload, "part identity not the recorded one");
  h = header;
  h["parts"][0]["format"] = "fused";
  rewrite(h, payload, "a fused part");
  h = header;
  h["parts"][0]["weight"] = 0;
  rewrite(h, payload, "weight 0");
  h = header;
  h["parts"][0]["exact_weight"] = -1;
  rewrite(h, payload, "exact weight -1");
  h["parts"][0]["exact_weight"] = 0;
  h["parts"][1]["exact_weight"] = 0;
  rewrite(h, payload, "every exact weight 0");
  h = header;
  h["parts"].erase(1);
  rewrite(h, payload.substr(0, header["parts"][0]["bytes"].get<std::size_t>()), "one part");
  rewrite(nlohmann::json::array(), payload, "header not an object");
}

TEST(EmbedConcurrency, EmptyBatchWritesNothing) {
  auto model = load_model(trained_model(1));
  float sentinel = 42.f;
  model->embed_preprocessed(nullptr, 0, &sentinel);
  EXPECT_EQ(sentinel, 42.f);
}

}  // namespace
}  // namespace embed
}  // namespace lookalike
