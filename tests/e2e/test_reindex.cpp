// Model switches (Engine::reindex, rollback) on a real 1,000-product catalog:
// searches running during a switch never fail and never mix models, the switch
// survives a reopen, the previous model comes back without re-embedding, and a
// bad model file is refused while the active model keeps serving.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "common/files.h"
#include "search/engine.h"
#include "support/demo_fixture.h"
#include "support/test_support.h"

namespace lookalike::search {
namespace {

namespace fs = std::filesystem;
using lookalike::testing::contains;
using lookalike::testing::error_from;
using lookalike::testing::TempDir;

constexpr std::size_t kProducts = 1000;
constexpr int kK = 5;

class Reindex : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new TempDir();
    lookalike::testing::write_small_demo(root_->path() / "demo", kProducts);
    // What each model answers, from folders that only ever had that model.
    queries_ = new std::vector<image::Image>();
    for (int i = 0; i < 16; ++i) {
      queries_->push_back(image::load_file(Photo(i * 61), image::DecodeLimits{}));
    }
    expected_ = new std::map<std::string, std::vector<QueryResult>>();
    for (const std::string& model : {shipped_model_path().string(), std::string(kPixelsModel)}) {
      auto engine = Open(root_->path() / ("only-" + fs::path(model).stem().string()), model);
      engine->ingest(Catalog(), {});
      auto results = engine->search(*queries_, kK, false);
      (*expected_)[results.front().model] = results;
    }
  }
  static void TearDownTestSuite() {
    delete expected_;
    delete queries_;
    delete root_;
  }

  static fs::path Catalog() { return root_->path() / "demo" / "catalog.jsonl"; }
  static fs::path Photo(int i) {
    char name[16];
    std::snprintf(name, sizeof name, "%05d.png", i);
    return root_->path() / "demo" / "images" / name;
  }
  static std::unique_ptr<Engine> Open(const fs::path& dir, const std::string& model = "") {
    OpenOptions options;
    options.model = model;
    return Engine::open(dir, options);
  }
  static std::string Identity(const std::string& model) {
    for (const auto& [identity, results] : *expected_) {
      if (contains(identity, model)) return identity;
    }
    return "";
  }

  // Empty when result is exactly what the model it names answers on its own (same
  // products, same scores), else what differs.
  static std::string Check(const QueryResult& result, std::size_t query) {
    if (!result.error.empty()) return "error: " + result.error;
    auto it = expected_->find(result.model);
    if (it == expected_->end()) return "unknown model " + result.model;
    const auto& want = it->second[query].hits;
    if (want.size() != result.hits.size()) return "wrong number of hits for " + result.model;
    for (std::size_t i = 0; i < want.size(); ++i) {
      if (want[i].product_id != result.hits[i].product_id ||
          std::abs(want[i].score - result.hits[i].score) > 1e-4) {
        return "hit " + std::to_string(i) + " is " + result.hits[i].product_id + " " +
               std::to_string(result.hits[i].score) + ", model " + result.model + " alone gives " +
               want[i].product_id + " " + std::to_string(want[i].score);
      }
    }
    return "";
  }

  static TempDir* root_;
  static std::vector<image::Image>* queries_;
  static std::map<std::string, std::vector<QueryResult>>* expected_;
};

TempDir* Reindex::root_ = nullptr;
std::vector<image::Image>* Reindex::queries_ = nullptr;
std::map<std::string, std::vector<QueryResult>>* Reindex::expected_ = nullptr;

