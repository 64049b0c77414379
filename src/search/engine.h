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

#include "catalog/event.h"
#include "catalog/product.h"
#include "catalog/text.h"
#include "embed/embedder.h"
#include "filter/filter.h"
#include "image/colour.h"
#include "image/image.h"
#include "rank/rank.h"

namespace lookalike::catalog {
class Store;
}
namespace lookalike::index {
class VectorIndex;
}

namespace lookalike::search {

// The name that selects the raw-pixel baseline instead of a model file.
inline constexpr const char* kPixelsModel = "pixels";

// Path of the default model, shipped in this repository for the demo catalog:
// models/fashion-fused.lkm, the category model fused with the self-supervised one
// for exact items (README "Choosing a model").
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
  // When set, only products whose title, brand, category or attribute values contain
  // every word are returned (catalog/text.h): applied inside the search like the
  // filter, and with it. The ranking profile's text component weighs how well they
  // match. Alone (search_text) it is a search by text, ranked by that relevance.
  std::optional<catalog::TextQuery> text;
  Sort sort = Sort::kBestMatch;
  // The candidate set: the best `depth` visual matches under the filter (never
  // fewer than k). Sorting by a field and facet counts work on it. 0: kDefaultDepth.
  int depth = 0;
  bool facets = false;  // fill QueryResult::facets, counted over the candidate set
  filter::FacetOptions facet_options;
  FilterStrategy strategy = FilterStrategy::kAuto;
  // Variant grouping: products sharing a non-empty group_id (ASCII case ignored) are
  // one family, shown once, in the place of its best variant in the final order (after
  // re-ranking or sorting), by the variant that matches the photo best when re-ranked
  // (search/variants.h, Representative), with the family's other variants as
  // ProductHit::variants. k, depth and the candidate set then count families, not
  // products, so k families come back whenever k families pass the filter. "More like this" leaves out the product's
  // whole family (its own variants are not recommendations). Off: every product is
  // its own hit, as before.
  bool group_variants = true;
  // Products that look like the photo, or the photo's exact product (embed::Match):
  // with a fused model that has exact weights, kExact searches with those.
  embed::Match match = embed::Match::kSimilar;
};

// Swatches listed on one hit; a larger family lists the first ones by product id
// (ProductHit::family_size says how many there are).
inline constexpr std::size_t kMaxSwatches = 50;

// Another variant of a hit's product family (a swatch), read from the search
// snapshot's metadata table (no store lookup).
struct Variant {
  std::string product_id;
  std::string color;  // attributes.color; empty when it has none
  std::string size;   // attributes.size; empty when it has none
  double price = 0;
  std::string currency;
  std::int64_t stock = 0;
  std::size_t images = 0;      // images the catalog lists for it; its swatch image is the first
  std::optional<float> score;  // its final score, when it was among the candidates
};

struct ProductHit {
  std::string product_id;
  float score = 0;            // the final score: the similarity, or the ranking profile's score
  std::int64_t image_id = 0;  // the product's best-matching image
  catalog::Product product;   // filled when details are asked for
  float similarity = 0;       // best cosine similarity among the product's images
  std::optional<rank::Score> ranking = std::nullopt;  // the score's parts, when the search was re-ranked
  // When grouped: the family's other live variants (at most kMaxSwatches, by product
  // id), and how many variants the family has, this one included.
  std::vector<Variant> variants = {};
  std::size_t family_size = 1;
  std::optional<double> text_relevance =
      std::nullopt;  // catalog::TextMatch::relevance, when the query has text
};

// How a search is re-ranked (rank/rank.h): the nearest `depth` products by look are
// the candidates, the profile scores them, the best k are returned.
struct RankRequest {
  // A stored profile's name, or "default", or "visual": the look order itself, not
  // re-ranked (score = similarity, no ranking parts).
  std::string profile = rank::kDefaultProfile;
  std::string user_id;  // whose taste counts; empty: nobody's
  rank::PriceTarget price;
  int depth = 0;  // candidates per query, 1..rank::kMaxCandidateDepth; 0: the profile's candidate_depth
  // Used instead of the profile named `profile` when set: evaluations compare weights
  // with it without storing a profile (the API and the search command never set it).
  std::optional<rank::Profile> custom_profile;
};

struct EventReport {
  std::size_t accepted = 0;
  std::vector<std::pair<std::size_t, std::string>> rejected;  // (index in the batch, why)
};

struct UserSummary {
  std::size_t events = 0;
  bool has_taste = false;
};

