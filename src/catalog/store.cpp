#include "catalog/store.h"

#include <sqlite3.h>

#include <array>
#include <charconv>
#include <chrono>
#include <cstring>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

#include "catalog/text.h"
#include "common/error.h"
#include "common/files.h"

namespace lookalike::catalog {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr std::int64_t kApplicationId = 0x4C4B4C4B;  // "LKLK" in the file header
constexpr int kBusyTimeoutMs = 5000;
const std::string kVectorsVersionKey = "vectors_version";

// kMigrations[v] brings the schema from version v to v + 1; version 0 is an empty file.
// Image ids are AUTOINCREMENT so that an id deleted from the store is never given to another
// image while a stale vector index may still hold it.
const char* const kMigrations[] = {
    R"sql(
CREATE TABLE products (
  id TEXT PRIMARY KEY NOT NULL,
  title TEXT NOT NULL,
  brand TEXT NOT NULL,
  category TEXT NOT NULL,
  price REAL NOT NULL,
  currency TEXT NOT NULL,
  rating REAL NOT NULL,
  rating_count INTEGER NOT NULL,
  stock INTEGER NOT NULL,
  attributes TEXT NOT NULL,
  group_id TEXT NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE images (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  product_id TEXT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  path TEXT NOT NULL,
  source TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  model TEXT NOT NULL,
  embedding BLOB
);
CREATE INDEX images_by_product ON images (product_id, position);
CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('vectors_version', '0');
)sql",
    // Vectors of a model other than the active one (images.model), kept while a
    // reindex prepares a switch and afterwards so that the previous model can be restored.
    R"sql(
CREATE TABLE kept_vectors (
  model TEXT NOT NULL,
  image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
  embedding BLOB NOT NULL,
  PRIMARY KEY (model, image_id)
) WITHOUT ROWID;
CREATE INDEX kept_vectors_by_image ON kept_vectors (image_id);
)sql",
    // Behaviour signals and ranking profiles. first_seen is kept by a trigger so that
    // no product write has to know about it.
    R"sql(
CREATE TABLE events (
  id INTEGER PRIMARY KEY,
  user_id TEXT NOT NULL,
  product_id TEXT NOT NULL,
  type INTEGER NOT NULL,
  time_ms INTEGER NOT NULL
);
CREATE INDEX events_by_user ON events (user_id, time_ms);
CREATE TABLE popularity (
  product_id TEXT PRIMARY KEY NOT NULL REFERENCES products (id) ON DELETE CASCADE,
  score REAL NOT NULL,
  at_ms INTEGER NOT NULL
);
CREATE TABLE first_seen (
  product_id TEXT PRIMARY KEY NOT NULL REFERENCES products (id) ON DELETE CASCADE,
  at_ms INTEGER NOT NULL
);
INSERT INTO first_seen (product_id, at_ms) SELECT id, updated_at FROM products;
CREATE TRIGGER products_first_seen AFTER INSERT ON products BEGIN
  INSERT OR IGNORE INTO first_seen (product_id, at_ms) VALUES (new.id, new.updated_at);
END;
CREATE TABLE tastes (
  user_id TEXT PRIMARY KEY NOT NULL,
  model TEXT NOT NULL,
  vector BLOB NOT NULL,
  weight REAL NOT NULL,
  at_ms INTEGER NOT NULL
);
CREATE TABLE profiles (name TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL, updated_at INTEGER NOT NULL);
)sql",
    // The colour descriptor of each image (image/colour.h), float32 little-endian. NULL
    // for images stored before this migration and images whose source could not be read
    // again: the engine fills them from their source files when it opens the folder.
    R"sql(
ALTER TABLE images ADD COLUMN colour BLOB;
)sql",
    // Full-text search (catalog/text.h): an FTS5 table of each product's title, brand,
    // category and attribute values (not keys: "color" would match every product with
    // one), kept in step with products by triggers, so that every write path (import,
    // PUT, DELETE, deletion lines, whatever comes later) updates it in the same
    // transaction. Its rowids come from text_rows rather than from products' implicit
    // rowids, which a VACUUM may renumber. The tokenizer is kTextTokenizer.
    R"sql(
CREATE TABLE text_rows (row INTEGER PRIMARY KEY, product_id TEXT NOT NULL UNIQUE);
CREATE VIRTUAL TABLE product_text USING fts5 (
  title, brand, category, attributes,
  tokenize = 'porter unicode61 remove_diacritics 2'
);
INSERT INTO text_rows (product_id) SELECT id FROM products ORDER BY id;
INSERT INTO product_text (rowid, title, brand, category, attributes)
  SELECT r.row, p.title, p.brand, p.category,
         (SELECT coalesce(group_concat(value, ' '), '') FROM json_each(p.attributes))
  FROM products p JOIN text_rows r ON r.product_id = p.id;
CREATE TRIGGER products_text_insert AFTER INSERT ON products BEGIN
  INSERT INTO text_rows (product_id) VALUES (new.id);
  INSERT INTO product_text (rowid, title, brand, category, attributes)
  VALUES ((SELECT row FROM text_rows WHERE product_id = new.id), new.title, new.brand, new.category,
          (SELECT coalesce(group_concat(value, ' '), '') FROM json_each(new.attributes)));
END;
CREATE TRIGGER products_text_update AFTER UPDATE OF title, brand, category, attributes ON products BEGIN
  UPDATE product_text SET title = new.title, brand = new.brand, category = new.category,
    attributes = (SELECT coalesce(group_concat(value, ' '), '') FROM json_each(new.attributes))
  WHERE rowid = (SELECT row FROM text_rows WHERE product_id = new.id);
END;
CREATE TRIGGER products_text_delete AFTER DELETE ON products BEGIN
  DELETE FROM product_text WHERE rowid = (SELECT row FROM text_rows WHERE product_id = old.id);
  DELETE FROM text_rows WHERE product_id = old.id;
END;
)sql",
    // A shopper's decayed engagement with attribute values (brand, colour, material,
    // price band): the attribute half of their taste, beside the vector in tastes.
    R"sql(
