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
#include <memory>
#include <optional>
#include <string>
#include <vector>

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
};

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

 private:
  struct Statements;  // the connection's prepared statements, defined in store.cpp
  explicit Store(sqlite3* db);
  sqlite3* db_;
  std::unique_ptr<Statements> statements_;
};

}  // namespace lookalike::catalog
