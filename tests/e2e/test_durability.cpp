// End-to-end durability: damaged files at start, a full disk during an import, and
// snapshots taken while the folder is being written, then restored. Each test runs
// the real binary on a data folder of 200 demo products made with the shipped model.
// (Kill -9 during writes is the crash harness, tests/crash, run as e2e_crash_short.)
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/time.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "catalog/product.h"
#include "search/demo_catalog.h"
#include "search/engine.h"
#include "support/test_support.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using lookalike::testing::describe;
using lookalike::testing::Outcome;
using lookalike::testing::read_text;
using lookalike::testing::TempDir;

constexpr std::size_t kBase = 200;  // products in the base folder
constexpr std::size_t kMore = 100;  // further products, for imports during the tests

Outcome run(const std::vector<std::string>& args, const std::function<void()>& in_child = {}) {
  std::vector<std::string> argv{LOOKALIKE_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return lookalike::testing::run_program(argv, in_child);
}

std::vector<std::uint8_t> read_bytes(const fs::path& path) {
  std::string text = read_text(path);
  return std::vector<std::uint8_t>(text.begin(), text.end());
}

json info_of(const fs::path& data) {
  Outcome r = run({"info", "--data", data.string(), "--json"});
  if (r.status != 0) {
    ADD_FAILURE() << describe(r);
    return json::object();
  }
  return json::parse(r.out);
}

class Durability : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new TempDir();
    const fs::path demo = root_->path() / "demo";
    lookalike::demo::write_demo_catalog(demo,
                                        {.dataset_dir = {}, .max_products = kBase + kMore, .max_queries = 1});
    // first.jsonl: the base; more.jsonl: the rest, for imports during the tests.
    std::ifstream in(demo / "catalog.jsonl");
    std::ofstream first(demo / "first.jsonl"), more(demo / "more.jsonl");
    std::string line;
    for (std::size_t i = 0; std::getline(in, line); ++i) {
      (i < kBase ? first : more) << line << "\n";
      entries_.push_back(lookalike::catalog::parse_json_line(line, {}));
    }
    first.close();
    more.close();
    Outcome r = run({"ingest", "--data", base().string(), "--catalog", (demo / "first.jsonl").string()});
    if (r.status != 0) ADD_FAILURE() << describe(r);
  }
  static void TearDownTestSuite() {
    delete root_;
    entries_.clear();
  }

  static fs::path demo() { return root_->path() / "demo"; }
  static fs::path base() { return root_->path() / "base"; }
  // A fresh copy of the base folder for a test that changes it.
  static fs::path copy_of_base(const std::string& name) {
    fs::path copy = root_->path() / name;
    fs::remove_all(copy);
    fs::copy(base(), copy, fs::copy_options::recursive);
    return copy;
  }

  static TempDir* root_;
  static std::vector<lookalike::catalog::CatalogEntry> entries_;
};

TempDir* Durability::root_ = nullptr;
std::vector<lookalike::catalog::CatalogEntry> Durability::entries_;

// ---- damaged files at start ----

TEST_F(Durability, DamagedStoreIsRefusedNamingTheFileAndNothingIsChanged) {
  const auto original = read_bytes(base() / "catalog.db");
  ASSERT_GT(original.size(), 40000u);
  const std::vector<std::pair<std::string, std::function<void(const fs::path&)>>> damages = {
      {"emptied", [](const fs::path& f) { fs::resize_file(f, 0); }},
      {"removed", [](const fs::path& f) { fs::remove(f); }},
      {"truncated to a third", [&](const fs::path& f) { fs::resize_file(f, original.size() / 3); }},
      {"pages overwritten",
       [&](const fs::path& f) {
         auto bytes = original;
         for (std::size_t i = 0; i < 3 * 4096; ++i)
           bytes[5 * 4096 + i] = static_cast<std::uint8_t>(i * 31 + 7);
         lookalike::testing::write_bytes(f, bytes);
       }},
      {"header overwritten",
       [&](const fs::path& f) {
         auto bytes = original;
         for (std::size_t i = 0; i < 100; ++i) bytes[i] = 0x5a;
         lookalike::testing::write_bytes(f, bytes);
       }},
  };
  for (const auto& [what, damage] : damages) {
    SCOPED_TRACE("catalog.db " + what);
    fs::path data = copy_of_base("damaged-store");
    damage(data / "catalog.db");
    const auto model = read_bytes(data / "model.lkm");
    const auto index = read_bytes(data / "index.lkx");
    Outcome r = run({"info", "--data", data.string()});
    EXPECT_EQ(r.status, 1) << describe(r);
    EXPECT_NE(r.err.find((data / "catalog.db").string()), std::string::npos) << describe(r);
    EXPECT_NE(r.err.find("restore"), std::string::npos)
        << "the message should say how to recover" << describe(r);
    EXPECT_EQ(r.out, "") << describe(r);
    // Refusing must not "repair" the folder into an empty catalog.
    EXPECT_EQ(read_bytes(data / "model.lkm"), model);
    EXPECT_EQ(read_bytes(data / "index.lkx"), index);
  }
}