CREATE TABLE taste_affinities (
  user_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  value TEXT NOT NULL,
  weight REAL NOT NULL,
  at_ms INTEGER NOT NULL,
  PRIMARY KEY (user_id, kind, value)
) WITHOUT ROWID;
)sql",
};
constexpr std::int64_t kSchemaVersion = std::size(kMigrations);

enum Sql : std::size_t {
  kIdentify,
  kJournalMode,
  kBegin,
  kBeginRead,
  kCommit,
  kSavepoint,
  kRelease,
  kSelectProduct,
  kUpsertProduct,
  kDeleteProductImages,
  kDeleteProduct,
  kProductIds,
  kImagesOf,
  kGetImage,
  kInsertImage,
  kDeleteImage,
  kEmbeddings,
  kLabelledImages,
  kGetMeta,
  kSetMeta,
  kBumpVectorsVersion,
  kCounts,
  kAllImages,
  kKeepVector,
  kKeptIds,
  kStashActive,
  kActivateKept,
  kDropKept,
  kInsertEvent,
  kEventsOf,
  kDeleteEventsOf,
  kGetPopularity,
  kSetPopularity,
  kFirstSeen,
  kGetTaste,
  kSetTaste,
  kDeleteTaste,
  kGetProfile,
  kPutProfile,
  kDeleteProfile,
  kProfileNames,
  kRankingSignals,
  kAllProducts,
  kAllBehaviour,
  kAffinitiesOf,
  kSetAffinity,
  kDeleteAffinitiesOf,
  kSetImageColour,
  kImagesWithoutColour,
  kColours,
  kMatchText,
  kSqlCount
};

#define LK_IMAGE_COLUMNS \
  "id, product_id, position, path, source, sha256, model, CASE WHEN ?2 THEN embedding END, colour"

const char* const kSqlText[] = {
    // kIdentify
    "SELECT (SELECT application_id FROM pragma_application_id), "
    "(SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_master)",
    // kJournalMode
    "PRAGMA journal_mode = WAL",
    // kBegin
    "BEGIN IMMEDIATE",
    // kBeginRead
    "BEGIN DEFERRED",
    // kCommit
    "COMMIT",
    // kSavepoint
    "SAVEPOINT lookalike_call",
    // kRelease
    "RELEASE lookalike_call",
    // kSelectProduct
    "SELECT p.id, p.title, p.brand, p.category, p.price, p.currency, p.rating, p.rating_count, "
    "p.stock, p.attributes, p.group_id, i.path FROM products p "
    "LEFT JOIN images i ON i.product_id = p.id WHERE p.id = ?1 ORDER BY i.position, i.id",
    // kUpsertProduct: the WHERE makes an unchanged product a no-op, seen as zero changes.
    "INSERT INTO products (id, title, brand, category, price, currency, rating, rating_count, "
    "stock, attributes, group_id, updated_at) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) "
    "ON CONFLICT (id) DO UPDATE SET title = excluded.title, brand = excluded.brand, "
    "category = excluded.category, price = excluded.price, currency = excluded.currency, "
    "rating = excluded.rating, rating_count = excluded.rating_count, stock = excluded.stock, "
    "attributes = excluded.attributes, group_id = excluded.group_id, "
    "updated_at = excluded.updated_at "
    "WHERE title IS NOT excluded.title OR brand IS NOT excluded.brand "
    "OR category IS NOT excluded.category OR price IS NOT excluded.price "
    "OR currency IS NOT excluded.currency OR rating IS NOT excluded.rating "
    "OR rating_count IS NOT excluded.rating_count OR stock IS NOT excluded.stock "
    "OR attributes IS NOT excluded.attributes OR group_id IS NOT excluded.group_id",
    // kDeleteProductImages
    "DELETE FROM images WHERE product_id = ?1",
    // kDeleteProduct
    "DELETE FROM products WHERE id = ?1",
    // kProductIds
    "SELECT id FROM products ORDER BY id",
    // kImagesOf
    "SELECT " LK_IMAGE_COLUMNS " FROM images WHERE product_id = ?1 ORDER BY position, id",
    // kGetImage
    "SELECT " LK_IMAGE_COLUMNS " FROM images WHERE id = ?1",
    // kInsertImage
    "INSERT INTO images (product_id, position, path, source, sha256, model, embedding, colour) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    // kDeleteImage
    "DELETE FROM images WHERE id = ?1",
    // kEmbeddings
    "SELECT id, product_id, embedding FROM images "
    "WHERE model = ?1 AND embedding IS NOT NULL ORDER BY id",
    // kLabelledImages
    "SELECT i.source, p.category FROM images i JOIN products p ON p.id = i.product_id "
    "WHERE p.category <> '' ORDER BY i.id",
    // kGetMeta
    "SELECT value FROM meta WHERE key = ?1",
    // kSetMeta
    "INSERT INTO meta (key, value) VALUES (?1, ?2) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    // kBumpVectorsVersion
    "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'vectors_version'",
    // kCounts
    "SELECT (SELECT count(*) FROM products), (SELECT count(*) FROM images), "
    "(SELECT count(*) FROM images WHERE embedding IS NOT NULL)",
    // kAllImages
    "SELECT " LK_IMAGE_COLUMNS " FROM images ORDER BY id",
    // kKeepVector: an image deleted meanwhile is skipped rather than an error.
    "INSERT OR REPLACE INTO kept_vectors (model, image_id, embedding) "
    "SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM images WHERE id = ?2)",
    // kKeptIds
    "SELECT image_id FROM kept_vectors WHERE model = ?1 ORDER BY image_id",
    // kStashActive
    "INSERT OR REPLACE INTO kept_vectors (model, image_id, embedding) "
    "SELECT model, id, embedding FROM images WHERE embedding IS NOT NULL AND model <> '' AND model <> ?1",
    // kActivateKept
    "UPDATE images SET model = ?1, embedding = (SELECT k.embedding FROM kept_vectors k "
    "WHERE k.model = ?1 AND k.image_id = images.id) "
    "WHERE EXISTS (SELECT 1 FROM kept_vectors k WHERE k.model = ?1 AND k.image_id = images.id)",
    // kDropKept
    "DELETE FROM kept_vectors WHERE model <> ?1",
    // kInsertEvent
    "INSERT INTO events (user_id, product_id, type, time_ms) VALUES (?1, ?2, ?3, ?4)",
    // kEventsOf
    "SELECT type, product_id, user_id, time_ms FROM events WHERE user_id = ?1 ORDER BY time_ms, id",
    // kDeleteEventsOf
    "DELETE FROM events WHERE user_id = ?1",
    // kGetPopularity
    "SELECT score, at_ms FROM popularity WHERE product_id = ?1",
    // kSetPopularity
    "INSERT INTO popularity (product_id, score, at_ms) VALUES (?1, ?2, ?3) "
    "ON CONFLICT (product_id) DO UPDATE SET score = excluded.score, at_ms = excluded.at_ms",
    // kFirstSeen
    "SELECT at_ms FROM first_seen WHERE product_id = ?1",
    // kGetTaste
    "SELECT model, vector, weight, at_ms FROM tastes WHERE user_id = ?1",
    // kSetTaste
    "INSERT INTO tastes (user_id, model, vector, weight, at_ms) VALUES (?1, ?2, ?3, ?4, ?5) "
    "ON CONFLICT (user_id) DO UPDATE SET model = excluded.model, vector = excluded.vector, "
    "weight = excluded.weight, at_ms = excluded.at_ms",
    // kDeleteTaste
    "DELETE FROM tastes WHERE user_id = ?1",
    // kGetProfile
    "SELECT body FROM profiles WHERE name = ?1",
    // kPutProfile
    "INSERT INTO profiles (name, body, updated_at) VALUES (?1, ?2, ?3) "
    "ON CONFLICT (name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
    // kDeleteProfile
    "DELETE FROM profiles WHERE name = ?1",
    // kProfileNames
    "SELECT name FROM profiles ORDER BY name",
    // kRankingSignals
    "SELECT p.price, p.stock, p.rating, p.rating_count, s.score, s.at_ms, f.at_ms, p.brand, p.attributes "
    "FROM products p "
    "LEFT JOIN popularity s ON s.product_id = p.id LEFT JOIN first_seen f ON f.product_id = p.id "
    "WHERE p.id = ?1",
    // kAllProducts
    "SELECT id, title, brand, category, price, currency, rating, rating_count, stock, attributes, group_id "
    "FROM products ORDER BY id",
    // kAllBehaviour
    "SELECT p.id, s.score, s.at_ms, f.at_ms FROM products p "
    "LEFT JOIN popularity s ON s.product_id = p.id LEFT JOIN first_seen f ON f.product_id = p.id",
    // kAffinitiesOf
    "SELECT kind, value, weight, at_ms FROM taste_affinities WHERE user_id = ?1 ORDER BY kind, value",
    // kSetAffinity
    "INSERT INTO taste_affinities (user_id, kind, value, weight, at_ms) VALUES (?1, ?2, ?3, ?4, ?5) "
    "ON CONFLICT (user_id, kind, value) DO UPDATE SET weight = excluded.weight, at_ms = excluded.at_ms",
    // kDeleteAffinitiesOf
    "DELETE FROM taste_affinities WHERE user_id = ?1",
    // kSetImageColour
    "UPDATE images SET colour = ?2 WHERE id = ?1",
    // kImagesWithoutColour
    "SELECT " LK_IMAGE_COLUMNS " FROM images WHERE colour IS NULL ORDER BY id",
    // kColours
    "SELECT id, colour FROM images WHERE colour IS NOT NULL ORDER BY id",
    // kMatchText
    "SELECT r.product_id, -bm25(product_text) FROM product_text "
    "JOIN text_rows r ON r.row = product_text.rowid WHERE product_text MATCH ?1",
};
static_assert(std::size(kSqlText) == kSqlCount, "one SQL text per Sql value");