struct QueryResult {
  std::vector<ProductHit> hits;          // best first (or in the order asked for), one per product
  std::string error;                     // non-empty when this query failed (results empty)
  std::optional<filter::Facets> facets;  // when asked for: counts over the candidate set
  std::size_t matched = 0;               // products in the catalog that pass the filter (all, without one)
  std::string strategy;    // how candidates were found: "index", "exact", "index+exact", "none", "text"
  bool text_only = false;  // a search by text alone: no photo, so similarity is 0
  // Identity of the model that embedded the query and made every vector searched:
  // one model per result, also while a reindex switches models.
  std::string model;
};

// How far a reindex has come (Engine::reindex_progress).
struct ReindexProgress {
  bool running = false;
  std::string target;      // identity of the model being switched to
  std::size_t done = 0;    // images with a vector of the target model
  std::size_t total = 0;   // images in the catalog when counted
  std::string last_error;  // why the last reindex failed; empty when it did not
};

struct ReindexOptions {
  // Called after each batch with images done and total. May be empty.
  std::function<void(std::size_t done, std::size_t total)> on_progress;
};

struct ReindexReport {
  std::string from;          // identity of the model active before
  std::string to;            // identity active now
  std::size_t images = 0;    // images that have a vector of `to`
  std::size_t embedded = 0;  // read, decoded and embedded by this reindex
  std::size_t reused = 0;    // already had a vector of `to` (kept from before, or an earlier attempt)
  double seconds = 0;
};

struct EngineInfo {
  std::int64_t products = 0;
  std::int64_t images = 0;
  std::int64_t embedded = 0;
  std::string model;           // identity of the active model
  std::vector<std::string> model_parts;  // a fused model's parts (embed::ModelInfo::parts)
  std::string previous_model;  // identity `reindex --rollback` restores; empty when none
  ReindexProgress reindex;     // the running or last reindex of this process
  std::string index_factory;
  std::size_t index_vectors = 0;
  std::uintmax_t index_bytes = 0;
};