TEST_F(Durability, DamagedModelIsRefusedNamingTheFile) {
  const auto original = read_bytes(base() / "model.lkm");
  const std::vector<std::pair<std::string, std::function<void(const fs::path&)>>> damages = {
      {"removed", [](const fs::path& f) { fs::remove(f); }},
      {"emptied", [](const fs::path& f) { fs::resize_file(f, 0); }},
      {"truncated to half", [&](const fs::path& f) { fs::resize_file(f, original.size() / 2); }},
      {"one byte flipped",
       [&](const fs::path& f) {
         auto bytes = original;
         bytes[bytes.size() / 2] ^= 0x10;
         lookalike::testing::write_bytes(f, bytes);
       }},
  };
  for (const auto& [what, damage] : damages) {
    SCOPED_TRACE("model.lkm " + what);
    fs::path data = copy_of_base("damaged-model");
    damage(data / "model.lkm");
    Outcome r =
        run({"search", "--data", data.string(), "--image", (demo() / "images" / "00001.png").string()});
    EXPECT_EQ(r.status, 1) << describe(r);
    EXPECT_NE(r.err.find((data / "model.lkm").string()), std::string::npos) << describe(r);
    EXPECT_EQ(r.out, "") << describe(r);
  }
}

TEST_F(Durability, EmptiedOrHeaderOnlyIndexIsRebuiltFromTheStore) {
  // CliE2E.LostOrCorruptIndexIsRebuiltWithIdenticalResults covers removal, garbage,
  // truncation and a flipped byte; these are the two ends of a torn write.
  for (std::size_t keep : {std::size_t{0}, std::size_t{16}}) {
    SCOPED_TRACE("index.lkx cut to " + std::to_string(keep) + " bytes");
    fs::path data = copy_of_base("damaged-index");
    fs::resize_file(data / "index.lkx", keep);
    Outcome r = run({"info", "--data", data.string(), "--json"});
    ASSERT_EQ(r.status, 0) << describe(r);
    EXPECT_NE(r.err.find("rebuilt the vector index"), std::string::npos) << describe(r);
    EXPECT_NE(r.err.find("index.lkx"), std::string::npos) << describe(r);
    json i = json::parse(r.out);
    EXPECT_EQ(i["index_vectors"], kBase);
    EXPECT_EQ(i["embedded"], kBase);
  }
}

// ---- a killed import ----

// Runs lookalike and ends it with SIGALRM (no handler runs, like kill -9) after ms.
Outcome run_killed_after(const std::vector<std::string>& args, int ms) {
  return run(args, [ms] {
    itimerval timer{};
    timer.it_value.tv_sec = ms / 1000;
    timer.it_value.tv_usec = (ms % 1000) * 1000;
    ::setitimer(ITIMER_REAL, &timer, nullptr);
  });
}