#undef LK_IMAGE_COLUMNS

// An SQLite failure, keeping the result code for the few callers that tell causes apart.
class SqliteError : public Error {
 public:
  SqliteError(int code, const std::string& message) : Error(ErrorKind::kIO, message), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

class StatementCache {
 public:
  explicit StatementCache(sqlite3* db) : db_(db) {}
  ~StatementCache() {
    for (sqlite3_stmt* statement : cached_) sqlite3_finalize(statement);
  }
  StatementCache(const StatementCache&) = delete;
  StatementCache& operator=(const StatementCache&) = delete;
  sqlite3* db() const { return db_; }

 private:
  friend class Query;
  sqlite3* db_;
  std::array<sqlite3_stmt*, kSqlCount> cached_{};
  std::array<bool, kSqlCount> in_use_{};
};

// One execution of a cached statement. Resets it on destruction, so that no statement is
// left holding a read transaction open after a call returns or throws.
class Query {
 public:
  Query(StatementCache& cache, Sql sql, const char* operation)
      : cache_(cache), sql_(sql), operation_(operation) {
    if (cache.in_use_[sql]) {
      // A visitor called back into the store while this statement is iterating.
      statement_ = prepare(0);
      owned_ = true;
      return;
    }
    if (cache.cached_[sql] == nullptr) cache.cached_[sql] = prepare(SQLITE_PREPARE_PERSISTENT);
    statement_ = cache.cached_[sql];
    cache.in_use_[sql] = true;
  }
  ~Query() {
    if (owned_) {
      sqlite3_finalize(statement_);
      return;
    }
    sqlite3_reset(statement_);
    sqlite3_clear_bindings(statement_);
    cache_.in_use_[sql_] = false;
  }
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;

  Query& bind_text(int index, const std::string& value) {
    return check(sqlite3_bind_text64(statement_, index, value.data(), value.size(),
                                     SQLITE_TRANSIENT, SQLITE_UTF8));
  }
  Query& bind_int(int index, std::int64_t value) {
    return check(sqlite3_bind_int64(statement_, index, value));
  }
  Query& bind_real(int index, double value) {
    return check(sqlite3_bind_double(statement_, index, value));
  }
  Query& bind_blob(int index, const std::vector<unsigned char>& value) {
    if (value.empty()) return check(sqlite3_bind_null(statement_, index));
    return check(
        sqlite3_bind_blob64(statement_, index, value.data(), value.size(), SQLITE_TRANSIENT));
  }