TEST_F(Reindex, SearchesDuringASwitchNeverFailNorMixModelsAndRollbackRestores) {
  ASSERT_EQ(expected_->size(), 2u);
  const std::string cnn = Identity("fused/"), pixels = Identity("pixels");
  const fs::path dir = root_->path() / "switch";
  auto engine = Open(dir);
  engine->ingest(Catalog(), {});
  ASSERT_EQ(engine->info().model, cnn);
  EXPECT_EQ(engine->info().previous_model, "");

  std::atomic<bool> stop{false};
  std::atomic<int> searches{0};
  std::map<std::string, int> seen[2];
  std::vector<std::string> problems[2];
  std::vector<std::thread> searchers;
  for (int t = 0; t < 2; ++t) {
    searchers.emplace_back([&, t] {
      while (!stop) {
        auto results = engine->search(*queries_, kK, false);
        for (std::size_t q = 0; q < results.size(); ++q) {
          ++seen[t][results[q].model];
          std::string problem = Check(results[q], q);
          if (!problem.empty() && problems[t].size() < 5) problems[t].push_back(problem);
          // One batch is embedded and searched with one model.
          if (results[q].model != results.front().model) problems[t].push_back("a batch mixed models");
        }
        ++searches;
      }
    });
  }
  while (searches < 4) std::this_thread::yield();
  ReindexOptions options;
  std::vector<std::size_t> progress;
  // Slows the switch down a little so that searches run during every stage of it.
  options.on_progress = [&](std::size_t done, std::size_t total) {
    EXPECT_TRUE(engine->reindex_progress().running);
    EXPECT_EQ(total, kProducts);
    progress.push_back(done);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  };
  ReindexReport report = engine->reindex(kPixelsModel, options);
  const int at_switch = searches;
  while (searches < at_switch + 4) std::this_thread::yield();
  stop = true;
  for (auto& t : searchers) t.join();

  for (int t = 0; t < 2; ++t) EXPECT_TRUE(problems[t].empty()) << problems[t].front();
  EXPECT_GT(seen[0][cnn] + seen[1][cnn], 0);
  EXPECT_GT(seen[0][pixels] + seen[1][pixels], 0);
  EXPECT_EQ(report.from, cnn);
  EXPECT_EQ(report.to, pixels);
  EXPECT_EQ(report.images, kProducts);
  EXPECT_EQ(report.embedded, kProducts);
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back(), kProducts);
  EXPECT_FALSE(engine->reindex_progress().running);
  EXPECT_EQ(engine->info().model, pixels);
  EXPECT_EQ(engine->info().previous_model, cnn);
  for (std::size_t q = 0; q < queries_->size(); ++q) {
    auto result = engine->search({(*queries_)[q]}, kK, false).front();
    EXPECT_EQ(result.model, pixels);
    EXPECT_EQ(Check(result, q), "");
  }

  // The switch is on disk: a reopened folder serves the new model.
  engine.reset();
  engine = Open(dir);
  EXPECT_EQ(engine->info().model, pixels);
  EXPECT_EQ(Check(engine->search({queries_->front()}, kK, false).front(), 0), "");

  // Rollback re-embeds nothing: the previous model's vectors were kept.
  report = engine->rollback({});
  EXPECT_EQ(report.to, cnn);
  EXPECT_EQ(report.embedded, 0u);
  EXPECT_EQ(report.reused, kProducts);
  EXPECT_EQ(engine->info().model, cnn);
  EXPECT_EQ(engine->info().previous_model, pixels);
  for (std::size_t q = 0; q < queries_->size(); ++q) {
    auto result = engine->search({(*queries_)[q]}, kK, false).front();
    EXPECT_EQ(result.model, cnn);
    EXPECT_EQ(Check(result, q), "");
  }
  engine.reset();
  engine = Open(dir);
  EXPECT_EQ(engine->info().model, cnn);
  // "More like this" reads stored vectors: they are the restored model's.
  auto similar = engine->similar_products("fm-00061", kK, false);
  EXPECT_EQ(similar.model, cnn);
  EXPECT_EQ(similar.hits.size(), std::size_t(kK));
}

