#include "index/vector_index.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVF.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#include <faiss/utils/distances.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <nlohmann/json.hpp>

#include "common/container_file.h"
#include "common/error.h"

namespace lookalike::index {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::string kMagic("LKINDEX", 8);
constexpr std::uint32_t kFormatVersion = 1;
constexpr std::size_t kMaxIndexBytes = std::size_t(64) << 30;
constexpr std::size_t kFlatLimit = 200'000;
constexpr int kHnswEfSearch = 128;  // recall@10 > 0.99 on the demo catalog; see bench/
constexpr int kMaxDim = 65536;

// Debian's FAISS is built without SIMD, so its per-query scalar distance loop is
// several times slower than BLAS (OpenBLAS); route every search through BLAS.
// A process-wide FAISS setting, written once, before this process's first index exists.
void prefer_blas_distances() {
  static std::once_flag once;
  std::call_once(once, [] { faiss::distance_compute_blas_threshold = 1; });
}

// HNSW's search breadth lives in the index; it is set once, before the index is
// shared, so concurrent searches only read it.
void configure_for_search(faiss::Index* index) {
  prefer_blas_distances();
  if (auto* map = dynamic_cast<faiss::IndexIDMap*>(index)) index = map->index;
  if (auto* hnsw = dynamic_cast<faiss::IndexHNSW*>(index)) hnsw->hnsw.efSearch = kHnswEfSearch;
  // Exact search over chosen rows reads their vectors back (search_rows).
  if (auto* ivf = dynamic_cast<faiss::IndexIVF*>(index)) ivf->make_direct_map(true);
}

// The IDMap's sub-index: it numbers vectors by row, which is what selectors see.
// (FAISS 1.7.3's IndexIDMap refuses search parameters, so filtered searches go
// to the sub-index and translate rows to ids themselves.)
const faiss::Index* rows_index(const faiss::Index* index) {
  if (auto* map = dynamic_cast<const faiss::IndexIDMap*>(index)) return map->index;
  return index;
}

// The contiguous float vectors of a flat or HNSW-over-flat index, by row; null for others.
const float* flat_vectors(const faiss::Index* inner) {
  if (auto* flat = dynamic_cast<const faiss::IndexFlat*>(inner)) return flat->get_xb();
  if (auto* hnsw = dynamic_cast<const faiss::IndexHNSW*>(inner)) {
    if (auto* flat = dynamic_cast<const faiss::IndexFlat*>(hnsw->storage)) return flat->get_xb();
  }
  return nullptr;
}

// Inner product with eight independent sums: the compiler keeps them in vector
// registers without -ffast-math (Debian's FAISS is built without SIMD, and its
// fvec_inner_product runs one multiply-add at a time).
float dot(const float* a, const float* b, std::size_t dim) {
  float sums[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::size_t j = 0;
  for (; j + 8 <= dim; j += 8) {
    for (std::size_t t = 0; t < 8; ++t) sums[t] += a[j + t] * b[j + t];
  }
  float total = ((sums[0] + sums[4]) + (sums[1] + sums[5])) + ((sums[2] + sums[6]) + (sums[3] + sums[7]));
  for (; j < dim; ++j) total += a[j] * b[j];
  return total;
}

class RowSelector final : public faiss::IDSelector {
 public:
  explicit RowSelector(const VectorIndex::RowFilter& filter) : filter_(filter) {}
  bool is_member(idx_t row) const override {
    return row >= 0 && filter_.allows(static_cast<std::size_t>(row));
  }

 private:
  const VectorIndex::RowFilter& filter_;
};

// Allows exactly a sorted list of rows.
class ListedRows final : public VectorIndex::RowFilter {
 public:
  explicit ListedRows(std::vector<std::uint32_t> rows) : rows_(std::move(rows)) {
    std::sort(rows_.begin(), rows_.end());
  }
  bool allows(std::size_t row) const override { return std::binary_search(rows_.begin(), rows_.end(), row); }

 private:
  std::vector<std::uint32_t> rows_;
};

}  // namespace

// Concurrent searches of a flat index share one pass over its vectors. Alone, a
// search of one photo is memory-bound: it reads every vector (61 MB for the demo
// catalog) for one dot product each, so eight shoppers searching at once read them
// eight times. FAISS has no queue of its own, so searches that arrive while a pass
// runs wait here and the next pass takes them all as one matrix product (group
// commit: no search waits for company, only for the pass in progress).
namespace {

struct SearchQueue {
  struct Request {
    std::size_t n;
    const float* queries;
    int k;
    std::vector<Hit> hits;
    std::exception_ptr error;
    bool done = false;
  };
  std::mutex mutex;
  std::condition_variable passed;
  std::deque<Request*> waiting;
  bool running = false;  // a pass is in progress
};

// Queries per shared pass: enough for every worker of a busy server; the copy of
// the queries and the results stay small.
constexpr std::size_t kMaxSharedQueries = 64;

}  // namespace

struct VectorIndex::Impl {
  std::unique_ptr<faiss::Index> index;
  SearchQueue queue;
};

VectorIndex::VectorIndex(std::unique_ptr<Impl> impl, std::string factory, IndexStamp stamp)
    : impl_(std::move(impl)), factory_(std::move(factory)), stamp_(std::move(stamp)) {}

VectorIndex::~VectorIndex() = default;

std::string VectorIndex::default_factory(std::size_t count) { return count <= kFlatLimit ? "Flat" : "HNSW32"; }

std::unique_ptr<VectorIndex> VectorIndex::build(int dim, const std::string& factory, const IndexStamp& stamp,
                                                std::size_t n, const float* vectors, const std::int64_t* ids) {
  if (dim <= 0 || dim > kMaxDim) throw Error(ErrorKind::kInvalidInput, "bad vector dimension " + std::to_string(dim));
  auto impl = std::make_unique<Impl>();
  try {
    std::unique_ptr<faiss::Index> inner(faiss::index_factory(dim, factory.c_str(), faiss::METRIC_INNER_PRODUCT));
    if (!inner->is_trained) {
      if (n == 0) throw Error(ErrorKind::kInvalidInput, "index type " + factory + " needs vectors to train on");
      inner->train(static_cast<faiss::Index::idx_t>(n), vectors);
    }
    auto map = std::make_unique<faiss::IndexIDMap2>(inner.release());
    map->own_fields = true;
    if (n > 0) map->add_with_ids(static_cast<faiss::Index::idx_t>(n), vectors, ids);
    configure_for_search(map.get());
    impl->index = std::move(map);
  } catch (const faiss::FaissException& e) {
    throw Error(ErrorKind::kInvalidInput, "cannot build index \"" + factory + "\": " + e.what());
  }
  return std::unique_ptr<VectorIndex>(new VectorIndex(std::move(impl), factory, stamp));
}

namespace {

std::vector<Hit> search_index(const faiss::Index& index, std::size_t n, const float* queries, int k) {
  std::vector<faiss::Index::idx_t> labels(n * static_cast<std::size_t>(k));
  std::vector<float> distances(labels.size());
  try {
    index.search(static_cast<faiss::Index::idx_t>(n), queries, k, distances.data(), labels.data());
  } catch (const faiss::FaissException& e) {
    throw Error(ErrorKind::kInternal, std::string("vector search failed: ") + e.what());
  }
  std::vector<Hit> hits(labels.size());
  for (std::size_t i = 0; i < hits.size(); ++i) hits[i] = Hit{labels[i], distances[i]};
  return hits;
}

// One pass for every request of the batch (all asking the same k); each request
// gets its own rows of the result, or the error.
void search_together(const faiss::Index& index, const std::vector<SearchQueue::Request*>& batch, int k) {
  try {
    if (batch.size() == 1) {
      batch.front()->hits = search_index(index, batch.front()->n, batch.front()->queries, k);
      return;
    }
    const std::size_t dim = static_cast<std::size_t>(index.d);
    std::vector<float> queries;
    for (const auto* request : batch)
      queries.insert(queries.end(), request->queries, request->queries + request->n * dim);
    const auto hits = search_index(index, queries.size() / dim, queries.data(), k);
    auto from = hits.begin();
    for (auto* request : batch) {
      const auto count = static_cast<std::ptrdiff_t>(request->n * static_cast<std::size_t>(k));
      request->hits.assign(from, from + count);
      from += count;
    }
  } catch (...) {
    for (auto* request : batch) request->error = std::current_exception();
  }
}

}  // namespace

std::vector<Hit> VectorIndex::search(std::size_t n, const float* queries, int k) const {
  if (k <= 0) return {};
  // FAISS's BLAS path does not handle an empty index; nothing to find anyway.
  if (impl_->index->ntotal == 0) return std::vector<Hit>(n * static_cast<std::size_t>(k));
  // A search larger than a shared pass (a batch of photos) gains nothing from the
  // queue, and queued behind it every single-photo search would wait for all of it.
  if (!exhaustive() || n > kMaxSharedQueries) return search_index(*impl_->index, n, queries, k);

  SearchQueue& queue = impl_->queue;
  SearchQueue::Request mine{n, queries, k, {}, nullptr, false};
  std::vector<SearchQueue::Request*> batch;
  batch.reserve(kMaxSharedQueries);  // filled under the lock, where it must not throw
  std::unique_lock<std::mutex> lock(queue.mutex);
  queue.waiting.push_back(&mine);
  while (!mine.done) {
    if (queue.running) {
      queue.passed.wait(lock);
      continue;
    }
    // Lead the next pass: the oldest waiting search and every later one of the same
    // k, up to kMaxSharedQueries queries.
    const int k_of_pass = queue.waiting.front()->k;
    batch.clear();
    std::size_t rows = 0;
    for (auto it = queue.waiting.begin(); it != queue.waiting.end();) {
      if ((*it)->k == k_of_pass && batch.size() < kMaxSharedQueries &&
          (batch.empty() || rows + (*it)->n <= kMaxSharedQueries)) {
        rows += (*it)->n;
        batch.push_back(*it);
        it = queue.waiting.erase(it);
      } else {
        ++it;
      }
    }
    queue.running = true;
    lock.unlock();
    search_together(*impl_->index, batch, k_of_pass);
    lock.lock();
    for (auto* request : batch) request->done = true;
    queue.running = false;
    queue.passed.notify_all();
  }
  lock.unlock();
  if (mine.error) std::rethrow_exception(mine.error);
  return std::move(mine.hits);
}

std::int64_t VectorIndex::id_of_row(std::size_t row) const {
  if (auto* map = dynamic_cast<const faiss::IndexIDMap*>(impl_->index.get())) return map->id_map.at(row);
  return static_cast<std::int64_t>(row);
}

bool VectorIndex::exhaustive() const {
  return dynamic_cast<const faiss::IndexFlat*>(rows_index(impl_->index.get())) != nullptr;
}

std::vector<Hit> VectorIndex::search_filtered(std::size_t n, const float* queries, int k,
                                              const RowFilter& filter, int breadth) const {
  if (k <= 0) return {};
  const faiss::Index* inner = rows_index(impl_->index.get());
  if (inner->ntotal == 0) return std::vector<Hit>(n * static_cast<std::size_t>(k));
  RowSelector selector(filter);
  faiss::SearchParametersHNSW hnsw_params;
  faiss::SearchParametersIVF ivf_params;
  faiss::SearchParameters plain_params;
  faiss::SearchParameters* params = &plain_params;
  if (auto* hnsw = dynamic_cast<const faiss::IndexHNSW*>(inner)) {
    hnsw_params.efSearch = breadth > 0 ? breadth : hnsw->hnsw.efSearch;
    params = &hnsw_params;
  } else if (auto* ivf = dynamic_cast<const faiss::IndexIVF*>(inner)) {
    // breadth is in HNSW's efSearch units; 2048 and above probe every list.
    const std::size_t share = (ivf->nlist * static_cast<std::size_t>(std::max(breadth, 0)) + 2047) / 2048;
    ivf_params.nprobe = std::min(ivf->nlist, std::max(ivf->nprobe, share));
    params = &ivf_params;
  }
  params->sel = &selector;
  std::vector<faiss::Index::idx_t> labels(n * static_cast<std::size_t>(k));
  std::vector<float> distances(labels.size());
  try {
    inner->search(static_cast<faiss::Index::idx_t>(n), queries, k, distances.data(), labels.data(), params);
  } catch (const faiss::FaissException& e) {
    throw Error(ErrorKind::kInternal, std::string("filtered vector search failed: ") + e.what());
  }
  std::vector<Hit> hits(labels.size());
  for (std::size_t i = 0; i < hits.size(); ++i) {
    if (labels[i] >= 0) hits[i] = Hit{id_of_row(static_cast<std::size_t>(labels[i])), distances[i]};
  }
  return hits;
}

std::vector<Hit> VectorIndex::search_rows(std::size_t n, const float* queries, int k,
                                          const std::uint32_t* rows, std::size_t count) const {
  if (k <= 0) return {};
  const faiss::Index* inner = rows_index(impl_->index.get());
  const std::size_t dim = static_cast<std::size_t>(inner->d);
  const std::size_t want = static_cast<std::size_t>(k);
  std::vector<Hit> hits(n * want);
  const float* vectors = flat_vectors(inner);
  std::vector<float> copies;
  if (!vectors && count > 0) {
    // Other index types give their (possibly compressed) vectors back one by one.
    copies.resize(count * dim);
    try {
      for (std::size_t j = 0; j < count; ++j) inner->reconstruct(rows[j], copies.data() + j * dim);
    } catch (const faiss::FaissException&) {
      return search_filtered(n, queries, k, ListedRows(std::vector<std::uint32_t>(rows, rows + count)), 0);
    }
  }
  std::vector<std::pair<float, std::uint32_t>> scored(count);
  for (std::size_t q = 0; q < n; ++q) {
    const float* query = queries + q * dim;
    for (std::size_t j = 0; j < count; ++j) {
      const float* v = vectors ? vectors + static_cast<std::size_t>(rows[j]) * dim : copies.data() + j * dim;
      scored[j] = {dot(query, v, dim), rows[j]};
    }
    const std::size_t top = std::min(want, count);
    std::partial_sort(scored.begin(), scored.begin() + static_cast<std::ptrdiff_t>(top), scored.end(),
                      [](const auto& a, const auto& b) {
                        return a.first != b.first ? a.first > b.first : a.second < b.second;
                      });
    for (std::size_t j = 0; j < top; ++j)
      hits[q * want + j] = Hit{id_of_row(scored[j].second), scored[j].first};
  }
  return hits;
}

std::size_t VectorIndex::size() const { return static_cast<std::size_t>(impl_->index->ntotal); }

int VectorIndex::dim() const { return impl_->index->d; }

void VectorIndex::save(const fs::path& path) const {
  faiss::VectorIOWriter writer;
  try {
    faiss::write_index(impl_->index.get(), &writer);
  } catch (const faiss::FaissException& e) {
    throw Error(ErrorKind::kInternal, std::string("cannot serialise index: ") + e.what());
  }
  json header{{"model", stamp_.model},
              {"store_version", stamp_.store_version},
              {"factory", factory_},
              {"dim", dim()},
              {"count", size()}};
  write_container_file(path, kMagic, kFormatVersion, header.dump(),
                       std::string(writer.data.begin(), writer.data.end()));
}

std::unique_ptr<VectorIndex> VectorIndex::load(const fs::path& path, const std::string& expected_model) {
  // The checksum is verified before FAISS parses anything: read_index only ever
  // sees bytes this program wrote.
  auto file = read_container_file(path, kMagic, kFormatVersion, kMaxIndexBytes, "index file");
  IndexStamp stamp;
  std::string factory;
  std::size_t count = 0;
  int dim = 0;
  try {
    auto header = json::parse(file.header);
    stamp.model = header.at("model").get<std::string>();
    stamp.store_version = header.at("store_version").get<std::int64_t>();
    factory = header.at("factory").get<std::string>();
    count = header.at("count").get<std::size_t>();
    dim = header.at("dim").get<int>();
  } catch (const std::exception& e) {
    throw Error(ErrorKind::kInvalidInput, "index file " + path.string() + " has an invalid header: " + e.what());
  }
  if (stamp.model != expected_model) {
    throw Error(ErrorKind::kModelMismatch, "index file " + path.string() + " was built by model " + stamp.model +
                                               ", not by the current model " + expected_model);
  }
  // FAISS sizes a vector from the length stored before it and allocates it before
  // reading it; an absurd length would be a huge allocation (and a crash under
  // AddressSanitizer, which refuses it instead of throwing). The id map closes the
  // payload (IndexIDMap2 writes it last): its length must be the header's count.
  const auto& payload = file.payload;
  std::uint64_t id_map_length = 0;
  if (count > (payload.size() - std::min<std::size_t>(payload.size(), 8)) / 8) {
    throw Error(ErrorKind::kInvalidInput, "index file " + path.string() + " is too short for its " +
                                              std::to_string(count) + " vectors");
  }
  std::memcpy(&id_map_length, payload.data() + payload.size() - count * 8 - 8, 8);
  if (id_map_length != count) {
    throw Error(ErrorKind::kInvalidInput, "index file " + path.string() + " has an id map of " +
                                              std::to_string(id_map_length) + " entries for " +
                                              std::to_string(count) + " vectors");
  }
  auto impl = std::make_unique<Impl>();
  try {
    faiss::VectorIOReader reader;
    reader.data = std::move(file.payload);
    impl->index.reset(faiss::read_index(&reader));
  } catch (const std::exception& e) {
    // FaissException, or std::bad_alloc when a length inside the payload is absurd.
    throw Error(ErrorKind::kInvalidInput, "index file " + path.string() + " cannot be read: " + e.what());
  }
  if (static_cast<std::size_t>(impl->index->ntotal) != count || impl->index->d != dim) {
    throw Error(ErrorKind::kInvalidInput, "index file " + path.string() + " does not match its header");
  }
  configure_for_search(impl->index.get());
  return std::unique_ptr<VectorIndex>(new VectorIndex(std::move(impl), factory, stamp));
}

}  // namespace lookalike::index