  // True when a row is ready to be read.
  bool step() {
    int rc = sqlite3_step(statement_);
    if (rc == SQLITE_ROW) return true;
    if (rc != SQLITE_DONE) fail(rc);
    return false;
  }
  void run() {
    while (step()) {
    }
  }

  bool is_null(int column) const { return sqlite3_column_type(statement_, column) == SQLITE_NULL; }
  std::int64_t int_at(int column) const { return sqlite3_column_int64(statement_, column); }
  double real_at(int column) const { return sqlite3_column_double(statement_, column); }
  std::string text_at(int column) const {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(statement_, column));
    return text ? std::string(text,
                              static_cast<std::size_t>(sqlite3_column_bytes(statement_, column)))
                : std::string();
  }
  std::pair<const unsigned char*, std::size_t> blob_at(int column) const {
    const auto* data = static_cast<const unsigned char*>(sqlite3_column_blob(statement_, column));
    return {data, static_cast<std::size_t>(sqlite3_column_bytes(statement_, column))};
  }

 private:
  sqlite3_stmt* prepare(unsigned flags) {
    sqlite3_stmt* statement = nullptr;
    int rc = sqlite3_prepare_v3(cache_.db_, kSqlText[sql_], -1, flags, &statement, nullptr);
    if (rc != SQLITE_OK) fail(rc);
    return statement;
  }
  Query& check(int rc) {
    if (rc != SQLITE_OK) fail(rc);
    return *this;
  }
  [[noreturn]] void fail(int rc) const {
    std::string message = std::string(operation_) + ": " + sqlite3_errmsg(cache_.db_);
    const int primary = rc & 0xff;
    if (primary == SQLITE_IOERR || primary == SQLITE_FULL) {
      // "disk I/O error" alone does not say which file or why (EFBIG, ENOSPC, EIO, ...).
      // SQLite's errno is only sometimes kept (EFBIG from a file size limit is lost).
      const char* file = sqlite3_db_filename(cache_.db_, "main");
      const int system_errno = sqlite3_system_errno(cache_.db_);
      message += std::string(" (") + (system_errno != 0 ? std::string(std::strerror(system_errno)) + ", " : "") +
                 "writing " + (file ? file : "the catalog store") + "); the change was not stored";
    }
    throw SqliteError(rc, message);
  }

  StatementCache& cache_;
  Sql sql_;
  const char* operation_;
  sqlite3_stmt* statement_ = nullptr;
  bool owned_ = false;
};

void exec(sqlite3* db, const char* sql, const std::string& operation) {
  char* message = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &message) != SQLITE_OK) {
    std::string text = message ? message : sqlite3_errmsg(db);
    sqlite3_free(message);
    throw Error(ErrorKind::kIO, operation + ": " + text);
  }
}

// Used from destructors and error paths, so it never throws. An I/O error may already have
// ended the transaction, and then there is nothing left to undo.
void roll_back_quietly(sqlite3* db, bool savepoint) noexcept {
  if (sqlite3_get_autocommit(db)) return;
  sqlite3_exec(db, savepoint ? "ROLLBACK TO lookalike_call; RELEASE lookalike_call" : "ROLLBACK",
               nullptr, nullptr, nullptr);
}

// Makes one store call atomic: its own transaction when the caller has none open, otherwise
// a savepoint inside the caller's transaction.
class AtomicCall {
 public:
  AtomicCall(StatementCache& cache, const char* operation)
      : cache_(cache), operation_(operation), savepoint_(!sqlite3_get_autocommit(cache.db())) {
    Query(cache_, savepoint_ ? kSavepoint : kBegin, operation_).run();
  }
  ~AtomicCall() {
    if (!done_) roll_back_quietly(cache_.db(), savepoint_);
  }
  AtomicCall(const AtomicCall&) = delete;
  AtomicCall& operator=(const AtomicCall&) = delete;

  void commit() {
    Query(cache_, savepoint_ ? kRelease : kCommit, operation_).run();
    done_ = true;
  }

 private:
  StatementCache& cache_;
  const char* operation_;
  bool savepoint_;
  bool done_ = false;
};

struct Identity {
  std::int64_t application_id = 0;
  std::int64_t user_version = 0;
  std::int64_t objects = 0;  // tables, indexes, ...

  bool ours() const { return application_id == kApplicationId; }
  bool empty() const { return application_id == 0 && objects == 0; }
};

Identity identify(StatementCache& cache) {
  Query query(cache, kIdentify, "read the store header");
  if (!query.step()) return {};
  return {query.int_at(0), query.int_at(1), query.int_at(2)};
}

