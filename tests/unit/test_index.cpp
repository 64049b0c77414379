#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/container_file.h"
#include "common/error.h"
#include "index/vector_index.h"
#include "support/test_support.h"

namespace lookalike {

namespace index {
namespace {

namespace fs = std::filesystem;
using lookalike::testing::contains;
using lookalike::testing::error_from;
using lookalike::testing::read_text;
using lookalike::testing::TempDir;
using lookalike::testing::write_bytes;
using Bytes = std::vector<std::uint8_t>;

const std::string kModel = "test-model/1/28x28x1/d32/0123456789abcdef";

// n x dim random unit vectors, row-major.
std::vector<float> random_unit_vectors(std::size_t n, int dim, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> out(n * static_cast<std::size_t>(dim));
  for (std::size_t i = 0; i < n; ++i) {
    float* row = out.data() + i * dim;
    double norm = 0;
    for (int j = 0; j < dim; ++j) {
      row[j] = normal(rng);
      norm += double(row[j]) * row[j];
    }
    for (int j = 0; j < dim; ++j) row[j] = static_cast<float>(row[j] / std::sqrt(norm));
  }
  return out;
}

// Ids that are clearly not row numbers.
std::vector<std::int64_t> sparse_ids(std::size_t n) {
  std::vector<std::int64_t> ids(n);
  for (std::size_t i = 0; i < n; ++i) ids[i] = 1'000'000 + 7 * static_cast<std::int64_t>(i);
  return ids;
}

float dot(const float* a, const float* b, int dim) {
  double sum = 0;
  for (int j = 0; j < dim; ++j) sum += double(a[j]) * b[j];
  return static_cast<float>(sum);
}

// The plain reference: score every vector, sort, keep k.
std::vector<Hit> brute_force(const std::vector<float>& base, const std::vector<std::int64_t>& ids, int dim,
                             const float* query, int k) {
  std::vector<Hit> all(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) all[i] = Hit{ids[i], dot(base.data() + i * dim, query, dim)};
  std::sort(all.begin(), all.end(), [](const Hit& a, const Hit& b) { return a.score > b.score; });
  all.resize(std::min<std::size_t>(all.size(), static_cast<std::size_t>(k)));
  return all;
}

IndexStamp stamp(std::int64_t store_version = 42) { return IndexStamp{kModel, store_version}; }

std::unique_ptr<VectorIndex> build(const std::string& factory, const std::vector<float>& base,
                                   const std::vector<std::int64_t>& ids, int dim) {
  return VectorIndex::build(dim, factory, stamp(), ids.size(), base.data(), ids.data());
}

void expect_same_hits(const std::vector<Hit>& a, const std::vector<Hit>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].id, b[i].id) << "hit " << i;
    EXPECT_EQ(a[i].score, b[i].score) << "hit " << i;
  }
}

