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

  // Searches n queries (n x dim, row-major); returns n x k hits, best first.
  std::vector<Hit> search(std::size_t n, const float* queries, int k) const;

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