TEST_F(Durability, KilledCliImportKeepsWholeBatchesAndTheIndexAgrees) {
  // 2,000 lines (about four batches of 512) reusing the demo photos under new ids.
  const fs::path big = demo() / "big.jsonl";
  {
    std::ofstream out(big);
    for (std::size_t i = 0; i < 2000; ++i) {
      const auto& p = entries_[i % entries_.size()].product;
      out << json{{"id", "big-" + std::to_string(i)}, {"title", p.title}, {"images", p.images}}.dump()
          << "\n";
    }
  }
  int killed = 0;
  for (int ms : {300, 1200, 2000, 3000}) {
    SCOPED_TRACE("killed after " + std::to_string(ms) + " ms");
    fs::path data = copy_of_base("killed-import");
    Outcome r = run_killed_after({"ingest", "--data", data.string(), "--catalog", big.string()}, ms);
    ASSERT_TRUE(r.status == 0 || r.status == 128 + SIGALRM) << describe(r);
    Outcome info = run({"info", "--data", data.string(), "--json"});
    ASSERT_EQ(info.status, 0) << describe(info);
    json i = json::parse(info.out);
    const std::size_t imported = i["products"].get<std::size_t>() - kBase;
    EXPECT_TRUE(imported % 512 == 0 || imported == 2000) << imported << " products: not whole batches";
    if (r.status == 0) {
      EXPECT_EQ(imported, 2000u) << "an import reported as done is complete";
    } else {
      ++killed;
    }
    EXPECT_EQ(i["images"], kBase + imported);
    EXPECT_EQ(i["embedded"], kBase + imported);
    EXPECT_EQ(i["index_vectors"], kBase + imported) << "the index must agree with the store";
  }
  EXPECT_GT(killed, 0) << "no run was killed before it finished";
}

// ---- a full disk ----

// Runs lookalike with every file it writes limited to max_bytes: writes beyond fail with
// EFBIG, as they would on a full disk (SIGXFSZ is ignored, so the write returns an error).
Outcome run_with_file_limit(const std::vector<std::string>& args, rlim_t max_bytes) {
  return run(args, [max_bytes] {
    ::signal(SIGXFSZ, SIG_IGN);
    rlimit limit{max_bytes, max_bytes};
    ::setrlimit(RLIMIT_FSIZE, &limit);
  });
}

TEST_F(Durability, DiskFullDuringAnImportFailsThatImportAndKeepsEarlierData) {
  fs::path data = copy_of_base("disk-full");
  const json before = info_of(data);
  ASSERT_EQ(before["products"], kBase);
  const fs::path query = demo() / "images" / "00007.png";
  Outcome search_before = run({"search", "--data", data.string(), "--image", query.string(), "--json", "--profile", "visual"});
  ASSERT_EQ(search_before.status, 0) << describe(search_before);

  // 32 KiB: the store's write-ahead log cannot take the import's transaction.
  Outcome r = run_with_file_limit(
      {"ingest", "--data", data.string(), "--catalog", (demo() / "more.jsonl").string()}, 32 * 1024);
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_NE(r.err.find("lookalike: error (io)"), std::string::npos) << describe(r);
  // The file and the consequence, not just "disk I/O error". (A real full disk is
  // SQLite's "database or disk is full"; a file size limit is an I/O error to it.)
  EXPECT_NE(r.err.find("disk"), std::string::npos) << describe(r);
  EXPECT_NE(r.err.find((data / "catalog.db").string()), std::string::npos) << describe(r);
  EXPECT_NE(r.err.find("not stored"), std::string::npos) << describe(r);

  // Nothing of the failed import, everything from before, and the store is sound.
  Outcome after = run({"info", "--data", data.string(), "--json"});
  ASSERT_EQ(after.status, 0) << describe(after);
  EXPECT_EQ(after.err, "") << "no repair should be needed" << describe(after);
  EXPECT_EQ(json::parse(after.out), before);
  Outcome search_after = run({"search", "--data", data.string(), "--image", query.string(), "--json", "--profile", "visual"});
  EXPECT_EQ(search_after.out, search_before.out) << describe(search_after);

  // With space again, the same import goes through.
  Outcome retry = run({"ingest", "--data", data.string(), "--catalog", (demo() / "more.jsonl").string()});
  EXPECT_EQ(retry.status, 0) << describe(retry);
  EXPECT_EQ(info_of(data)["products"], kBase + kMore);
}

