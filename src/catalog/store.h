// The catalog store: SQLite in WAL mode with synchronous=FULL, the source of truth
// for products, their images and the images' embeddings. Everything else (the
// vector index) is derived from it and can be rebuilt from it.
//
// Thread safety: a Store is one SQLite connection; use it from one thread at a
// time. Several Store objects (in threads or processes) may open the same file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "catalog/event.h"
#include "catalog/product.h"

struct sqlite3;

namespace lookalike::catalog {

struct ImageRecord {
  std::int64_t id = 0;      // assigned by the store; also the image's id in the vector index
  std::string product_id;
  int position = 0;         // order of the image within its product, from 0
  std::string path;         // as written in the catalog (relative to the catalog file)
  std::string source;       // the resolved file it was read from
  std::string sha256;       // lower-case hex of the file's bytes
  std::string model;        // identity of the model that made `embedding`; empty if none
  std::vector<float> embedding;
  // The image's colour descriptor (image/colour.h: kColourBins floats, all 0 when the
  // image shows no product); empty when not computed yet (stored before the store had
  // colours, or the source could not be read again).
  std::vector<float> colour;
};

// A product's popularity: its decayed, type-weighted event count as of at_ms
// (catalog/event.h: event_weight, kPopularityHalfLifeDays).
struct Popularity {
  double score = 0;
  std::int64_t at_ms = 0;
};

// A shopper's taste: the decayed, type-weighted sum of the vectors of the products
// they engaged with (kTasteHalfLifeDays), as of at_ms, made with `model`.
struct Taste {
  std::string model;
  std::vector<float> vector;
  double weight = 0;  // decayed sum of the event weights, as of at_ms
  std::int64_t at_ms = 0;
};

// A shopper's engagement with one attribute value: the decayed, type-weighted sum of
// their events on products with that value (kTasteHalfLifeDays), as of at_ms. kind is
// "brand", "color", "material" or "price_band" (rank/rank.h: kTasteKinds).
struct Affinity {
  std::string kind;
  std::string value;
  double weight = 0;
  std::int64_t at_ms = 0;
};

// What ranking reads of a product, in one lookup.
struct RankingSignals {
  double price = 0;
  std::int64_t stock = 0;
  double rating = 0;
  std::int64_t rating_count = 0;
  Popularity popularity;                   // zero when it has no events
  std::optional<std::int64_t> first_seen_ms;
  std::string brand;
  std::map<std::string, std::string> attributes;
};

// A product whose text matches a query (Store::match_text).
struct TextMatch {
  std::string product_id;
  // How well: minus SQLite's FTS5 bm25() over title, brand, category and attribute
  // values, all weighted 1. Above 0; higher is better; comparable within one query only.
  double relevance = 0;
};

class TextQuery;  // catalog/text.h

struct Counts {
  std::int64_t products = 0;
  std::int64_t images = 0;
  std::int64_t embedded = 0;  // images with an embedding
};

class Store {
 public:
  // Opens or creates the database at path, creating the schema when new and
  // migrating it when old. Throws Error(kIO) when the file cannot be opened or is
  // not a lookalike store (names the path).
  static std::unique_ptr<Store> open(const std::filesystem::path& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // A write transaction (BEGIN IMMEDIATE). Rolled back on destruction unless
  // committed; commit() returns once the change is durable.
  class Transaction {
   public:
    explicit Transaction(Store& store);
    ~Transaction();
    void commit();
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;

   private:
    Store& store_;
    bool done_ = false;
  };

  // A read transaction (BEGIN DEFERRED), for many reads in a row: they all see one
  // state of the store, and SQLite takes its shared lock and checks the write-ahead
  // log once for all of them instead of once per statement. Ended on destruction (it
  // writes nothing). Keep it short: a reader holds back checkpoints while it lasts.
  class ReadTransaction {
   public:
    explicit ReadTransaction(const Store& store);
    ~ReadTransaction();
    ReadTransaction(const ReadTransaction&) = delete;
    ReadTransaction& operator=(const ReadTransaction&) = delete;

   private:
    const Store& store_;
  };

  // Products. upsert_product stores metadata only (Product::images is ignored;
  // images are managed with the image calls) and returns true if the product was
  // new or any field changed.
  std::optional<Product> get_product(const std::string& id) const;  // images filled from image rows
  bool upsert_product(const Product& product);
  bool delete_product(const std::string& id);  // deletes its images too; false if absent
  std::vector<std::string> product_ids() const;  // sorted
  // Every product's metadata in id order, in one query; Product::images is left empty.
  void for_each_product(const std::function<void(const Product& product)>& visit) const;

  // Images.
  std::vector<ImageRecord> images_of(const std::string& product_id, bool with_embeddings) const;
  std::int64_t add_image(const ImageRecord& image);  // returns the new id
  void delete_image(std::int64_t image_id);
  std::optional<ImageRecord> get_image(std::int64_t image_id, bool with_embedding) const;

  // Every embedding made by `model`, in image id order.
  void for_each_embedding(
      const std::string& model,
      const std::function<void(std::int64_t image_id, const std::string& product_id,
                               const std::vector<float>& embedding)>& visit) const;

  // Every product whose title, brand, category and attribute values together contain
  // every term of the query (the last as a prefix when the query says so), as the
  // FTS5 table's tokenizer sees them (catalog/text.h), in no particular order. The
  // table is kept in step with the products by every write, in the same transaction.
  std::vector<TextMatch> match_text(const TextQuery& query) const;

  // Every image, in id order, without embeddings.
  std::vector<ImageRecord> all_images() const;

  // Colour descriptors (ImageRecord::colour). add_image stores the record's; these fill
  // in those of images stored without one. They do not change vectors_version: the
  // engine reads colours whenever it publishes its vectors.
  // Sets image_id's descriptor (no-op when the image is gone). Error(kInvalidInput) when empty.
  void set_image_colour(std::int64_t image_id, const std::vector<float>& colour);
  // The images without a descriptor, in id order, without embeddings.
  std::vector<ImageRecord> images_without_colour() const;
  // Every stored descriptor, in image id order.
  void for_each_colour(
      const std::function<void(std::int64_t image_id, const std::vector<float>& colour)>& visit) const;

  // Vectors of other models, kept beside each image's active one (ImageRecord::model
  // and embedding): written by a reindex before it switches models, and left behind
  // by the switch so that the previous model can be restored without re-embedding.
  // They go with their image when it is deleted.

  // Keeps image_id's vector made by model (replacing one kept before); does nothing
  // when the image no longer exists. Throws Error(kInvalidInput) for an empty model
  // or embedding.
  void keep_vector(const std::string& model, std::int64_t image_id, const std::vector<float>& embedding);
  // Ids of the images with a kept vector of model, ascending.
  std::vector<std::int64_t> kept_vector_ids(const std::string& model) const;
  // The switch, atomically: every active vector not made by model is kept under its
  // own model, every image with a kept vector of model makes it its active one, and
  // then every kept vector of a model other than keep is dropped. Bumps
  // vectors_version. Images without a kept vector of model keep their active one:
  // the caller makes sure there are none.
  void activate_kept_vectors(const std::string& model, const std::string& keep);

  // (source path, product category) of every image whose product has a category,
  // in image id order: the training set of a labelled catalog.
  std::vector<std::pair<std::string, std::string>> labelled_images() const;

  // Small key/value settings (model identity, vector index version, ...).
  std::optional<std::string> get_meta(const std::string& key) const;
  void set_meta(const std::string& key, const std::string& value);

  // Incremented, in the same transaction, by every add_image, delete_image and
  // delete_product that removes images: a vector index built at version v is
  // stale once this differs from v.
  std::int64_t vectors_version() const;

  Counts counts() const;

  // Runs SQLite's quick_check over the whole file (about 0.2 s for the 60,000-product
  // demo store). Throws Error(kIO) naming the file and the first defects when it
  // is corrupt: torn or overwritten pages, truncation, broken b-trees.
  void check_integrity(const std::filesystem::path& path_for_messages) const;

  // Writes a consistent copy of the database, as of one committed transaction, to
  // dest (which must not exist), with SQLite's online backup: other connections
  // and processes keep reading and writing meanwhile. dest is synced before the
  // call returns. Throws Error(kIO), leaving no file at dest, on failure.
  void backup_to(const std::filesystem::path& dest) const;

  // Behaviour signals and ranking profiles. They live in the same file as the
  // products, so they are as durable, and a product's popularity goes with it when it
  // is deleted. Events are a log: they stay when their product is deleted.
  void add_event(const Event& event);
  std::vector<Event> events_of(const std::string& user_id) const;  // oldest first
  std::size_t delete_events_of(const std::string& user_id);        // how many there were
  std::optional<Popularity> popularity(const std::string& product_id) const;
  // The product's current price, stock, rating, popularity, first-seen time, brand and
  // attributes; nullopt when absent.
  std::optional<RankingSignals> ranking_signals(const std::string& product_id) const;
  // Every product's popularity (nullopt: no events) and first-seen time, in one query.
  void for_each_behaviour(
      const std::function<void(const std::string& product_id, const std::optional<Popularity>& popularity,
                               const std::optional<std::int64_t>& first_seen_ms)>& visit) const;
  // Throws Error(kNotFound) when there is no such product.
  void set_popularity(const std::string& product_id, const Popularity& popularity);
  // When the product was first stored (Unix ms); kept across updates of the product.
  std::optional<std::int64_t> first_seen(const std::string& product_id) const;
  std::optional<Taste> taste(const std::string& user_id) const;
  void set_taste(const std::string& user_id, const Taste& taste);
  bool delete_taste(const std::string& user_id);  // false if there was none
  // The attribute half of a shopper's taste, one row per (kind, value), ordered by both.
  std::vector<Affinity> affinities(const std::string& user_id) const;
  void set_affinity(const std::string& user_id, const Affinity& affinity);  // replaces that (kind, value)
  std::size_t delete_affinities(const std::string& user_id);                // how many there were

  // Ranking profiles, as JSON text by name (rank/rank.h reads and writes the text).
  std::optional<std::string> get_profile(const std::string& name) const;
  void put_profile(const std::string& name, const std::string& json_text);
  bool delete_profile(const std::string& name);    // false if absent
  std::vector<std::string> profile_names() const;  // sorted

 private:
  struct Statements;  // the connection's prepared statements, defined in store.cpp
  explicit Store(sqlite3* db);
  sqlite3* db_;
  std::unique_ptr<Statements> statements_;
};

}  // namespace lookalike::catalog