// Checks that the file is ours (or new) before changing anything in it, then brings its
// schema up to date.
void prepare_store(StatementCache& cache, const fs::path& path) {
  auto not_ours = [&] {
    return Error(ErrorKind::kIO, path.string() + " is not a lookalike catalog store");
  };
  Identity identity;
  try {
    identity = identify(cache);
  } catch (const SqliteError& e) {
    int primary = e.code() & 0xff;
    if (primary == SQLITE_NOTADB || primary == SQLITE_CORRUPT) {
      throw Error(ErrorKind::kIO, path.string() + " is corrupt or not a lookalike catalog store (" +
                                      sqlite3_errstr(e.code()) + "); restore the data folder from a snapshot");
    }
    throw Error(ErrorKind::kIO, path.string() + ": " + e.what());
  }
  if (!identity.ours() && !identity.empty()) throw not_ours();
  if (identity.user_version > kSchemaVersion) {
    throw Error(ErrorKind::kIO,
                path.string() + " has store version " + std::to_string(identity.user_version) +
                    ", newer than this program's " + std::to_string(kSchemaVersion));
  }

  const std::string operation = "open " + path.string();
  {
    Query journal(cache, kJournalMode, operation.c_str());
    if (!journal.step() || journal.text_at(0) != "wal") {
      throw Error(ErrorKind::kIO, operation + ": cannot switch to write-ahead logging");
    }
  }
  exec(cache.db(), "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON", operation);
  if (identity.ours() && identity.user_version == kSchemaVersion) return;

  AtomicCall migration(cache, operation.c_str());
  // Another connection may have created or migrated the store since the first look.
  identity = identify(cache);
  if (!identity.ours() && !identity.empty()) throw not_ours();
  for (std::int64_t version = identity.user_version; version < kSchemaVersion; ++version) {
    exec(cache.db(), kMigrations[version], operation);
  }
  exec(cache.db(),
       ("PRAGMA application_id = " + std::to_string(kApplicationId) +
        "; PRAGMA user_version = " + std::to_string(kSchemaVersion))
           .c_str(),
       operation);
  migration.commit();
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

static_assert(sizeof(float) == 4 && std::numeric_limits<float>::is_iec559,
              "embeddings are stored as IEEE 754 float32");

// Little-endian float32, whatever the host's byte order.
std::vector<unsigned char> encode_embedding(const std::vector<float>& embedding) {
  std::vector<unsigned char> bytes(embedding.size() * 4);
  for (std::size_t i = 0; i < embedding.size(); ++i) {
    std::uint32_t bits;
    std::memcpy(&bits, &embedding[i], 4);
    for (int b = 0; b < 4; ++b) bytes[4 * i + b] = static_cast<unsigned char>(bits >> (8 * b));
  }
  return bytes;
}

void decode_embedding(const Query& query, int column, std::int64_t image_id,
                      std::vector<float>& embedding) {
  auto [data, size] = query.blob_at(column);
  if (size % 4 != 0) {
    throw Error(ErrorKind::kInternal, "image " + std::to_string(image_id) +
                                          " has a malformed embedding of " + std::to_string(size) +
                                          " bytes");
  }
  embedding.resize(size / 4);
  for (std::size_t i = 0; i < embedding.size(); ++i) {
    const unsigned char* p = data + 4 * i;
    std::uint32_t bits = std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 |
                         std::uint32_t{p[2]} << 16 | std::uint32_t{p[3]} << 24;
    std::memcpy(&embedding[i], &bits, 4);
  }
}

std::string encode_attributes(const Product& product) {
  try {
    return json(product.attributes).dump();
  } catch (const json::type_error&) {
    throw Error(ErrorKind::kInvalidInput,
                "upsert_product: attributes of " + product.id + " are not valid UTF-8");
  }
}

std::map<std::string, std::string> decode_attributes(const std::string& text,
                                                     const std::string& product_id) {
  auto malformed = [&] {
    return Error(ErrorKind::kInternal, "product " + product_id + " has malformed attributes");
  };
  json parsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object()) throw malformed();
  std::map<std::string, std::string> attributes;
  for (const auto& [key, value] : parsed.items()) {
    if (!value.is_string()) throw malformed();
    attributes.emplace(key, value.get<std::string>());
  }
  return attributes;
}

ImageRecord read_image(const Query& query, bool with_embedding) {
  ImageRecord image;
  image.id = query.int_at(0);
  image.product_id = query.text_at(1);
  image.position = static_cast<int>(query.int_at(2));
  image.path = query.text_at(3);
  image.source = query.text_at(4);
  image.sha256 = query.text_at(5);
  image.model = query.text_at(6);
  if (with_embedding && !query.is_null(7)) decode_embedding(query, 7, image.id, image.embedding);
  if (!query.is_null(8)) decode_embedding(query, 8, image.id, image.colour);
  return image;
}

void bump_vectors_version(StatementCache& cache, const char* operation) {
  Query(cache, kBumpVectorsVersion, operation).run();
}

}  // namespace

struct Store::Statements : StatementCache {
  using StatementCache::StatementCache;
};

Store::Store(sqlite3* db) : db_(db), statements_(std::make_unique<Statements>(db)) {}

Store::~Store() {
  statements_.reset();
  sqlite3_close(db_);
}

