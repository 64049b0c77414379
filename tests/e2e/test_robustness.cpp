// The distortion suite (search/robustness.h) on a small real catalog: 500
// Fashion-MNIST products ingested with the shipped model and with raw pixels.
// It checks that the suite measures what it claims (raw pixels survive the
// photometric distortions and fail the geometric ones, as pixels must), and
// holds the shipped models to floors at their measured level, above raw pixels
// where they are above them. The target (Recall@1 >= 0.95 over the suite
// on 60,000 products) is not met yet; README "Instance robustness" has the figures.
#include <gtest/gtest.h>

#include <iostream>
#include <map>
#include <string>

#include "search/engine.h"
#include "search/robustness.h"
#include "support/demo_fixture.h"
#include "support/test_support.h"

namespace lookalike::search {
namespace {

namespace fs = std::filesystem;
using lookalike::testing::TempDir;

constexpr std::size_t kProducts = 500;
constexpr std::size_t kItems = 300;

class Robustness : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new TempDir();
    lookalike::testing::write_small_demo(root_->path() / "demo", kProducts);
  }
  static void TearDownTestSuite() {
    delete root_;
    root_ = nullptr;
  }

  // Ingests the demo catalog with model (once per model and test process) and runs
  // the whole suite on it, once per match (the tests share the raw-pixel run).
  static RobustnessReport Run(const std::string& model, embed::Match match = embed::Match::kExact) {
    static std::map<std::pair<std::string, embed::Match>, RobustnessReport> done;
    if (auto it = done.find({model, match}); it != done.end()) return it->second;
    OpenOptions open;
    open.model = model;
    const fs::path data = root_->path() / ("data-" + fs::path(model).stem().string());
    const bool fresh = !fs::exists(data);
    auto engine = Engine::open(data, open);
    if (fresh) {
      IngestReport ingested = engine->ingest(root_->path() / "demo" / "catalog.jsonl", {});
      EXPECT_EQ(ingested.products_added, kProducts);
    }
    RobustnessOptions options;
    options.items = kItems;
    options.seed = 1;
    options.match = match;
    return done[{model, match}] = evaluate_robustness(*engine, options);
  }

  static std::map<std::string, RobustnessRow> ByName(const RobustnessReport& report) {
    std::map<std::string, RobustnessRow> rows;
    for (const auto& row : report.rows) rows[row.distortion] = row;
    return rows;
  }

  static TempDir* root_;
};

TempDir* Robustness::root_ = nullptr;

void Print(const std::string& name, const RobustnessReport& report) {
  std::cout << "[ suite    ] " << name << ":";
  for (const auto& row : report.rows) std::cout << " " << row.distortion << " " << row.recall_at_1;
  std::cout << "; overall R@1 " << report.overall.recall_at_1 << " R@10 " << report.overall.recall_at_10
            << "\n";
}

TEST_F(Robustness, SuiteSeparatesEasyFromHardAndShippedModelHoldsItsFloors) {
  const RobustnessReport pixels = Run(kPixelsModel, embed::Match::kSimilar);
  const RobustnessReport exact = Run(shipped_model_path().string());
  const RobustnessReport by_look = Run(shipped_model_path().string(), embed::Match::kSimilar);
  Print("raw pixels", pixels);
  Print("shipped model, exact match", exact);
  Print("shipped model, similar match", by_look);

  for (const auto* report : {&pixels, &exact, &by_look}) {
    EXPECT_EQ(report->items, kItems);
    EXPECT_EQ(report->unreadable, 0u);
    ASSERT_EQ(report->rows.size(), image::suite_distortions().size() + 1);  // + the control
    EXPECT_EQ(report->rows.front().distortion, "none");
    EXPECT_EQ(report->overall.queries, kItems * image::suite_distortions().size());
  }

  // The suite is calibrated: raw pixels, one view of the photo (a search by look),
  // find the undistorted photo and survive sensor noise, JPEG and gamma; a rotation
  // or a cluttered table defeats them.
  auto px = ByName(pixels);
  EXPECT_EQ(px["none"].recall_at_1, 1.0);
  for (const char* easy : {"noise", "jpeg", "gamma", "blur"}) EXPECT_GE(px[easy].recall_at_1, 0.9) << easy;
  for (const char* hard : {"rotation", "clutter", "printed-page"})
    EXPECT_LE(px[hard].recall_at_1, 0.2) << hard;

  // The shipped default model searched for the exact product (its exact weights:
  // the self-supervised part alone, with the query views) measured here 0.955 overall Recall@1 and 0.995
  // Recall@10; by look (the category part's half pulls toward look-alikes) 0.724 and
  // 0.810. Floors a little below, so that a regression fails here. Recall@10 is what
  // a shopper sees: the product on the first screen of results.
  auto net = ByName(exact);
  EXPECT_GE(exact.overall.recall_at_1, 0.92);
  EXPECT_GE(exact.overall.recall_at_10, 0.98);
  EXPECT_GE(net["none"].recall_at_1, 0.98);
  for (const char* geometric : {"crop", "rotation", "perspective", "mirror"}) {
    EXPECT_GE(net[geometric].recall_at_1, px[geometric].recall_at_1 + 0.5) << geometric;
  }
  EXPECT_GE(by_look.overall.recall_at_1, 0.65);
  EXPECT_GE(by_look.overall.recall_at_10, 0.75);
  EXPECT_GE(exact.overall.recall_at_1, by_look.overall.recall_at_1 + 0.1);
}

