// The vector index: nearest neighbours by inner product (cosine similarity for the
// L2-normalised vectors embedders produce), over FAISS. It is derived data: the
// catalog store holds every vector, and an index that is missing, corrupt or
// stale is rebuilt from it.
//
// Thread safety: const members (search, save, accessors) may run concurrently;
// add() must not run concurrently with anything else (a FAISS restriction).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace lookalike::index {

struct Hit {
  std::int64_t id = -1;  // the image id given to add(); -1 pads rows with fewer than k hits
  float score = 0;       // inner product; higher is more similar
};

// What an index was built from: checked on load against what the caller expects.
struct IndexStamp {
  std::string model;            // ModelInfo::identity() of the embedder
  std::int64_t store_version = 0;  // catalog::Store::vectors_version() at build time
};

class VectorIndex {
 public:
  ~VectorIndex();
  VectorIndex(const VectorIndex&) = delete;
  VectorIndex& operator=(const VectorIndex&) = delete;

  // The factory string used when none is given: exact search ("Flat") up to
  // 200,000 vectors, an HNSW graph ("HNSW32") above.
  static std::string default_factory(std::size_t count);

  // Builds an index over n vectors (n x dim, row-major) with the given ids.
  // factory is a FAISS factory string; IVF indexes are trained on the vectors
  // given. Throws Error(kInvalidInput) for a bad factory string or dimension.
  static std::unique_ptr<VectorIndex> build(int dim, const std::string& factory, const IndexStamp& stamp,
                                            std::size_t n, const float* vectors, const std::int64_t* ids);

  // Searches n queries (n x dim, row-major); returns n x k hits, best first. On a
  // flat index, concurrent calls share passes over the vectors: a call waits for the
  // pass in progress, and the next pass serves every call then waiting that asks the
  // same k, up to 64 queries (scores then may differ in the last bit from a lone
  // call's). A call of more than 64 queries does not queue: it runs at once, alone.
  std::vector<Hit> search(std::size_t n, const float* queries, int k) const;

  // Filtered search works on rows: the positions 0..size()-1 of the vectors in
  // the order build() was given them. A RowFilter says which rows may be
  // returned; it is asked from the searching thread, possibly many times per row.
  class RowFilter {
   public:
    virtual ~RowFilter() = default;
    virtual bool allows(std::size_t row) const = 0;
  };

  // The id build() was given for a row (row < size()).
  std::int64_t id_of_row(std::size_t row) const;

  // Whether search() is exact (a flat index) rather than approximate.
  bool exhaustive() const;

  // Searches n queries among the rows the filter allows, inside the index walk:
  // the filter is applied to every candidate the graph or the inverted lists
  // visit, not to a top-k list afterwards. breadth sets how hard an approximate
  // index looks: HNSW's efSearch; for IVF, nlist * breadth / 2048 lists are
  // probed (at least its nprobe); 0: the index's default. Exact indexes ignore it. Returns n x k hits, best first, padded with -1
  // when fewer allowed rows were found; on a flat index the result is exact.
  std::vector<Hit> search_filtered(std::size_t n, const float* queries, int k, const RowFilter& filter,
                                   int breadth) const;

  // Exact search among the listed rows only (each < size(), any order, no
  // repeats): the cost grows with count, not with size(). Returns n x k hits,
  // best first, padded with -1 when count < k.
  std::vector<Hit> search_rows(std::size_t n, const float* queries, int k, const std::uint32_t* rows,
                               std::size_t count) const;

  std::size_t size() const;
  int dim() const;
  const std::string& factory() const { return factory_; }
  const IndexStamp& stamp() const { return stamp_; }

  // Writes the index atomically as a container file with magic "LKINDEX".
  void save(const std::filesystem::path& path) const;

  // Loads an index written by save(). Throws Error(kNotFound) when missing,
  // Error(kInvalidInput) when truncated or corrupt, Error(kModelMismatch) when
  // it was built by another model than expected_model.
  static std::unique_ptr<VectorIndex> load(const std::filesystem::path& path, const std::string& expected_model);

 private:
  struct Impl;
  VectorIndex(std::unique_ptr<Impl> impl, std::string factory, IndexStamp stamp);
  std::unique_ptr<Impl> impl_;
  std::string factory_;
  IndexStamp stamp_;
};

}  // namespace lookalike::index