TEST_F(Durability, DiskFullWhileSavingTheIndexKeepsTheCommittedImport) {
  fs::path data = copy_of_base("disk-full-index");
  // Five products: their write-ahead log (with the full-text table's pages) fits under
  // the limit, the index of 205 vectors (over 100 KB) does not.
  const fs::path five = root_->path() / "five.jsonl";
  {
    std::ifstream in(demo() / "more.jsonl");
    std::ofstream out(five);
    std::string line;
    for (int i = 0; i < 5 && std::getline(in, line); ++i) out << line << "\n";
  }
  fs::copy_file(five, demo() / "five.jsonl", fs::copy_options::overwrite_existing);
  ASSERT_GT(fs::file_size(data / "index.lkx"), 100000u);
  Outcome r = run_with_file_limit(
      {"ingest", "--data", data.string(), "--catalog", (demo() / "five.jsonl").string()}, 96 * 1024);
  ASSERT_EQ(r.status, 0) << "the import was committed; only the derived index could not be saved"
                         << describe(r);
  EXPECT_NE(r.err.find("could not save the vector index"), std::string::npos) << describe(r);
  EXPECT_NE(r.err.find("index.lkx"), std::string::npos) << describe(r);
  // The next open sees the old index file, rebuilds it from the store, and finds everything.
  Outcome next = run({"info", "--data", data.string(), "--json"});
  ASSERT_EQ(next.status, 0) << describe(next);
  EXPECT_NE(next.err.find("rebuilt the vector index"), std::string::npos) << describe(next);
  json i = json::parse(next.out);
  EXPECT_EQ(i["products"], kBase + 5);
  EXPECT_EQ(i["index_vectors"], kBase + 5);
}

// ---- snapshots ----

