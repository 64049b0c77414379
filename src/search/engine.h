// The engine facade the CLI (and the HTTP server) use: a data folder holding the
// catalog store, the model that embeds its images and the vector index derived
// from both.
//
// Data folder layout:
//   catalog.db   the SQLite store, the source of truth (see catalog/store.h)
//   model.lkm    the model the stored vectors were made with (absent for "pixels")
//   index.lkx    the vector index, rebuilt from the store whenever missing,
//                corrupt, stale or made by another model
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "catalog/product.h"
#include "filter/filter.h"
#include "image/image.h"

namespace lookalike::catalog {
class Store;
}
namespace lookalike::embed {
class Embedder;
}
namespace lookalike::index {
class VectorIndex;
}

namespace lookalike::search {

// The name that selects the raw-pixel baseline instead of a model file.
inline constexpr const char* kPixelsModel = "pixels";

// Path of the model shipped in this repository for the demo catalog.
std::filesystem::path shipped_model_path();

struct OpenOptions {
  // Model for a new data folder: a model file, or kPixelsModel. Ignored (but
  // checked) when the folder already has one: a different model is refused.
  std::string model;
  std::string index_factory;  // empty: VectorIndex::default_factory
  image::DecodeLimits limits;
  // Filtered searches scan the matching vectors exactly when there are at most
  // this many, and use the index restricted to them above (FilterStrategy::kAuto).
  // The default matches the size up to which the index itself is exact; the
  // figures behind it are in bench/RESULTS.md.
  std::size_t exact_scan_max_vectors = 200000;
  // Where messages for the user go (index rebuilt, and why). May be empty.
  std::function<void(const std::string&)> on_message;
};

struct IngestOptions {
  catalog::ParseLimits parse_limits;
  std::size_t batch_size = 512;  // products per transaction and embedding batch
  std::function<void(std::size_t lines_done)> on_progress;
  // Called for each skipped line or image: (line number, image path or "", reason).
  std::function<void(std::size_t line, const std::string& image, const std::string& reason)> on_skip;
};

struct IngestReport {
  std::size_t lines = 0;
  std::size_t products_added = 0;
  std::size_t products_updated = 0;    // metadata or images changed
  std::size_t products_unchanged = 0;
  std::size_t products_deleted = 0;
  std::size_t images_embedded = 0;     // decoded and embedded in this import
  std::size_t images_reused = 0;       // same bytes, same model: vector kept
  std::size_t lines_skipped = 0;
  std::size_t images_skipped = 0;
  double seconds = 0;
  std::size_t skipped() const { return lines_skipped + images_skipped; }
};

// How results are ordered. Sorting by a product field orders the best visual
// matches (SearchOptions::depth of them, under the filter) by that field, so a
// price sort still answers the photo rather than listing the cheapest products.
enum class Sort {
  kBestMatch,  // visual similarity, best first
  kPriceAsc,   // cheapest first; ties by similarity
  kPriceDesc,  // dearest first; ties by similarity
  kRating,     // highest rating first; ties by similarity
};

// Parses "best", "price_asc", "price_desc", "rating"; Error(kInvalidInput) otherwise.
Sort parse_sort(const std::string& name);
const char* to_string(Sort sort);

// How a filtered search finds its candidates. kAuto chooses per query by how many
// vectors pass the filter; the others force one way, for benchmarks and tests.
enum class FilterStrategy {
  kAuto,
  kExact,  // exact scan over the vectors of the matching products only
  kIndex,  // the index's own search (HNSW graph, IVF lists, flat scan) restricted to the matching vectors
};

struct SearchOptions {
  // When set, only products passing it are returned: it is applied inside the
  // nearest-neighbour search, so a query returns k products whenever k match.
  std::optional<filter::Filter> filter;
  Sort sort = Sort::kBestMatch;
  // The candidate set: the best `depth` visual matches under the filter (never
  // fewer than k). Sorting by a field and facet counts work on it. 0: kDefaultDepth.
  int depth = 0;
  bool facets = false;  // fill QueryResult::facets, counted over the candidate set
  filter::FacetOptions facet_options;
  FilterStrategy strategy = FilterStrategy::kAuto;
};

struct ProductHit {
  std::string product_id;
  float score = 0;              // best cosine similarity among the product's images
  std::int64_t image_id = 0;    // that best image
  catalog::Product product;     // filled when details are asked for
};

struct QueryResult {
  std::vector<ProductHit> hits;          // best first (or in the order asked for), one per product
  std::string error;                     // non-empty when this query failed (results empty)
  std::optional<filter::Facets> facets;  // when asked for: counts over the candidate set
  std::size_t matched = 0;               // products in the catalog that pass the filter (all, without one)
  std::string strategy;                  // how candidates were found: "index", "exact", "index+exact", "none"
};

struct EngineInfo {
  std::int64_t products = 0;
  std::int64_t images = 0;
  std::int64_t embedded = 0;
  std::string model;             // identity
  std::string index_factory;
  std::size_t index_vectors = 0;
  std::uintmax_t index_bytes = 0;
};

class Engine {
 public:
  // Opens (creating when new) a data folder. Throws Error with a message naming
  // the problem: unreadable store, corrupt model, model mismatch.
  static std::unique_ptr<Engine> open(const std::filesystem::path& data_dir, const OpenOptions& options);
  ~Engine();