TEST_F(Reindex, ProductsImportedDuringTheSwitchAreEmbeddedWithTheNewModel) {
  const fs::path dir = root_->path() / "imports";
  auto engine = Open(dir);
  // The first half now, the second half while the switch runs.
  const std::string text = lookalike::testing::read_text(Catalog());
  std::string first, second;
  std::size_t line = 0;
  for (std::size_t pos = 0; pos < text.size();) {
    std::size_t end = text.find('\n', pos);
    end = end == std::string::npos ? text.size() : end + 1;
    (line++ < kProducts / 2 ? first : second) += text.substr(pos, end - pos);
    pos = end;
  }
  lookalike::testing::write_text(root_->path() / "demo" / "first.jsonl", first);
  lookalike::testing::write_text(root_->path() / "demo" / "second.jsonl", second);
  engine->ingest(root_->path() / "demo" / "first.jsonl", {});
  std::thread importer;
  ReindexOptions options;
  options.on_progress = [&](std::size_t, std::size_t) {
    if (!importer.joinable()) {
      importer = std::thread([&] { engine->ingest(root_->path() / "demo" / "second.jsonl", {}); });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  };
  ReindexReport report = engine->reindex(kPixelsModel, options);
  importer.join();
  // Whenever the import landed, every product is searchable with the new model.
  EXPECT_EQ(engine->info().embedded, std::int64_t(kProducts));
  EXPECT_EQ(engine->info().index_vectors, kProducts);
  for (std::size_t q = 0; q < queries_->size(); ++q) {
    EXPECT_EQ(Check(engine->search({(*queries_)[q]}, kK, false).front(), q), "");
  }
  EXPECT_EQ(report.to, Identity("pixels"));
}

TEST_F(Reindex, CorruptOrForeignModelFilesAreRefusedAndTheActiveModelKeepsServing) {
  const fs::path dir = root_->path() / "refuse";
  auto engine = Open(dir);
  engine->ingest(Catalog(), {});
  const std::string cnn = Identity("fused/");
  auto bytes = read_file(shipped_model_path(), std::size_t(1) << 30);

  auto flipped = bytes;
  flipped[flipped.size() / 2] ^= 0x40;
  const fs::path corrupt = root_->path() / "corrupt.lkm";
  write_file_atomic(corrupt, flipped.data(), flipped.size());
  const fs::path truncated = root_->path() / "truncated.lkm";
  write_file_atomic(truncated, bytes.data(), bytes.size() / 3);
  const fs::path text = root_->path() / "notes.lkm";
  lookalike::testing::write_text(text, "this is not a model\n");

  for (const fs::path& bad : {corrupt, truncated, text, root_->path() / "absent.lkm"}) {
    auto err = error_from([&] { engine->reindex(bad.string(), {}); });
    ASSERT_TRUE(err) << bad;
    EXPECT_TRUE(contains(err->what(), bad.filename().string()))
        << "the message should name the file: " << err->what();
    EXPECT_EQ(engine->info().model, cnn);
    EXPECT_EQ(Check(engine->search({queries_->front()}, kK, false).front(), 0), "");
  }
  // Opening the folder with another model names both and says how to switch.
  engine.reset();
  auto err = error_from([&] { Open(dir, kPixelsModel); });
  ASSERT_TRUE(err);
  EXPECT_EQ(err->kind(), ErrorKind::kModelMismatch);
  EXPECT_TRUE(contains(err->what(), "pixels")) << err->what();
  EXPECT_TRUE(contains(err->what(), "fused/")) << err->what();
  EXPECT_TRUE(contains(err->what(), "reindex")) << err->what();
  // Nothing to roll back to yet.
  engine = Open(dir);
  err = error_from([&] { engine->rollback({}); });
  ASSERT_TRUE(err);
  EXPECT_EQ(err->kind(), ErrorKind::kNotFound);
  EXPECT_TRUE(contains(err->what(), "previous model")) << err->what();
}

TEST_F(Reindex, AnImageChangedOnDiskStopsTheSwitchWithItsNameAndNothingChanges) {
  const fs::path folder = root_->path() / "changed";
  fs::create_directories(folder / "images");
  std::string catalog;
  for (int i = 0; i < 3; ++i) {
    fs::copy_file(Photo(i), folder / "images" / Photo(i).filename());
    catalog += "{\"id\": \"p" + std::to_string(i) + "\", \"images\": [\"images/" +
               Photo(i).filename().string() + "\"]}\n";
  }
  lookalike::testing::write_text(folder / "catalog.jsonl", catalog);
  auto engine = Open(folder / "data");
  engine->ingest(folder / "catalog.jsonl", {});
  fs::copy_file(Photo(500), folder / "images" / Photo(1).filename(), fs::copy_options::overwrite_existing);
  auto err = error_from([&] { engine->reindex(kPixelsModel, {}); });
  ASSERT_TRUE(err);
  EXPECT_TRUE(contains(err->what(), Photo(1).filename().string())) << err->what();
  EXPECT_TRUE(contains(err->what(), "changed")) << err->what();
  EXPECT_TRUE(contains(engine->reindex_progress().last_error, "changed"));
  EXPECT_FALSE(engine->reindex_progress().running);
  EXPECT_EQ(engine->info().model, Identity("fused/"));
  EXPECT_EQ(engine->search({queries_->front()}, 3, false).front().hits.size(), 3u);
}

}  // namespace
}  // namespace lookalike::search