std::unique_ptr<Store> Store::open(const fs::path& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  // Owns the handle from here on: sqlite3_open_v2 returns one even when it fails.
  std::unique_ptr<Store> store(new Store(db));
  if (rc != SQLITE_OK) {
    throw Error(ErrorKind::kIO, "cannot open " + path.string() + ": " +
                                    (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  prepare_store(*store->statements_, path);
  return store;
}

Store::Transaction::Transaction(Store& store) : store_(store) {
  Query(*store_.statements_, kBegin, "begin transaction").run();
}

Store::Transaction::~Transaction() {
  if (!done_) roll_back_quietly(store_.db_, /*savepoint=*/false);
}

Store::ReadTransaction::ReadTransaction(const Store& store) : store_(store) {
  Query(*store_.statements_, kBeginRead, "begin read transaction").run();
}

Store::ReadTransaction::~ReadTransaction() { roll_back_quietly(store_.db_, /*savepoint=*/false); }

void Store::Transaction::commit() {
  if (done_) throw Error(ErrorKind::kInternal, "commit: the transaction is already committed");
  Query(*store_.statements_, kCommit, "commit").run();
  done_ = true;
}

namespace {

// The product columns 0..10 of kSelectProduct and kAllProducts.
Product read_product(const Query& query) {
  Product product;
  product.id = query.text_at(0);
  product.title = query.text_at(1);
  product.brand = query.text_at(2);
  product.category = query.text_at(3);
  product.price = query.real_at(4);
  product.currency = query.text_at(5);
  product.rating = query.real_at(6);
  product.rating_count = query.int_at(7);
  product.stock = query.int_at(8);
  product.attributes = decode_attributes(query.text_at(9), product.id);
  product.group_id = query.text_at(10);
  return product;
}

}  // namespace

std::optional<Product> Store::get_product(const std::string& id) const {
  Query query(*statements_, kSelectProduct, "get_product");
  query.bind_text(1, id);
  if (!query.step()) return std::nullopt;
  Product product = read_product(query);
  do {
    if (!query.is_null(11)) product.images.push_back(query.text_at(11));
  } while (query.step());
  return product;
}

bool Store::upsert_product(const Product& product) {
  if (product.id.empty()) {
    throw Error(ErrorKind::kInvalidInput, "upsert_product: the product id is empty");
  }
  Query query(*statements_, kUpsertProduct, "upsert_product");
  query.bind_text(1, product.id)
      .bind_text(2, product.title)
      .bind_text(3, product.brand)
      .bind_text(4, product.category)
      .bind_real(5, product.price)
      .bind_text(6, product.currency)
      .bind_real(7, product.rating)
      .bind_int(8, product.rating_count)
      .bind_int(9, product.stock)
      .bind_text(10, encode_attributes(product))
      .bind_text(11, product.group_id)
      .bind_int(12, now_ms())
      .run();
  return sqlite3_changes(db_) > 0;
}

bool Store::delete_product(const std::string& id) {
  AtomicCall call(*statements_, "delete_product");
  Query(*statements_, kDeleteProductImages, "delete_product").bind_text(1, id).run();
  bool removed_images = sqlite3_changes(db_) > 0;
  Query(*statements_, kDeleteProduct, "delete_product").bind_text(1, id).run();
  bool found = sqlite3_changes(db_) > 0;
  if (removed_images) bump_vectors_version(*statements_, "delete_product");
  call.commit();
  return found;
}

std::vector<TextMatch> Store::match_text(const TextQuery& text) const {
  Query query(*statements_, kMatchText, "match_text");
  query.bind_text(1, text.match_expression());
  std::vector<TextMatch> matches;
  while (query.step()) matches.push_back(TextMatch{query.text_at(0), query.real_at(1)});
  return matches;
}

void Store::for_each_product(const std::function<void(const Product& product)>& visit) const {
  Query query(*statements_, kAllProducts, "for_each_product");
  while (query.step()) visit(read_product(query));
}

std::vector<std::string> Store::product_ids() const {
  Query query(*statements_, kProductIds, "product_ids");
  std::vector<std::string> ids;
  while (query.step()) ids.push_back(query.text_at(0));
  return ids;
}

std::vector<ImageRecord> Store::images_of(const std::string& product_id,
                                          bool with_embeddings) const {
  Query query(*statements_, kImagesOf, "images_of");
  query.bind_text(1, product_id).bind_int(2, with_embeddings);
  std::vector<ImageRecord> images;
  while (query.step()) images.push_back(read_image(query, with_embeddings));
  return images;
}

std::int64_t Store::add_image(const ImageRecord& image) {
  if (!image.embedding.empty() && image.model.empty()) {
    throw Error(ErrorKind::kInvalidInput, "add_image: an embedding needs the name of its model");
  }
  AtomicCall call(*statements_, "add_image");
  {
    Query insert(*statements_, kInsertImage, "add_image");
    insert.bind_text(1, image.product_id)
        .bind_int(2, image.position)
        .bind_text(3, image.path)
        .bind_text(4, image.source)
        .bind_text(5, image.sha256)
        .bind_text(6, image.model)
        .bind_blob(7, encode_embedding(image.embedding))
        .bind_blob(8, encode_embedding(image.colour));
    try {
      insert.run();
    } catch (const SqliteError& e) {
      if (e.code() == SQLITE_CONSTRAINT_FOREIGNKEY) {
        throw Error(ErrorKind::kNotFound, "add_image: no product with id " + image.product_id);
      }
      throw;
    }
  }
  std::int64_t id = sqlite3_last_insert_rowid(db_);
  bump_vectors_version(*statements_, "add_image");
  call.commit();
  return id;
}

void Store::delete_image(std::int64_t image_id) {
  AtomicCall call(*statements_, "delete_image");
  Query(*statements_, kDeleteImage, "delete_image").bind_int(1, image_id).run();
  if (sqlite3_changes(db_) > 0) bump_vectors_version(*statements_, "delete_image");
  call.commit();
}

std::optional<ImageRecord> Store::get_image(std::int64_t image_id, bool with_embedding) const {
  Query query(*statements_, kGetImage, "get_image");
  query.bind_int(1, image_id).bind_int(2, with_embedding);
  if (!query.step()) return std::nullopt;
  return read_image(query, with_embedding);
}

void Store::for_each_embedding(const std::string& model,
                               const std::function<void(std::int64_t, const std::string&,
                                                        const std::vector<float>&)>& visit) const {
  Query query(*statements_, kEmbeddings, "for_each_embedding");
  query.bind_text(1, model);
  std::vector<float> embedding;
  while (query.step()) {
    std::int64_t image_id = query.int_at(0);
    decode_embedding(query, 2, image_id, embedding);
    visit(image_id, query.text_at(1), embedding);
  }
}

std::vector<std::pair<std::string, std::string>> Store::labelled_images() const {
  Query query(*statements_, kLabelledImages, "labelled_images");
  std::vector<std::pair<std::string, std::string>> labelled;
  while (query.step()) labelled.emplace_back(query.text_at(0), query.text_at(1));
  return labelled;
}

std::optional<std::string> Store::get_meta(const std::string& key) const {
  Query query(*statements_, kGetMeta, "get_meta");
  query.bind_text(1, key);
  if (!query.step()) return std::nullopt;
  return query.text_at(0);
}

void Store::set_meta(const std::string& key, const std::string& value) {
  if (key == kVectorsVersionKey) {
    throw Error(ErrorKind::kInvalidInput, "set_meta: " + key + " is kept by the store itself");
  }
  Query(*statements_, kSetMeta, "set_meta").bind_text(1, key).bind_text(2, value).run();
}

std::int64_t Store::vectors_version() const {
  std::string text = get_meta(kVectorsVersionKey).value_or("");
  std::int64_t version = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), version);
  if (error != std::errc() || end != text.data() + text.size()) {
    throw Error(ErrorKind::kInternal, "the store's vectors_version is malformed: " + text);
  }
  return version;
}

std::vector<ImageRecord> Store::all_images() const {
  Query query(*statements_, kAllImages, "all_images");
  query.bind_int(2, 0);
  std::vector<ImageRecord> images;
  while (query.step()) images.push_back(read_image(query, false));
  return images;
}

void Store::set_image_colour(std::int64_t image_id, const std::vector<float>& colour) {
  if (colour.empty()) throw Error(ErrorKind::kInvalidInput, "set_image_colour: the descriptor is empty");
  Query(*statements_, kSetImageColour, "set_image_colour")
      .bind_int(1, image_id)
      .bind_blob(2, encode_embedding(colour))
      .run();
}

std::vector<ImageRecord> Store::images_without_colour() const {
  Query query(*statements_, kImagesWithoutColour, "images_without_colour");
  query.bind_int(2, 0);
  std::vector<ImageRecord> images;
  while (query.step()) images.push_back(read_image(query, false));
  return images;
}

void Store::for_each_colour(
    const std::function<void(std::int64_t image_id, const std::vector<float>& colour)>& visit) const {
  Query query(*statements_, kColours, "for_each_colour");
  std::vector<float> colour;
  while (query.step()) {
    const std::int64_t image_id = query.int_at(0);
    decode_embedding(query, 1, image_id, colour);
    visit(image_id, colour);
  }
}

void Store::keep_vector(const std::string& model, std::int64_t image_id,
                        const std::vector<float>& embedding) {
  if (model.empty() || embedding.empty()) {
    throw Error(ErrorKind::kInvalidInput, "keep_vector: needs a model and a non-empty embedding");
  }
  Query(*statements_, kKeepVector, "keep_vector")
      .bind_text(1, model)
      .bind_int(2, image_id)
      .bind_blob(3, encode_embedding(embedding))
      .run();
}

std::vector<std::int64_t> Store::kept_vector_ids(const std::string& model) const {
  Query query(*statements_, kKeptIds, "kept_vector_ids");
  query.bind_text(1, model);
  std::vector<std::int64_t> ids;
  while (query.step()) ids.push_back(query.int_at(0));
  return ids;
}

void Store::activate_kept_vectors(const std::string& model, const std::string& keep) {
  AtomicCall call(*statements_, "activate_kept_vectors");
  Query(*statements_, kStashActive, "activate_kept_vectors").bind_text(1, model).run();
  Query(*statements_, kActivateKept, "activate_kept_vectors").bind_text(1, model).run();
  Query(*statements_, kDropKept, "activate_kept_vectors").bind_text(1, keep).run();
  bump_vectors_version(*statements_, "activate_kept_vectors");
  call.commit();
}

Counts Store::counts() const {
  Query query(*statements_, kCounts, "counts");
  if (!query.step()) return {};
  return {query.int_at(0), query.int_at(1), query.int_at(2)};
}

void Store::check_integrity(const fs::path& path_for_messages) const {
  constexpr int kMaxDefects = 3;
  std::string defects;
  int found = 0;
  sqlite3_stmt* statement = nullptr;
  int rc = sqlite3_prepare_v2(db_, "PRAGMA quick_check(3)", -1, &statement, nullptr);
  while (rc == SQLITE_OK && (rc = sqlite3_step(statement)) == SQLITE_ROW) {
    rc = SQLITE_OK;
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(statement, 0));
    std::string line = text ? text : "";
    if (line == "ok") continue;
    for (auto at = line.find('\n'); at != std::string::npos; at = line.find('\n', at)) line.replace(at, 1, "; ");
    const std::string banner = "*** in database main *** ";
    if (line.rfind(banner, 0) == 0) line.erase(0, banner.size());
    if (found++ < kMaxDefects) defects += (defects.empty() ? "" : "; ") + line;
  }
  if (rc == SQLITE_DONE) rc = SQLITE_OK;
  if (rc != SQLITE_OK) defects = sqlite3_errmsg(db_);
  sqlite3_finalize(statement);
  if (rc != SQLITE_OK || found > 0) {
    throw Error(ErrorKind::kIO, path_for_messages.string() + " is corrupt (" + defects +
                                    "); restore the data folder from a snapshot (lookalike restore)");
  }
}