  // Thread safety: every method may be called from any thread. Searches run
  // concurrently with each other and with writes; a search sees the catalog
  // before or after a write, never half of it. Writes are serialised.

  // Imports a catalog file (JSONL or CSV). Image paths are relative to the
  // catalog file and may not leave its folder. Bad lines and bad images are
  // reported through options.on_skip and skipped; the import continues. Each
  // batch is committed durably before the next is read. Re-importing the same
  // file changes nothing; changed metadata is updated without re-embedding
  // images whose bytes did not change. The index is rebuilt and saved at the end.
  IngestReport ingest(const std::filesystem::path& catalog_file, const IngestOptions& options);

  // Applies catalog entries (adds, updates, deletions) whose image paths are
  // relative to image_root, with the same rules and report as ingest(). When it
  // returns, the changes are committed and searchable.
  IngestReport apply(const std::vector<catalog::CatalogEntry>& entries, const std::filesystem::path& image_root,
                     const IngestOptions& options);

  // Deletes products by id; returns how many existed. Index is updated.
  std::size_t delete_products(const std::vector<std::string>& ids);

  // Searches with decoded query images; one result per query with up to k
  // products (fewer only when fewer products pass the filter), each product
  // once, ranked by its best-matching image (or as options.sort says).
  // with_details fills ProductHit::product. Price, stock and rating changes
  // written through this engine are seen by the next search.
  // Throws Error(kInvalidInput) when k or options.depth is outside 0..kMaxK (k from 1).
  std::vector<QueryResult> search(const std::vector<image::Image>& queries, int k, bool with_details,
                                  const SearchOptions& options = {}) const;

  // Decodes files (bounded by the decode limits) and searches; a file that cannot
  // be read or decoded gets an error in its result, the others are searched.
  std::vector<QueryResult> search_files(const std::vector<std::filesystem::path>& files, int k,
                                        bool with_details, const SearchOptions& options = {}) const;

  // Embeds decoded images: images.size() x dim() floats, row-major, L2-normalised.
  std::vector<float> embed(const std::vector<image::Image>& images) const;

  // Searches with query vectors (n x dim, row-major, L2-normalised like the
  // model's): what search() does after embedding. For benchmarks and tests.
  std::vector<QueryResult> search_vectors(const float* vectors, std::size_t n, int k, bool with_details,
                                          const SearchOptions& options = {}) const;

  // Products that look like the given product ("more like this"): its own
  // stored image vectors are the query; the product itself is left out.
  // Throws Error(kNotFound) for an unknown id.
  QueryResult similar_products(const std::string& product_id, int k, bool with_details,
                               const SearchOptions& options = {}) const;

  // The embedding dimension of the model.
  int dim() const;

  // The file an image of a product was read from (position from 0), if any.
  std::optional<std::filesystem::path> image_source(const std::string& product_id, int position) const;

  // The product with that id, if any.
  std::optional<catalog::Product> product(const std::string& id) const;
  std::vector<std::string> product_ids() const;

  static constexpr int kMaxK = 1000;
  static constexpr int kDefaultDepth = 100;

  EngineInfo info() const;

  // The smallest side a query image needs for the model (JPEGs larger than
  // twice this are decoded at reduced size); pass to image::decode.
  int query_min_side() const;
  const image::DecodeLimits& limits() const { return limits_; }

 private:
  // What searches read: replaced whole (copy-on-write) by writers, so a search
  // holds one consistent version for its whole duration without locking.
  struct Snapshot;
  struct SnapshotVectors;

  Engine() = default;
  std::shared_ptr<const Snapshot> snapshot() const;
  void publish_index(const std::string& why);  // requires write_mutex_
  void publish(
      std::shared_ptr<SnapshotVectors> vectors);  // requires write_mutex_; reads the table from the store
  void load_or_rebuild_index();                   // requires write_mutex_
  void publish_metadata(const std::vector<std::string>& changed);     // requires write_mutex_
  void publish_after_write(const std::vector<std::string>& changed);  // requires write_mutex_
  // Up to `want` products per query that pass options.filter, best visual match
  // first; `exclude` is never among them.
  std::vector<QueryResult> candidates(const Snapshot& snap, const float* vectors, std::size_t n,
                                      std::size_t want, const std::string& exclude,
                                      const SearchOptions& options) const;
  void fill_details(std::vector<QueryResult>& results) const;

  std::filesystem::path dir_;
  image::DecodeLimits limits_;
  std::string index_factory_;
  std::size_t exact_scan_max_vectors_ = 0;
  std::function<void(const std::string&)> on_message_;
  std::unique_ptr<embed::Embedder> embedder_;

  mutable std::mutex write_mutex_;                // one writer at a time
  std::unique_ptr<catalog::Store> store_;        // the writers' connection
  mutable std::mutex reader_mutex_;
  std::unique_ptr<catalog::Store> reader_;       // the readers' connection (WAL: never blocked by writers)
  std::shared_ptr<const Snapshot> snapshot_;     // accessed with std::atomic_load/atomic_store
};

}  // namespace lookalike::search