TEST(VectorIndexFactory, DefaultIsExactUpTo200kThenHnsw) {
  EXPECT_EQ(VectorIndex::default_factory(0), "Flat");
  EXPECT_EQ(VectorIndex::default_factory(200'000), "Flat");
  EXPECT_EQ(VectorIndex::default_factory(200'001), "HNSW32");
}

TEST(VectorIndexSearch, FlatAgreesWithBruteForceReference) {
  const int dim = 32, k = 10;
  const std::size_t n = 2'000, nq = 50;
  auto base = random_unit_vectors(n, dim, 1);
  auto queries = random_unit_vectors(nq, dim, 2);
  auto ids = sparse_ids(n);
  auto index = build("Flat", base, ids, dim);
  EXPECT_EQ(index->size(), n);
  EXPECT_EQ(index->dim(), dim);
  EXPECT_EQ(index->factory(), "Flat");

  auto hits = index->search(nq, queries.data(), k);
  ASSERT_EQ(hits.size(), nq * k);
  for (std::size_t q = 0; q < nq; ++q) {
    auto expected = brute_force(base, ids, dim, queries.data() + q * dim, k);
    for (int r = 0; r < k; ++r) {
      const Hit& got = hits[q * k + r];
      // Ids must match; allow a swap only between scores equal to float precision.
      auto row = std::find(ids.begin(), ids.end(), got.id);
      ASSERT_NE(row, ids.end()) << "unknown id " << got.id;
      float true_score = dot(base.data() + (row - ids.begin()) * dim, queries.data() + q * dim, dim);
      EXPECT_NEAR(true_score, expected[r].score, 1e-5) << "query " << q << " rank " << r;
      EXPECT_NEAR(got.score, true_score, 1e-5) << "query " << q << " rank " << r;
      if (std::abs(expected[r].score - (r + 1 < k ? expected[r + 1].score : -2.f)) > 1e-4 &&
          (r == 0 || std::abs(expected[r].score - expected[r - 1].score) > 1e-4)) {
        EXPECT_EQ(got.id, expected[r].id) << "query " << q << " rank " << r;
      }
    }
  }
}

// Rows whose number is a multiple of `every`.
class EveryNthRow final : public VectorIndex::RowFilter {
 public:
  explicit EveryNthRow(std::size_t every) : every_(every) {}
  bool allows(std::size_t row) const override { return row % every_ == 0; }

 private:
  std::size_t every_;
};

TEST(VectorIndexFilteredSearch, RowsAndFiltersAgreeWithBruteForceOverTheAllowedVectors) {
  const int dim = 16, k = 10;
  const std::size_t n = 3'000, nq = 20;
  auto base = random_unit_vectors(n, dim, 5);
  auto queries = random_unit_vectors(nq, dim, 6);
  auto ids = sparse_ids(n);
  for (const char* factory : {"Flat", "HNSW32", "IVF16,Flat"}) {
    SCOPED_TRACE(factory);
    auto index = build(factory, base, ids, dim);
    EXPECT_EQ(index->exhaustive(), std::string(factory) == "Flat");
    for (std::size_t row : {std::size_t(0), std::size_t(1234), n - 1})
      EXPECT_EQ(index->id_of_row(row), ids[row]);
    for (std::size_t every : {1, 7, 300}) {
      std::vector<float> allowed_base;
      std::vector<std::int64_t> allowed_ids;
      std::vector<std::uint32_t> rows;
      for (std::size_t r = 0; r < n; r += every) {
        allowed_base.insert(allowed_base.end(), base.begin() + r * dim, base.begin() + (r + 1) * dim);
        allowed_ids.push_back(ids[r]);
        rows.push_back(static_cast<std::uint32_t>(r));
      }
      auto exact = index->search_rows(nq, queries.data(), k, rows.data(), rows.size());
      auto filtered = index->search_filtered(nq, queries.data(), k, EveryNthRow(every), 2048);
      ASSERT_EQ(exact.size(), nq * k);
      ASSERT_EQ(filtered.size(), nq * k);
      std::size_t found = 0;
      for (std::size_t q = 0; q < nq; ++q) {
        auto expected = brute_force(allowed_base, allowed_ids, dim, queries.data() + q * dim, k);
        for (int r = 0; r < k; ++r) {
          // The exact scan returns ids (not rows), the reference's, with its scores.
          EXPECT_EQ(exact[q * k + r].id, expected[r].id)
              << "every " << every << " query " << q << " rank " << r;
          EXPECT_NEAR(exact[q * k + r].score, expected[r].score, 1e-5);
          for (const auto& e : expected) found += filtered[q * k + r].id == e.id;
          // Whatever the index returns passes the filter; a graph walk may find
          // fewer than k of very sparse rows (-1: the engine then widens).
          if (filtered[q * k + r].id == -1 && !index->exhaustive()) continue;
          auto it = std::find(ids.begin(), ids.end(), filtered[q * k + r].id);
          ASSERT_NE(it, ids.end());
          EXPECT_EQ(static_cast<std::size_t>(it - ids.begin()) % every, 0u);
        }
      }
      const double recall = double(found) / double(nq * k);
      if (index->exhaustive()) {
        EXPECT_EQ(recall, 1.0) << "every " << every;
      } else if (every < 300) {
        EXPECT_GE(recall, 0.9) << "every " << every;
      }
    }
  }
}

TEST(VectorIndexFilteredSearch, FewerAllowedRowsThanKArePaddedWithMinusOne) {
  const int dim = 8;
  auto base = random_unit_vectors(100, dim, 9);
  auto ids = sparse_ids(100);
  auto index = build("Flat", base, ids, dim);
  std::vector<std::uint32_t> rows{3, 50};
  auto exact = index->search_rows(1, base.data(), 5, rows.data(), rows.size());
  ASSERT_EQ(exact.size(), 5u);
  EXPECT_NE(exact[1].id, -1);
  EXPECT_EQ(exact[2].id, -1);
  auto filtered = index->search_filtered(1, base.data(), 5, EveryNthRow(40), 0);  // rows 0, 40, 80
  EXPECT_EQ(filtered[0].id, ids[0]);                                              // the query is row 0 itself
  EXPECT_EQ(filtered[3].id, -1);
  auto empty = build("Flat", {}, {}, dim);
  EXPECT_EQ(empty->search_filtered(2, base.data(), 3, EveryNthRow(1), 0).size(), 6u);
  EXPECT_EQ(empty->search_rows(2, base.data(), 3, nullptr, 0)[0].id, -1);
}

TEST(VectorIndexSearch, SingleQueryMatchesBatchedQueries) {
  const int dim = 16;
  auto base = random_unit_vectors(300, dim, 3);
  auto queries = random_unit_vectors(25, dim, 4);
  auto index = build("Flat", base, sparse_ids(300), dim);
  auto batched = index->search(25, queries.data(), 5);
  for (std::size_t q = 0; q < 25; ++q) {
    auto single = index->search(1, queries.data() + q * dim, 5);
    for (int r = 0; r < 5; ++r) {
      EXPECT_EQ(single[r].id, batched[q * 5 + r].id);
      EXPECT_NEAR(single[r].score, batched[q * 5 + r].score, 1e-5);
    }
  }
}

TEST(VectorIndexSearch, HnswRecallAt10IsAtLeast95PercentOfExact) {
  const int dim = 32, k = 10;
  const std::size_t n = 5'000, nq = 200;
  auto base = random_unit_vectors(n, dim, 5);
  auto queries = random_unit_vectors(nq, dim, 6);
  auto ids = sparse_ids(n);
  auto flat = build("Flat", base, ids, dim);
  auto hnsw = build("HNSW32", base, ids, dim);
  EXPECT_EQ(hnsw->size(), n);
  auto exact = flat->search(nq, queries.data(), k);
  auto approx = hnsw->search(nq, queries.data(), k);
  std::size_t found = 0;
  for (std::size_t q = 0; q < nq; ++q) {
    for (int r = 0; r < k; ++r) {
      std::int64_t id = approx[q * k + r].id;
      auto begin = exact.begin() + static_cast<long>(q * k);
      if (std::any_of(begin, begin + k, [&](const Hit& h) { return h.id == id; })) ++found;
    }
  }
  double recall = double(found) / double(nq * k);
  EXPECT_GE(recall, 0.95);
  RecordProperty("recall_at_10", std::to_string(recall));
  for (std::size_t i = 1; i < approx.size(); ++i) {
    if (i % k != 0) {
      EXPECT_GE(approx[i - 1].score, approx[i].score) << "hits not best first at " << i;
    }
  }
}

TEST(VectorIndexSearch, IvfFindsEveryStoredVectorAsItsOwnNearest) {
  const int dim = 32;
  const std::size_t n = 1'000;
  auto base = random_unit_vectors(n, dim, 7);
  auto ids = sparse_ids(n);
  auto ivf = build("IVF16,Flat", base, ids, dim);
  EXPECT_EQ(ivf->size(), n);
  EXPECT_EQ(ivf->factory(), "IVF16,Flat");
  auto hits = ivf->search(n, base.data(), 3);
  for (std::size_t i = 0; i < n; ++i) {
    EXPECT_EQ(hits[i * 3].id, ids[i]) << "vector " << i;
    EXPECT_NEAR(hits[i * 3].score, 1.f, 1e-5);
  }
}

TEST(VectorIndexSearch, ReturnsTheGivenIdsNotRowNumbers) {
  const int dim = 8;
  const std::size_t n = 100;
  auto base = random_unit_vectors(n, dim, 8);
  std::vector<std::int64_t> ids(n);
  for (std::size_t i = 0; i < n; ++i) ids[i] = (std::int64_t(1) << 40) + 3 * static_cast<std::int64_t>(n - i);
  for (const char* factory : {"Flat", "HNSW32", "IVF2,Flat"}) {
    auto index = build(factory, base, ids, dim);
    auto hits = index->search(n, base.data(), 1);
    for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].id, ids[i]) << factory << " vector " << i;
  }
}

TEST(VectorIndexSearch, FewerVectorsThanKArePaddedWithMinusOne) {
  const int dim = 8;
  auto base = random_unit_vectors(3, dim, 9);
  auto ids = sparse_ids(3);
  for (const char* factory : {"Flat", "HNSW32"}) {
    auto index = build(factory, base, ids, dim);
    auto hits = index->search(2, base.data(), 5);
    ASSERT_EQ(hits.size(), 10u);
    for (int q = 0; q < 2; ++q) {
      std::vector<std::int64_t> real;
      for (int r = 0; r < 3; ++r) real.push_back(hits[q * 5 + r].id);
      std::sort(real.begin(), real.end());
      EXPECT_EQ(real, ids) << factory;
      EXPECT_EQ(hits[q * 5 + 3].id, -1) << factory;
      EXPECT_EQ(hits[q * 5 + 4].id, -1) << factory;
    }
  }
}

TEST(VectorIndexSearch, EmptyIndexIsSearchableAndReturnsOnlyPadding) {
  const int dim = 8;
  auto queries = random_unit_vectors(4, dim, 10);
  for (const char* factory : {"Flat", "HNSW32"}) {
    auto index = VectorIndex::build(dim, factory, stamp(), 0, nullptr, nullptr);
    EXPECT_EQ(index->size(), 0u);
    auto hits = index->search(4, queries.data(), 3);
    ASSERT_EQ(hits.size(), 12u);
    for (const Hit& h : hits) EXPECT_EQ(h.id, -1) << factory;
  }
}

TEST(VectorIndexSearch, NonPositiveKReturnsNothing) {
  auto base = random_unit_vectors(10, 8, 11);
  auto index = build("Flat", base, sparse_ids(10), 8);
  EXPECT_TRUE(index->search(1, base.data(), 0).empty());
  EXPECT_TRUE(index->search(1, base.data(), -3).empty());
}

TEST(VectorIndexSearch, ConcurrentSearchesGiveTheSameResultsAsSequentialOnes) {
  const int dim = 32, k = 10;
  auto base = random_unit_vectors(3'000, dim, 14);
  auto queries_a = random_unit_vectors(100, dim, 15);
  auto queries_b = random_unit_vectors(100, dim, 16);
  for (const char* factory : {"Flat", "HNSW32"}) {
    auto index = build(factory, base, sparse_ids(3'000), dim);
    auto expected_a = index->search(100, queries_a.data(), k);
    auto expected_b = index->search(100, queries_b.data(), k);
    std::vector<Hit> got_a, got_b;
    std::thread ta([&] { got_a = index->search(100, queries_a.data(), k); });
    std::thread tb([&] { got_b = index->search(100, queries_b.data(), k); });
    ta.join();
    tb.join();
    expect_same_hits(got_a, expected_a);
    expect_same_hits(got_b, expected_b);
  }
}

// Single-photo searches arriving together share a pass over a flat index: each
// must still get its own results, whatever k it asked and whoever ran the pass. A
// shared pass is a matrix product rather than a vector one, so a score may differ in
// its last bit (as between a batch search and a single one).
TEST(VectorIndexSearch, ManySingleSearchesAtOnceEachGetTheirOwnResults) {
  const int dim = 32, threads = 8, per_thread = 40;
  auto base = random_unit_vectors(5'000, dim, 21);
  auto queries = random_unit_vectors(threads * per_thread, dim, 22);
  auto index = build("Flat", base, sparse_ids(5'000), dim);
  const auto k_of = [](int q) { return q % 3 == 0 ? 5 : 10; };
  std::vector<std::vector<Hit>> expected(queries.size() / dim), got(expected.size());
  for (std::size_t q = 0; q < expected.size(); ++q)
    expected[q] = index->search(1, queries.data() + q * dim, k_of(static_cast<int>(q)));
  // Meanwhile a batch larger than a shared pass, which runs outside the queue.
  const std::size_t batch = expected.size();
  const auto expected_batch = index->search(batch, queries.data(), 10);
  std::vector<std::vector<Hit>> got_batch(3);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        const int q = i * threads + t;
        got[static_cast<std::size_t>(q)] = index->search(1, queries.data() + q * dim, k_of(q));
      }
    });
  }
  pool.emplace_back([&] {
    for (auto& hits : got_batch) hits = index->search(batch, queries.data(), 10);
  });
  for (auto& thread : pool) thread.join();
  for (const auto& hits : got_batch) {
    ASSERT_EQ(hits.size(), expected_batch.size());
    for (std::size_t i = 0; i < hits.size(); ++i) {
      EXPECT_EQ(hits[i].id, expected_batch[i].id) << "batch hit " << i;
      EXPECT_EQ(hits[i].score, expected_batch[i].score) << "batch hit " << i;
    }
  }
  for (std::size_t q = 0; q < expected.size(); ++q) {
    ASSERT_EQ(got[q].size(), static_cast<std::size_t>(k_of(static_cast<int>(q)))) << q;
    for (std::size_t r = 0; r < got[q].size(); ++r) {
      EXPECT_EQ(got[q][r].id, expected[q][r].id) << "query " << q << " hit " << r;
      EXPECT_NEAR(got[q][r].score, expected[q][r].score, 1e-5) << "query " << q << " hit " << r;
    }
  }
}

TEST(VectorIndexBuild, BadFactoryStringIsInvalidInput) {
  auto base = random_unit_vectors(10, 8, 12);
  auto ids = sparse_ids(10);
  for (const char* factory : {"NoSuchIndex", "", "Flat;drop", "IVF16,Nonsense"}) {
    auto e = error_from([&] { build(factory, base, ids, 8); });
    ASSERT_TRUE(e) << "\"" << factory << "\" accepted";
    EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput) << factory;
    EXPECT_TRUE(contains(e->what(), factory)) << e->what();
  }
}

TEST(VectorIndexBuild, BadDimensionIsInvalidInput) {
  for (int dim : {0, -1, 1 << 20}) {
    auto e = error_from([&] { VectorIndex::build(dim, "Flat", stamp(), 0, nullptr, nullptr); });
    ASSERT_TRUE(e) << dim;
    EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput);
  }
}

TEST(VectorIndexBuild, IvfWithoutEnoughTrainingVectorsIsInvalidInput) {
  auto base = random_unit_vectors(8, 8, 13);
  auto ids = sparse_ids(8);
  auto e = error_from([&] { VectorIndex::build(8, "IVF16,Flat", stamp(), 0, nullptr, nullptr); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput);
  e = error_from([&] { build("IVF16,Flat", base, ids, 8); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput);
}

// ---- persistence ----

class VectorIndexFile : public ::testing::Test {
 protected:
  static constexpr int kDim = 16;
  void SetUp() override {
    base_ = random_unit_vectors(500, kDim, 20);
    queries_ = random_unit_vectors(30, kDim, 21);
    ids_ = sparse_ids(500);
  }

  void save_flat() {
    build("Flat", base_, ids_, kDim)->save(path_);
    original_ = Bytes();
    std::string text = read_text(path_);
    original_.assign(text.begin(), text.end());
  }

  void expect_invalid(const std::string& context) {
    auto e = error_from([&] { VectorIndex::load(path_, kModel); });
    ASSERT_TRUE(e) << context << ": accepted";
    EXPECT_EQ(e->kind(), ErrorKind::kInvalidInput) << context << ": " << e->what();
    EXPECT_TRUE(contains(e->what(), path_.string())) << context << ": " << e->what();
  }

  TempDir dir_;
  fs::path path_ = dir_ / "vectors.index";
  std::vector<float> base_, queries_;
  std::vector<std::int64_t> ids_;
  Bytes original_;
};

TEST_F(VectorIndexFile, SaveAndLoadGiveIdenticalResults) {
  for (const char* factory : {"Flat", "HNSW32", "IVF4,Flat"}) {
    auto built = build(factory, base_, ids_, kDim);
    built->save(path_);
    auto loaded = VectorIndex::load(path_, kModel);
    EXPECT_EQ(loaded->size(), built->size());
    EXPECT_EQ(loaded->dim(), kDim);
    EXPECT_EQ(loaded->factory(), factory);
    EXPECT_EQ(loaded->stamp().model, kModel);
    EXPECT_EQ(loaded->stamp().store_version, 42);
    expect_same_hits(loaded->search(30, queries_.data(), 10), built->search(30, queries_.data(), 10));
  }
}

TEST_F(VectorIndexFile, SaveReplacesAnOlderFileAndLeavesNoTempFiles) {
  build("Flat", base_, ids_, kDim)->save(path_);
  auto small = random_unit_vectors(5, kDim, 22);
  build("Flat", small, sparse_ids(5), kDim)->save(path_);
  EXPECT_EQ(VectorIndex::load(path_, kModel)->size(), 5u);
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir_.path())) ++files;
  EXPECT_EQ(files, 1u);
}

TEST_F(VectorIndexFile, EmptyIndexRoundTrips) {
  VectorIndex::build(kDim, "Flat", stamp(), 0, nullptr, nullptr)->save(path_);
  auto loaded = VectorIndex::load(path_, kModel);
  EXPECT_EQ(loaded->size(), 0u);
  for (const Hit& h : loaded->search(2, queries_.data(), 4)) EXPECT_EQ(h.id, -1);
}

TEST_F(VectorIndexFile, AnotherModelIsAModelMismatchNamingBothModels) {
  save_flat();
  const std::string other = "test-model/1/28x28x1/d32/fedcba9876543210";
  auto e = error_from([&] { VectorIndex::load(path_, other); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kModelMismatch);
  EXPECT_TRUE(contains(e->what(), kModel)) << e->what();
  EXPECT_TRUE(contains(e->what(), other)) << e->what();
}

TEST_F(VectorIndexFile, MissingFileIsNotFound) {
  auto e = error_from([&] { VectorIndex::load(dir_ / "absent.index", kModel); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind(), ErrorKind::kNotFound);
}

TEST_F(VectorIndexFile, TruncatedFileIsInvalidInput) {
  save_flat();
  for (std::size_t size : {std::size_t(0), std::size_t(10), original_.size() / 3, original_.size() - 1}) {
    write_bytes(path_, Bytes(original_.begin(), original_.begin() + static_cast<long>(size)));
    expect_invalid("truncated to " + std::to_string(size));
  }
}

TEST_F(VectorIndexFile, CorruptedByteIsInvalidInput) {
  save_flat();
  for (std::size_t at : {std::size_t(3), std::size_t(40), original_.size() / 2, original_.size() - 5}) {
    Bytes damaged = original_;
    damaged[at] ^= 0x55;
    write_bytes(path_, damaged);
    expect_invalid("byte " + std::to_string(at) + " changed");
  }
}

TEST_F(VectorIndexFile, NonIndexFileIsInvalidInput) {
  lookalike::testing::write_text(path_,
                                 "this is not an index, just some text that is long enough to look like one");
  expect_invalid("text file");
}

// Files with a valid envelope but a payload FAISS cannot use, or a header that
// disagrees with it, must still be refused cleanly rather than crash.
TEST_F(VectorIndexFile, ValidEnvelopeWithBadContentIsInvalidInput) {
  save_flat();
  auto file = read_container_file(path_, std::string("LKINDEX", 8), 1, 1 << 30, "index file");
  const std::string payload(file.payload.begin(), file.payload.end());
  const std::string magic("LKINDEX", 8);

  write_container_file(path_, magic, 1, file.header, "junk that FAISS does not know");
  expect_invalid("junk payload");

  write_container_file(path_, magic, 1, file.header, payload.substr(0, payload.size() / 2));
  expect_invalid("half a payload");

  // The id map closes the payload: its length (u64), then one i64 per vector.
  std::string huge_ids = payload;
  const std::size_t length_at = payload.size() - ids_.size() * 8 - 8;
  std::uint64_t stored_length = 0;
  std::memcpy(&stored_length, &huge_ids[length_at], 8);
  ASSERT_EQ(stored_length, ids_.size());
  const std::uint64_t huge = std::uint64_t(1) << 39;
  std::memcpy(&huge_ids[length_at], &huge, 8);
  write_container_file(path_, magic, 1, file.header, huge_ids);
  expect_invalid("id map claiming 2^39 entries");

  write_container_file(path_, magic, 1, "{not json", payload);
  expect_invalid("header not JSON");

  auto header = nlohmann::json::parse(file.header);
  header["count"] = 499;
  write_container_file(path_, magic, 1, header.dump(), payload);
  expect_invalid("count disagrees");

  header = nlohmann::json::parse(file.header);
  header["dim"] = 32;
  write_container_file(path_, magic, 1, header.dump(), payload);
  expect_invalid("dim disagrees");

  header = nlohmann::json::parse(file.header);
  header.erase("model");
  write_container_file(path_, magic, 1, header.dump(), payload);
  expect_invalid("model missing");
}

TEST_F(VectorIndexFile, FormatVersionFromTheFutureIsInvalidInput) {
  save_flat();
  auto file = read_container_file(path_, std::string("LKINDEX", 8), 1, 1 << 30, "index file");
  write_container_file(path_, std::string("LKINDEX", 8), 2, file.header,
                       std::string(file.payload.begin(), file.payload.end()));
  expect_invalid("version 2");
}

}  // namespace
}  // namespace index
}  // namespace lookalike