// models/fashion-selfsup.lkm, trained without labels (`train --self-supervised`,
// README "Self-supervised training"), must find exact products far more often than
// raw pixels, above all where pixels fail: geometry and the mirror.
TEST_F(Robustness, SelfSupervisedModelFindsExactProductsFarMoreOftenThanRawPixels) {
  const RobustnessReport pixels = Run(kPixelsModel, embed::Match::kSimilar);
  const RobustnessReport selfsup =
      Run((fs::path(LOOKALIKE_SOURCE_DIR) / "models" / "fashion-selfsup.lkm").string());
  Print("raw pixels", pixels);
  Print("self-supervised model", selfsup);
  auto px = ByName(pixels);
  auto ss = ByName(selfsup);
  // Measured here: overall Recall@1 0.958 (raw pixels 0.522), Recall@10 0.997; crop
  // 0.90, rotation 0.96, perspective 0.96, mirror 1.0 (raw pixels 0.06, 0.07, 0.05,
  // 0.42). Floors a little below.
  EXPECT_GE(ss["none"].recall_at_1, 0.98);
  EXPECT_GE(selfsup.overall.recall_at_1, 0.92);
  EXPECT_GE(selfsup.overall.recall_at_10, 0.98);
  EXPECT_GE(selfsup.overall.recall_at_1, pixels.overall.recall_at_1 + 0.35);
  for (const char* geometric : {"crop", "rotation", "perspective", "mirror"}) {
    EXPECT_GE(ss[geometric].recall_at_1, px[geometric].recall_at_1 + 0.5) << geometric;
  }
}

// An exact-item search also tries the photo tilted both ways, and its item cropped
// out of a plain background and keystone views or, on a busy one, windows over the
// photo (image/views.h), each at a handicap. The self-supervised model has no exact
// weights, so its two matches differ by the views alone: tilted and angled photos
// and items on a cluttered table must come back more often, and the views' extra chances for wrong
// products must not cost the suite as a whole.
TEST_F(Robustness, ExactSearchViewsFindTiltedAndClutteredPhotosWithoutCostingTheRest) {
  const std::string model = (fs::path(LOOKALIKE_SOURCE_DIR) / "models" / "fashion-selfsup.lkm").string();
  const RobustnessReport views = Run(model);
  const RobustnessReport one_view = Run(model, embed::Match::kSimilar);
  Print("self-supervised model, exact (views)", views);
  Print("self-supervised model, similar (one view)", one_view);
  auto with = ByName(views);
  auto without = ByName(one_view);
  // Measured here: rotation 1.0 with the views, 0.96 without; perspective 0.993 and
  // 0.96; clutter 0.937 and 0.75; overall Recall@1 0.974 and 0.958, Recall@10 0.9984
  // and 0.9969 (on 60,000 products the views lift this model's rotation, perspective
  // and clutter far more: README "Instance robustness").
  EXPECT_GT(with["rotation"].recall_at_1, without["rotation"].recall_at_1);
  EXPECT_GE(with["rotation"].recall_at_1, 0.99);
  EXPECT_GT(with["perspective"].recall_at_1, without["perspective"].recall_at_1);
  EXPECT_GE(with["clutter"].recall_at_1, without["clutter"].recall_at_1 + 0.1);
  EXPECT_GE(with["none"].recall_at_1, without["none"].recall_at_1);
  EXPECT_GE(views.overall.recall_at_1, one_view.overall.recall_at_1);
  EXPECT_GE(views.overall.recall_at_10, one_view.overall.recall_at_10 - 0.002);
}

}  // namespace
}  // namespace lookalike::search