class BehaviourBoard;

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
  // products (fewer only when fewer products pass the filter, or the profile hides
  // some), each product once, ranked by its best-matching image, or re-ranked by
  // `ranking` when given (it reads the current price, stock, rating and popularity
  // of each candidate), or in the order options.sort asks for (which replaces the
  // ranking). with_details fills ProductHit::product. Price, stock and rating
  // changes written through this engine are seen by the next search.
  // Throws Error(kInvalidInput) when k or a depth is out of range (k from 1),
  // Error(kNotFound) for an unknown profile.
  std::vector<QueryResult> search(const std::vector<image::Image>& queries, int k, bool with_details,
                                  const SearchOptions& options = {}, const RankRequest* ranking = nullptr) const;

  // Decodes files (bounded by the decode limits) and searches; a file that cannot
  // be read or decoded gets an error in its result, the others are searched.
  std::vector<QueryResult> search_files(const std::vector<std::filesystem::path>& files, int k,
                                        bool with_details, const SearchOptions& options = {},
                                        const RankRequest* ranking = nullptr) const;

  // Searches by text alone (options.text, required): the products matching it and
  // passing options.filter, best bm25 relevance first (score = relevance), or
  // re-ranked by `ranking` with the text relevance in the visual component's place
  // (rank::text_only_profile), or in options.sort's order over the `depth` most
  // relevant; facets count those. Products without images are found too. Throws
  // Error(kInvalidInput) when options.text is missing or k or a depth is out of range,
  // Error(kNotFound) for an unknown profile.
  QueryResult search_text(int k, bool with_details, const SearchOptions& options,
                          const RankRequest* ranking = nullptr) const;

  // Embeds decoded images: images.size() x dim() floats, row-major, L2-normalised.
  std::vector<float> embed(const std::vector<image::Image>& images) const;

  // Searches with query vectors (n x dim, row-major, L2-normalised like the
  // model's): what search() does after embedding. For benchmarks and tests.
  std::vector<QueryResult> search_vectors(const float* vectors, std::size_t n, int k, bool with_details,
                                          const SearchOptions& options = {},
                                          const RankRequest* ranking = nullptr) const;

  // Products that look like the given product ("more like this"): its own
  // stored image vectors are the query; the product itself is left out, and with
  // options.group_variants (the default) its whole family.
  // Throws Error(kNotFound) for an unknown id.
  QueryResult similar_products(const std::string& product_id, int k, bool with_details,
                               const SearchOptions& options = {}, const RankRequest* ranking = nullptr) const;

  // The embedding dimension of the model.
  int dim() const;

  // Behaviour events (catalog/event.h). Each accepted event is stored and updates its
  // product's popularity and its user's taste in place, without re-embedding or
  // rebuilding the index; searches see it when this returns. An event naming an
  // unknown product is rejected (with its index and why), the others are accepted,
  // all in one transaction. Runs alongside imports (it does not wait for a whole
  // import, only for the store's write lock between its batches).
  EventReport record_events(const std::vector<catalog::Event>& events);

  // Forgets a shopper: removes their events and taste, and takes their events back
  // out of the products' popularity. Returns false when nothing was known of them.
  bool forget_user(const std::string& user_id);
  // forget_user for many shoppers in one transaction; returns how many were known.
  std::size_t forget_users(const std::vector<std::string>& user_ids);
  std::optional<UserSummary> user(const std::string& user_id) const;  // nullopt: unknown

  // Ranking profiles (rank/rank.h). "default" always exists (the built-in one until
  // it is replaced; deleting it restores the built-in); "visual" is built in and
  // fixed. Throws Error(kNotFound) for an unknown name, Error(kInvalidInput) on an
  // attempt to change "visual".
  rank::Profile ranking_profile(const std::string& name) const;
  std::vector<rank::Profile> ranking_profiles() const;  // default, visual, then the others by name
  void put_ranking_profile(const rank::Profile& profile);
  bool delete_ranking_profile(const std::string& name);  // false when there was no such profile

  // The file an image of a product was read from (position from 0), if any.
  std::optional<std::filesystem::path> image_source(const std::string& product_id, int position) const;

  // The product with that id, if any.
  std::optional<catalog::Product> product(const std::string& id) const;

  // Every variant of the product's family (SearchOptions::group_variants), the
  // product itself included, as the store holds them now, in product id order; a
  // product without group_id is a family of one. Writes answered before the call
  // are seen. Throws Error(kNotFound) for an unknown id.
  std::vector<catalog::Product> variants(const std::string& product_id) const;
  std::vector<std::string> product_ids() const;

  // Switches the catalog to another model without stopping searches: every
  // image is read again from its source (checked against its stored SHA-256),
  // embedded with the new model in batches and kept beside its active vector,
  // while searches and writes go on with the active model; then, under the write
  // lock, images added meanwhile are embedded too, the store switches every
  // vector and the active model in one transaction, the index of the new model is
  // built and published with the model as one snapshot. A search runs wholly on
  // the old model or wholly on the new. The vectors of the model that was active
  // are kept, so switching back (rollback(), or reindex with that file) embeds
  // nothing. model: a model file or kPixelsModel; it is validated first (format,
  // checksum, and a probe image must give finite unit vectors).
  // Throws Error(kInvalidInput/kNotFound) for a bad model file (the active model
  // stays), Error(kInvalidInput) when another reindex is running, and
  // Error(kIO/kNotFound) naming the image when a source file is gone or changed
  // since import (vectors embedded so far are kept: a later reindex goes on from there).
  // Blocking; run it on a thread of its own to serve meanwhile.
  ReindexReport reindex(const std::string& model, const ReindexOptions& options);

  // Restores the model that was active before the last switch (its vectors were
  // kept). Throws Error(kNotFound) when there is none.
  ReindexReport rollback(const ReindexOptions& options);

  // Loads and probes a model (file or kPixelsModel) as reindex does first; returns
  // its identity. Throws like reindex for a missing, corrupt or broken model.
  static std::string check_model(const std::string& model);

  ReindexProgress reindex_progress() const;

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
  std::string active_model() const;  // identity of the model searches use now
  // Builds the index of embedder's vectors and publishes both as the new snapshot.
  void publish_index(std::shared_ptr<const embed::Embedder> embedder,
                     const std::string& why);                                   // requires write_mutex_
  void load_or_rebuild_index(std::shared_ptr<const embed::Embedder> embedder);  // requires write_mutex_
  // Computes the colours of images stored without one (before the store kept colours)
  // from their source files, checked against their SHA-256; images whose file is gone
  // or changed stay unknown, with a message. Requires write_mutex_.
  void fill_missing_colours();
  // Publishes vectors with a metadata table read from the store. Requires write_mutex_.
  void publish(std::shared_ptr<SnapshotVectors> vectors);
  // Publishes the current vectors with the metadata of `changed` products re-read. Requires write_mutex_.
  void publish_metadata(const std::vector<std::string>& changed);
  // Puts the model files in line with the store after a switch's commit (also one a crash interrupted).
  void settle_model_files(bool after_crash);
  // Embeds and keeps target vectors for images that have none; returns how many.
  std::size_t embed_missing(const embed::Embedder& target, bool holding_write_lock, ReindexReport& report,
                            const ReindexOptions& options);
  void set_progress(std::size_t done, std::size_t total, const ReindexOptions& options);
  // Runs a write, then publishes the index if the store's vectors changed, or else the
  // metadata of the products in `changed` (read after the write), also when the write
  // throws after committing some batches. Requires write_mutex_.
  void publish_after(const std::function<void()>& write, const std::vector<std::string>& changed);
  // Up to `want` products per query that pass options.filter and match the text
  // (text_relevance by table row; empty: no text), best visual match first; `exclude`
  // is never among them. With options.group_variants, `want` counts families (with
  // every variant met on the way) and `exclude` takes its family with it.
  std::vector<QueryResult> candidates(const Snapshot& snap, const float* vectors, std::size_t n,
                                      std::size_t want, const std::string& exclude,
                                      const SearchOptions& options,
                                      const std::vector<double>& text_relevance) const;
  // The relevance of every metadata table row to options.text (0: no match), read from
  // the store's full-text table now; empty when options.text is not set.
  std::vector<double> text_relevance(const Snapshot& snap, const SearchOptions& options) const;
  // search() after embedding, on one snapshot (so one model): n vectors, one per
  // query, or with `views` (vectors per query, summing to n) several per query, each
  // product scored by its query's best vector. query_colours, when given, holds the
  // colour of each query for the ranking's colour component; without it that
  // component is 0.
  std::vector<QueryResult> search_snapshot(
      const Snapshot& snap, const float* vectors, std::size_t n, int k, bool with_details,
      const SearchOptions& options, const RankRequest* ranking,
      const std::vector<image::ColourDescriptor>* query_colours = nullptr,
      const std::vector<std::size_t>& views = {}) const;
  void fill_details(std::vector<QueryResult>& results) const;
  // The colour of an image in snap; nullptr when unknown (or not in snap).
  static const image::ColourDescriptor* colour_of(const Snapshot& snap, std::int64_t image_id);
  // The metadata table of snap (for code outside engine.cpp, where Snapshot is defined).
  static const filter::Table& table_of(const Snapshot& snap);
  // The profile and candidate depth of a search; nullopt without ranking (src/search/ranking.cpp).
  struct PreparedRanking {
    rank::Profile profile;
    int depth = 0;
  };
  std::optional<PreparedRanking> prepare_ranking(const RankRequest* ranking, int k) const;
  // Sets each hit's similarity, re-ranks the candidates when asked (colours of their
  // images from snap, compared with query_colours[i] for results[i] when given), groups
  // variants when asked (search/variants.h), keeps the best k (families).
  void finish_results(const Snapshot& snap, std::vector<QueryResult>& results, int k,
                      const RankRequest* ranking, const std::optional<PreparedRanking>& prepared,
                      bool with_details, const std::vector<image::ColourDescriptor>* query_colours,
                      bool group_variants) const;

  std::filesystem::path dir_;
  image::DecodeLimits limits_;
  std::string index_factory_;
  std::size_t exact_scan_max_vectors_ = 0;
  std::function<void(const std::string&)> on_message_;

  std::mutex reindex_mutex_;  // one reindex at a time
  mutable std::mutex progress_mutex_;
  ReindexProgress progress_;

  mutable std::mutex write_mutex_;                // one writer at a time
  std::unique_ptr<catalog::Store> store_;        // the writers' connection
  mutable std::mutex reader_mutex_;
  std::unique_ptr<catalog::Store> reader_;       // the readers' connection (WAL: never blocked by writers)
  std::shared_ptr<const Snapshot> snapshot_;     // accessed with std::atomic_load/atomic_store
  mutable std::mutex signals_mutex_;
  std::unique_ptr<catalog::Store> signals_;  // events and profiles: not held up by a long import
  // Popularity and first-seen times for ranking (search/behaviour_board.h). Written
  // with signals_mutex_ held, after the store, so it never lags a returned write.
  std::unique_ptr<BehaviourBoard> behaviour_;
  // A connection for re-ranking and text matching, one per concurrent search (opened
  // on demand, then reused), so that concurrent searches do not queue for reader_.
  // It goes back to the pool when the lease ends, also when a lookup throws.
  class ReaderLease {
   public:
    explicit ReaderLease(const Engine& engine);
    ~ReaderLease();
    ReaderLease(const ReaderLease&) = delete;
    ReaderLease& operator=(const ReaderLease&) = delete;
    catalog::Store* operator->() const { return store_.get(); }
    catalog::Store& operator*() const { return *store_; }

   private:
    const Engine& engine_;
    std::unique_ptr<catalog::Store> store_;
  };
  mutable std::mutex ranking_readers_mutex_;
  mutable std::vector<std::unique_ptr<catalog::Store>> ranking_readers_;
};

}  // namespace lookalike::search