void Store::backup_to(const fs::path& dest) const {
  std::error_code ec;
  if (fs::exists(dest, ec)) throw Error(ErrorKind::kIO, "backup: " + dest.string() + " already exists");
  sqlite3* out = nullptr;
  int rc = sqlite3_open_v2(dest.c_str(), &out, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  std::string error;
  if (rc == SQLITE_OK) {
    // One step over every page: the source is read in one read transaction, so the copy
    // is one committed state; in WAL mode that does not block the writers.
    sqlite3_backup* backup = sqlite3_backup_init(out, "main", db_, "main");
    if (!backup) {
      error = sqlite3_errmsg(out);
    } else {
      rc = sqlite3_backup_step(backup, -1);
      if (rc != SQLITE_DONE) error = sqlite3_errstr(rc);
      rc = sqlite3_backup_finish(backup);
      if (error.empty() && rc != SQLITE_OK) error = sqlite3_errmsg(out);
    }
  } else {
    error = out ? sqlite3_errmsg(out) : sqlite3_errstr(rc);
  }
  sqlite3_close(out);
  if (error.empty()) {
    try {
      sync_path(dest);
    } catch (const Error& e) {
      error = e.what();
    }
  }
  if (!error.empty()) {
    fs::remove(dest, ec);
    fs::remove(fs::path(dest.string() + "-journal"), ec);
    throw Error(ErrorKind::kIO, "cannot back up the catalog store to " + dest.string() + ": " + error);
  }
}

void Store::add_event(const Event& event) {
  Query(*statements_, kInsertEvent, "add_event")
      .bind_text(1, event.user_id)
      .bind_text(2, event.product_id)
      .bind_int(3, static_cast<int>(event.type))
      .bind_int(4, event.time_ms)
      .run();
}

std::vector<Event> Store::events_of(const std::string& user_id) const {
  Query query(*statements_, kEventsOf, "events_of");
  query.bind_text(1, user_id);
  std::vector<Event> events;
  while (query.step()) {
    const std::int64_t type = query.int_at(0);
    if (type < 0 || type > static_cast<int>(EventType::kPurchase)) {
      throw Error(ErrorKind::kInternal,
                  "an event of user " + user_id + " has unknown type " + std::to_string(type));
    }
    events.push_back({static_cast<EventType>(type), query.text_at(1), query.text_at(2), query.int_at(3)});
  }
  return events;
}

std::size_t Store::delete_events_of(const std::string& user_id) {
  Query(*statements_, kDeleteEventsOf, "delete_events_of").bind_text(1, user_id).run();
  return static_cast<std::size_t>(sqlite3_changes(db_));
}

std::optional<Popularity> Store::popularity(const std::string& product_id) const {
  Query query(*statements_, kGetPopularity, "popularity");
  query.bind_text(1, product_id);
  if (!query.step()) return std::nullopt;
  return Popularity{query.real_at(0), query.int_at(1)};
}

void Store::set_popularity(const std::string& product_id, const Popularity& popularity) {
  Query query(*statements_, kSetPopularity, "set_popularity");
  query.bind_text(1, product_id).bind_real(2, popularity.score).bind_int(3, popularity.at_ms);
  try {
    query.run();
  } catch (const SqliteError& e) {
    if (e.code() == SQLITE_CONSTRAINT_FOREIGNKEY) {
      throw Error(ErrorKind::kNotFound, "no product with id " + product_id);
    }
    throw;
  }
}

std::optional<RankingSignals> Store::ranking_signals(const std::string& product_id) const {
  Query query(*statements_, kRankingSignals, "ranking_signals");
  query.bind_text(1, product_id);
  if (!query.step()) return std::nullopt;
  RankingSignals signals;
  signals.price = query.real_at(0);
  signals.stock = query.int_at(1);
  signals.rating = query.real_at(2);
  signals.rating_count = query.int_at(3);
  if (!query.is_null(4)) signals.popularity = Popularity{query.real_at(4), query.int_at(5)};
  if (!query.is_null(6)) signals.first_seen_ms = query.int_at(6);
  signals.brand = query.text_at(7);
  signals.attributes = decode_attributes(query.text_at(8), product_id);
  return signals;
}

void Store::for_each_behaviour(
    const std::function<void(const std::string& product_id, const std::optional<Popularity>& popularity,
                             const std::optional<std::int64_t>& first_seen_ms)>& visit) const {
  Query query(*statements_, kAllBehaviour, "for_each_behaviour");
  while (query.step()) {
    std::optional<Popularity> popularity;
    if (!query.is_null(1)) popularity = Popularity{query.real_at(1), query.int_at(2)};
    std::optional<std::int64_t> first_seen_ms;
    if (!query.is_null(3)) first_seen_ms = query.int_at(3);
    visit(query.text_at(0), popularity, first_seen_ms);
  }
}

std::optional<std::int64_t> Store::first_seen(const std::string& product_id) const {
  Query query(*statements_, kFirstSeen, "first_seen");
  query.bind_text(1, product_id);
  if (!query.step()) return std::nullopt;
  return query.int_at(0);
}

std::optional<Taste> Store::taste(const std::string& user_id) const {
  Query query(*statements_, kGetTaste, "taste");
  query.bind_text(1, user_id);
  if (!query.step()) return std::nullopt;
  Taste taste;
  taste.model = query.text_at(0);
  decode_embedding(query, 1, 0, taste.vector);
  taste.weight = query.real_at(2);
  taste.at_ms = query.int_at(3);
  return taste;
}

void Store::set_taste(const std::string& user_id, const Taste& taste) {
  Query(*statements_, kSetTaste, "set_taste")
      .bind_text(1, user_id)
      .bind_text(2, taste.model)
      .bind_blob(3, encode_embedding(taste.vector))
      .bind_real(4, taste.weight)
      .bind_int(5, taste.at_ms)
      .run();
}

bool Store::delete_taste(const std::string& user_id) {
  Query(*statements_, kDeleteTaste, "delete_taste").bind_text(1, user_id).run();
  return sqlite3_changes(db_) > 0;
}

std::vector<Affinity> Store::affinities(const std::string& user_id) const {
  Query query(*statements_, kAffinitiesOf, "affinities");
  query.bind_text(1, user_id);
  std::vector<Affinity> out;
  while (query.step()) out.push_back({query.text_at(0), query.text_at(1), query.real_at(2), query.int_at(3)});
  return out;
}

void Store::set_affinity(const std::string& user_id, const Affinity& affinity) {
  Query(*statements_, kSetAffinity, "set_affinity")
      .bind_text(1, user_id)
      .bind_text(2, affinity.kind)
      .bind_text(3, affinity.value)
      .bind_real(4, affinity.weight)
      .bind_int(5, affinity.at_ms)
      .run();
}

std::size_t Store::delete_affinities(const std::string& user_id) {
  Query(*statements_, kDeleteAffinitiesOf, "delete_affinities").bind_text(1, user_id).run();
  return static_cast<std::size_t>(sqlite3_changes(db_));
}

std::optional<std::string> Store::get_profile(const std::string& name) const {
  Query query(*statements_, kGetProfile, "get_profile");
  query.bind_text(1, name);
  if (!query.step()) return std::nullopt;
  return query.text_at(0);
}

void Store::put_profile(const std::string& name, const std::string& json_text) {
  Query(*statements_, kPutProfile, "put_profile")
      .bind_text(1, name)
      .bind_text(2, json_text)
      .bind_int(3, now_ms())
      .run();
}

bool Store::delete_profile(const std::string& name) {
  Query(*statements_, kDeleteProfile, "delete_profile").bind_text(1, name).run();
  return sqlite3_changes(db_) > 0;
}

std::vector<std::string> Store::profile_names() const {
  Query query(*statements_, kProfileNames, "profile_names");
  std::vector<std::string> names;
  while (query.step()) names.push_back(query.text_at(0));
  return names;
}

}  // namespace lookalike::catalog