TEST_F(Durability, SnapshotsTakenDuringWritesAreConsistentAndRestore) {
  fs::path data = copy_of_base("live");
  // A writer adds the further products one by one, in order, then keeps changing prices,
  // the way a server would while the snapshots are taken from another process.
  std::mutex mutex;
  std::map<std::string, std::set<double>> prices;  // every price committed per product
  for (std::size_t i = 0; i < kBase; ++i) prices[entries_[i].product.id].insert(entries_[i].product.price);
  std::atomic<std::size_t> added{0};
  std::atomic<bool> stop{false};
  std::string writer_error;
  std::thread writer([&] {
    try {
      auto engine = lookalike::search::Engine::open(data, {});
      std::mt19937 rng(5);
      for (std::size_t n = 0; !stop; ++n) {
        lookalike::catalog::CatalogEntry entry;
        if (n < kMore) {
          entry = entries_[kBase + n];
        } else {
          entry = entries_[std::uniform_int_distribution<std::size_t>(0, kBase + kMore - 1)(rng)];
          entry.product.price = std::uniform_int_distribution<int>(100, 99999)(rng) / 100.0;
        }
        {
          std::lock_guard<std::mutex> lock(mutex);
          prices[entry.product.id].insert(entry.product.price);
        }
        engine->apply({entry}, demo(), {});
        if (n < kMore) ++added;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    } catch (const std::exception& e) {
      writer_error = e.what();
    }
  });
  while (added < 10 && writer_error.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::vector<fs::path> snapshots;
  for (int s = 0; s < 3; ++s) {
    fs::path snap = root_->path() / ("snap-" + std::to_string(s));
    fs::remove_all(snap);
    Outcome r = run({"snapshot", "--data", data.string(), "--out", snap.string(), "--json"});
    EXPECT_EQ(r.status, 0) << describe(r);
    snapshots.push_back(snap);
  }
  stop = true;
  writer.join();
  ASSERT_EQ(writer_error, "");

  std::size_t last_count = 0;
  for (const auto& snap : snapshots) {
    SCOPED_TRACE(snap.string());
    // No partial folder is left beside the snapshot.
    for (const auto& entry : fs::directory_iterator(root_->path())) {
      EXPECT_EQ(entry.path().filename().string().find(".partial-"), std::string::npos) << entry.path();
    }
    fs::path restored = root_->path() / ("restored-" + snap.filename().string());
    fs::remove_all(restored);
    Outcome r = run({"restore", "--from", snap.string(), "--data", restored.string()});
    ASSERT_EQ(r.status, 0) << describe(r);
    // The store and the index agree, without a rebuild: the snapshot's index was made for it.
    Outcome info = run({"info", "--data", restored.string(), "--json"});
    ASSERT_EQ(info.status, 0) << describe(info);
    EXPECT_EQ(info.err, "") << describe(info);
    json i = json::parse(info.out);
    const std::size_t count = i["products"];
    EXPECT_EQ(i["images"], count);
    EXPECT_EQ(i["embedded"], count);
    EXPECT_EQ(i["index_vectors"], count);
    EXPECT_GE(count, kBase + 10);
    EXPECT_GE(count, last_count) << "snapshots taken later hold at least as much";
    last_count = count;

    // One committed state: the products added in order form a prefix, each price is
    // one the writer committed, and each product's own photo finds it.
    auto engine = lookalike::search::Engine::open(restored, {});
    auto ids = engine->product_ids();
    ASSERT_EQ(ids.size(), count);
    std::vector<fs::path> photos;
    for (std::size_t n = 0; n < count; ++n) {
      const auto& expected = entries_[n].product;
      auto product = engine->product(expected.id);
      ASSERT_TRUE(product.has_value()) << expected.id << " is missing: the products are not a prefix";
      EXPECT_TRUE(prices[expected.id].count(product->price)) << expected.id << " has a price never committed";
      photos.push_back(demo() / expected.images[0]);
    }
    auto results = engine->search_files(photos, 5, false);
    for (std::size_t n = 0; n < count; ++n) {
      const auto& hits = results[n].hits;
      ASSERT_FALSE(hits.empty()) << entries_[n].product.id;
      // Fashion-MNIST repeats a few pictures exactly: a tie at the top score counts as found.
      bool found = false;
      for (const auto& hit : hits) {
        found = found || (hit.product_id == entries_[n].product.id && hit.score >= hits[0].score - 1e-6f);
      }
      EXPECT_TRUE(found) << entries_[n].product.id << " is not found first by its own photo";
    }
  }
}

TEST_F(Durability, KilledSnapshotLeavesNoHalfCopyAndIsCleanedUpNextTime) {
  fs::path snap = root_->path() / "killed-snap";
  // SIGALRM ends the process with no handler run, at several points of its work.
  for (int ms : {30, 150, 300, 500, 800, 1200}) {
    SCOPED_TRACE("killed after " + std::to_string(ms) + " ms");
    fs::remove_all(snap);
    Outcome r = run_killed_after({"snapshot", "--data", base().string(), "--out", snap.string()}, ms);
    if (r.status != 0) EXPECT_EQ(r.status, 128 + SIGALRM) << describe(r);
    // Killed before the rename, there is no folder under the name; killed after it (while
    // syncing or exiting, which a loaded machine makes likely), the folder is whole.
    if (fs::exists(snap)) {
      EXPECT_EQ(info_of(snap)["products"], kBase) << "a snapshot under its name is complete";
    } else {
      EXPECT_NE(r.status, 0) << "a snapshot that finished is under its name";
    }
  }
  // The next snapshot removes what the killed ones left beside it.
  fs::remove_all(snap);
  Outcome r = run({"snapshot", "--data", base().string(), "--out", snap.string()});
  ASSERT_EQ(r.status, 0) << describe(r);
  for (const auto& entry : fs::directory_iterator(root_->path())) {
    EXPECT_EQ(entry.path().filename().string().rfind(".killed-snap.", 0), std::string::npos) << entry.path();
  }
}

TEST_F(Durability, SnapshotHoldsImagesAndKeysButNotTempFilesOrImportBodies) {
  fs::path data = copy_of_base("with-extras");
  fs::create_directories(data / "imports" / "photos");
  fs::create_directories(data / "uploads");
  fs::copy_file(demo() / "images" / "00001.png", data / "imports" / "photos" / "sku-1.png");
  fs::copy_file(demo() / "images" / "00002.png", data / "uploads" / "ab12.png");
  lookalike::testing::write_text(data / "keys.json", "{}");
  fs::permissions(data / "keys.json", fs::perms::owner_read | fs::perms::owner_write);
  lookalike::testing::write_text(data / "imports" / "4242-0123abcd.jsonl", "{}\n");
  lookalike::testing::write_text(data / ".index.lkx.tmp-4242-0-0badc0de", "half");
  lookalike::testing::write_text(data / "uploads" / ".ab34.png.tmp-4242-0-0badc0de", "half");
  fs::path snap = root_->path() / "extras-snap";
  fs::remove_all(snap);
  Outcome r = run({"snapshot", "--data", data.string(), "--out", snap.string()});
  ASSERT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(read_text(snap / "imports" / "photos" / "sku-1.png"), read_text(demo() / "images" / "00001.png"));
  EXPECT_EQ(read_text(snap / "uploads" / "ab12.png"), read_text(demo() / "images" / "00002.png"));
  EXPECT_EQ(fs::status(snap / "keys.json").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_FALSE(fs::exists(snap / "imports" / "4242-0123abcd.jsonl"));
  EXPECT_FALSE(fs::exists(snap / ".index.lkx.tmp-4242-0-0badc0de"));
  EXPECT_FALSE(fs::exists(snap / "uploads" / ".ab34.png.tmp-4242-0-0badc0de"));
  EXPECT_FALSE(fs::exists(snap / "catalog.db-wal"));
}

TEST_F(Durability, RestoreRefusesToOverwriteAndChecksTheSnapshotFirst) {
  fs::path snap = root_->path() / "restore-snap";
  fs::remove_all(snap);
  ASSERT_EQ(run({"snapshot", "--data", base().string(), "--out", snap.string()}).status, 0);

  // A folder with another catalog: refused without --force and left as it was.
  fs::path data = copy_of_base("restore-target");
  Outcome add = run({"ingest", "--data", data.string(), "--catalog", (demo() / "more.jsonl").string()});
  ASSERT_EQ(add.status, 0) << describe(add);
  Outcome refused = run({"restore", "--from", snap.string(), "--data", data.string()});
  EXPECT_EQ(refused.status, 1) << describe(refused);
  EXPECT_NE(refused.err.find("--force"), std::string::npos) << describe(refused);
  EXPECT_EQ(info_of(data)["products"], kBase + kMore);

  // A damaged snapshot is refused before anything in the folder changes.
  fs::path damaged = root_->path() / "restore-damaged";
  fs::remove_all(damaged);
  fs::copy(snap, damaged, fs::copy_options::recursive);
  fs::resize_file(damaged / "model.lkm", 1000);
  Outcome bad = run({"restore", "--from", damaged.string(), "--data", data.string(), "--force"});
  EXPECT_EQ(bad.status, 1) << describe(bad);
  EXPECT_NE(bad.err.find("model.lkm"), std::string::npos) << describe(bad);
  EXPECT_EQ(info_of(data)["products"], kBase + kMore);

  // A folder that is no snapshot at all.
  Outcome not_snap = run({"restore", "--from", demo().string(), "--data", data.string(), "--force"});
  EXPECT_EQ(not_snap.status, 1) << describe(not_snap);
  EXPECT_NE(not_snap.err.find("not a lookalike snapshot"), std::string::npos) << describe(not_snap);

  // With --force the folder becomes the snapshot, and nothing is left beside it.
  Outcome forced = run({"restore", "--from", snap.string(), "--data", data.string(), "--force"});
  ASSERT_EQ(forced.status, 0) << describe(forced);
  EXPECT_EQ(info_of(data)["products"], kBase);
  for (const auto& entry : fs::directory_iterator(root_->path())) {
    EXPECT_EQ(entry.path().filename().string().rfind(".restore-target.", 0), std::string::npos)
        << entry.path();
  }
}

}  // namespace
