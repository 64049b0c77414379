#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "catalog/product.h"
#include "catalog/store.h"
#include "catalog/text.h"
#include "common/error.h"
#include "support/test_support.h"

namespace lookalike::catalog {
namespace {

using lookalike::testing::TempDir;
using lookalike::testing::write_text;

struct Imported {
  std::vector<std::pair<std::size_t, CatalogEntry>> entries;
  std::vector<std::pair<std::size_t, std::string>> errors;
};

Imported import(const std::filesystem::path& file, const ParseLimits& limits = {}) {
  Imported result;
  read_catalog(
      file, limits,
      [&](std::size_t line, CatalogEntry&& entry) { result.entries.emplace_back(line, entry); },
      [&](std::size_t line, const std::string& message) {
        result.errors.emplace_back(line, message);
      });
  return result;
}

// Expects `call` to throw lookalike::Error of `kind` with `fragment` in its message.
template <typename Call>
void expect_error(Call&& call, ErrorKind kind, const std::string& fragment) {
  try {
    call();
    ADD_FAILURE() << "no error; expected one containing: " << fragment;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

Product sample_product(const std::string& id) {
  Product p;
  p.id = id;
  p.title = "Robe \"Été\" – lin, 100 %";
  p.brand = "Maison\tNord";
  p.category = "dresses";
  p.price = 59.99;
  p.currency = "EUR";
  p.rating = 4.25;
  p.rating_count = 1234;
  p.stock = 7;
  p.attributes = {{"color", "bleu"}, {"size", "M"}, {"material", "linen"}};
  p.group_id = "robe-ete";
  p.images = {"img/" + id + "-front.jpg", "img/" + id + "-back.jpg"};
  return p;
}

TEST(CatalogJson, RoundTripsEveryField) {
  Product p = sample_product("sku-1");
  CatalogEntry entry = parse_json_line(to_json_line(p), {});
  EXPECT_FALSE(entry.deleted);
  EXPECT_EQ(entry.product, p);
  EXPECT_EQ(to_json_line(p).find('\n'), std::string::npos);
}

TEST(CatalogJson, ProductEqualityComparesEveryField) {
  Product a = sample_product("a");
  Product b = a;
  b.attributes["size"] = "L";
  EXPECT_NE(a, b);
  b = a;
  b.images.pop_back();
  EXPECT_NE(a, b);
  b = a;
  b.rating_count += 1;
  EXPECT_NE(a, b);
}

TEST(CatalogJson, ParsesDeletionsAndStatesTheProblem) {
  CatalogEntry deletion = parse_json_line(R"({"id": "x", "deleted": true})", {});
  EXPECT_TRUE(deletion.deleted);
  EXPECT_EQ(deletion.product.id, "x");

  auto parse = [](const std::string& line) { return [line] { parse_json_line(line, {}); }; };
  expect_error(parse(R"({"id": "x", "price": "12"})"), ErrorKind::kInvalidInput,
               "price must be a number");
  expect_error(parse(R"({"id": "x", "pirce": 12})"), ErrorKind::kInvalidInput,
               "unknown key \"pirce\"");
  expect_error(parse(R"({"title": "no id"})"), ErrorKind::kInvalidInput, "id is required");
  expect_error(parse(R"({"id": ""})"), ErrorKind::kInvalidInput, "id must not be empty");
  expect_error(parse(R"({"id": "a\u0001b"})"), ErrorKind::kInvalidInput, "control characters");
  expect_error(parse(R"({"id": ")" + std::string(257, 'x') + "\"}"), ErrorKind::kInvalidInput,
               "id is longer than 256 bytes");
  expect_error(parse(R"({"id": "x", "stock": 1.5})"), ErrorKind::kInvalidInput,
               "stock must be an integer");
  expect_error(parse(R"({"id": "x", "rating": 5.5})"), ErrorKind::kInvalidInput,
               "rating must be between 0 and 5");
  expect_error(parse(R"({"id": "x", "price": 1e400})"), ErrorKind::kInvalidInput, "invalid JSON");
  expect_error(parse(R"({"id": "x", "attributes": {"color": 3}})"), ErrorKind::kInvalidInput,
               "attribute \"color\" must be a string");
  expect_error(parse(R"({"id": "x", "price": 1, "price": 2})"), ErrorKind::kInvalidInput,
               "duplicate key \"price\"");
  expect_error(parse(R"(["x"])"), ErrorKind::kInvalidInput, "must be a JSON object");
}

TEST(CatalogJson, RefusesDeepNestingWithoutRecursing) {
  std::string deep =
      R"({"id": "x", "attributes": )" + std::string(100000, '[') + std::string(100000, ']') + "}";
  expect_error([&] { parse_json_line(deep, {}); }, ErrorKind::kInvalidInput,
               "nested deeper than 16");
  // Brackets inside strings are text, not nesting.
  EXPECT_EQ(parse_json_line(R"({"id": ")" + std::string(40, '[') + "\"}", {}).product.id,
            std::string(40, '['));
}

TEST(CatalogJson, EnforcesFieldLimits) {
  ParseLimits limits;
  limits.max_field_bytes = 8;
  limits.max_attributes = 1;
  expect_error([&] { parse_json_line(R"({"id": "x", "title": "123456789"})", limits); },
               ErrorKind::kInvalidInput, "title is longer than 8 bytes");
  expect_error(
      [&] { parse_json_line(R"({"id": "x", "attributes": {"a": "1", "b": "2"}})", limits); },
      ErrorKind::kInvalidInput, "more than 1 attributes");
}

TEST(CatalogReader, JsonlReportsEveryBadLineAndContinues) {
  TempDir dir;
  std::string long_title(3000, 'x');
  std::string lines[] = {
      R"({"id": "good-1", "price": 10})",                            // 1
      R"({"id": "bad-json", "price": )",                             // 2
      R"({"id": "wrong-type", "stock": "many"})",                    // 3
      R"({"id": "typo", "pirce": 3})",                               // 4
      R"({"title": "no id"})",                                       // 5
      "",                                                            // 6: skipped
      R"({"id": "negative", "price": -1})",                          // 7
      R"({"id": "images", "images": ["a.jpg", "b.jpg", "c.jpg"]})",  // 8
      R"({"id": "long", "title": ")" + long_title + "\"}",           // 9
      "{\"id\": \"deep\", \"attributes\": " + std::string(40, '[') + std::string(40, ']') + "}",
      "{\"id\": \"utf8\", \"title\": \"caf\xC3\"}",  // 11
      "{\"id\": \"crlf\"}\r",                        // 12
      "   ",                                         // 13: skipped
      R"({"id": "good-2", "images": ["a.jpg"]})",    // 14
  };
  std::string text;
  for (const auto& line : lines) text += line + "\n";
  write_text(dir / "catalog.jsonl", text);

  ParseLimits limits;
  limits.max_images = 2;
  limits.max_line_bytes = 1000;
  Imported got = import(dir / "catalog.jsonl", limits);

  ASSERT_EQ(got.entries.size(), 3u);
  EXPECT_EQ(got.entries[0].first, 1u);
  EXPECT_EQ(got.entries[0].second.product.id, "good-1");
  EXPECT_EQ(got.entries[0].second.product.price, 10);
  EXPECT_EQ(got.entries[1].first, 12u);
  EXPECT_EQ(got.entries[1].second.product.id, "crlf");
  EXPECT_EQ(got.entries[2].first, 14u);
  EXPECT_EQ(got.entries[2].second.product.images, std::vector<std::string>{"a.jpg"});

  std::vector<std::pair<std::size_t, std::string>> expected = {
      {2, "invalid JSON"},
      {3, "stock must be an integer"},
      {4, "unknown key \"pirce\""},
      {5, "id is required"},
      {7, "price must not be negative"},
      {8, "more than 2 images"},
      {9, "line is longer than 1000 bytes"},
      {10, "nested deeper than 16"},
      {11, "UTF-8"},
  };
  ASSERT_EQ(got.errors.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(got.errors[i].first, expected[i].first) << got.errors[i].second;
    EXPECT_NE(got.errors[i].second.find(expected[i].second), std::string::npos)
        << "line " << got.errors[i].first << ": " << got.errors[i].second;
  }
}

TEST(CatalogReader, RefusesUnknownFormatsAndMissingFiles) {
  TempDir dir;
  write_text(dir / "catalog.xml", "<catalog/>");
  expect_error([&] { import(dir / "catalog.xml"); }, ErrorKind::kInvalidInput,
               "unknown catalog format");
  expect_error([&] { import(dir / "missing.jsonl"); }, ErrorKind::kNotFound, "missing.jsonl");
}

TEST(CatalogReader, CsvHandlesQuotingAttributesAndImages) {
  TempDir dir;
  std::string csv =
      "\xEF\xBB\xBFid,title,price,rating_count,images,attr.color,deleted\r\n"
      "a,\"Shirt, blue\",12.5,3,front.jpg|back.jpg,blue,\r\n"
      "b,\"He said \"\"hi\"\"\",,,,,false\r\n"
      "c,\"two\nlines\",1,,solo.jpg,,0\n"
      "\n"
      "d,,,,,,TRUE\n";
  write_text(dir / "catalog.csv", csv);
  Imported got = import(dir / "catalog.csv");
  EXPECT_TRUE(got.errors.empty()) << got.errors.front().second;
  ASSERT_EQ(got.entries.size(), 4u);

  const auto& [line_a, a] = got.entries[0];
  EXPECT_EQ(line_a, 2u);
  EXPECT_EQ(a.product.title, "Shirt, blue");
  EXPECT_EQ(a.product.price, 12.5);
  EXPECT_EQ(a.product.rating_count, 3);
  EXPECT_EQ(a.product.images, (std::vector<std::string>{"front.jpg", "back.jpg"}));
  EXPECT_EQ(a.product.attributes, (std::map<std::string, std::string>{{"color", "blue"}}));
  EXPECT_FALSE(a.deleted);

  const auto& [line_b, b] = got.entries[1];
  EXPECT_EQ(line_b, 3u);
  EXPECT_EQ(b.product.title, "He said \"hi\"");
  EXPECT_EQ(b.product.price, 0);
  EXPECT_TRUE(b.product.images.empty());
  EXPECT_TRUE(b.product.attributes.empty());

  const auto& [line_c, c] = got.entries[2];
  EXPECT_EQ(line_c, 4u);
  EXPECT_EQ(c.product.title, "two\nlines");

  // The quoted newline in record c and the blank line both count.
  const auto& [line_d, d] = got.entries[3];
  EXPECT_EQ(line_d, 7u);
  EXPECT_TRUE(d.deleted);
}

TEST(CatalogReader, CsvReportsBadRowsAndContinues) {
  TempDir dir;
  std::string csv =
      "id,title,price\n"
      "a,one,1\n"
      "b,too,many,fields\n"
      "c,few\n"
      "d,bad price,abc\n"
      "e,\"stray\" quote,1\n"
      ",no id,1\n"
      "f,neg,-2\n"
      "g,\"caf\xC3\",1\n"
      "h,last,2\n"
      "i,\"never closed,3\n"
      "j,swallowed by the open quote,4\n";
  write_text(dir / "catalog.csv", csv);
  Imported got = import(dir / "catalog.csv");
  ASSERT_EQ(got.entries.size(), 2u);
  EXPECT_EQ(got.entries[0].second.product.id, "a");
  EXPECT_EQ(got.entries[1].first, 10u);
  EXPECT_EQ(got.entries[1].second.product.id, "h");

  std::vector<std::pair<std::size_t, std::string>> expected = {
      {3, "expected 3 fields, found 4"},
      {4, "expected 3 fields, found 2"},
      {5, "price must be a number"},
      {6, "after a closing quote"},
      {7, "id must not be empty"},
      {8, "price must not be negative"},
      {9, "UTF-8"},
      {11, "quoted field is not closed"},
  };
  ASSERT_EQ(got.errors.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(got.errors[i].first, expected[i].first) << got.errors[i].second;
    EXPECT_NE(got.errors[i].second.find(expected[i].second), std::string::npos)
        << "line " << got.errors[i].first << ": " << got.errors[i].second;
  }
}

TEST(CatalogReader, CsvHeaderMustNameKnownColumnsAndId) {
  TempDir dir;
  write_text(dir / "unknown.csv", "id,title,pirce\na,b,1\n");
  expect_error([&] { import(dir / "unknown.csv"); }, ErrorKind::kInvalidInput,
               "unknown column \"pirce\"");
  write_text(dir / "no_id.csv", "title,price\nb,1\n");
  expect_error([&] { import(dir / "no_id.csv"); }, ErrorKind::kInvalidInput,
               "an id column is required");
  write_text(dir / "empty.csv", "");
  expect_error([&] { import(dir / "empty.csv"); }, ErrorKind::kInvalidInput, "header");
}

TEST(CatalogReader, CsvRecordLongerThanTheLimitIsALineError) {
  TempDir dir;
  write_text(dir / "catalog.csv", "id,title\na,\"" + std::string(500, 'x') + "\n" +
                                      std::string(500, 'y') + "\"\nb,ok\n");
  ParseLimits limits;
  limits.max_line_bytes = 100;
  Imported got = import(dir / "catalog.csv", limits);
  ASSERT_EQ(got.errors.size(), 1u);
  EXPECT_EQ(got.errors[0].first, 2u);
  EXPECT_NE(got.errors[0].second.find("longer than 100 bytes"), std::string::npos);
  ASSERT_EQ(got.entries.size(), 1u);
  EXPECT_EQ(got.entries[0].first, 4u);
  EXPECT_EQ(got.entries[0].second.product.id, "b");
}

ImageRecord image_of(const std::string& product_id, int position, const std::string& model = "",
                     std::vector<float> embedding = {}) {
  ImageRecord image;
  image.product_id = product_id;
  image.position = position;
  image.path = "img/" + product_id + "-" + std::to_string(position) + ".jpg";
  image.source = "/catalog/" + image.path;
  image.sha256 = std::string(64, 'a');
  image.model = model;
  image.embedding = std::move(embedding);
  return image;
}

TEST(CatalogStore, UpsertTellsNewUnchangedAndChanged) {
  TempDir dir;
  auto store = Store::open(dir / "store.db");
  Product p = sample_product("p1");
  EXPECT_TRUE(store->upsert_product(p));
  EXPECT_FALSE(store->upsert_product(p));
  p.attributes["size"] = "L";
  EXPECT_TRUE(store->upsert_product(p));
  EXPECT_FALSE(store->upsert_product(p));
  p.price = 49.99;
  EXPECT_TRUE(store->upsert_product(p));

  // Images in the product are ignored by upsert and come from the image rows.
  std::optional<Product> stored = store->get_product("p1");
  ASSERT_TRUE(stored);
  EXPECT_TRUE(stored->images.empty());
  Product expected = p;
  expected.images.clear();
  EXPECT_EQ(*stored, expected);
  EXPECT_FALSE(store->get_product("absent"));
}

TEST(CatalogStore, GetProductListsImagesByPosition) {
  TempDir dir;
  auto store = Store::open(dir / "store.db");
  store->upsert_product(sample_product("p1"));
  store->add_image(image_of("p1", 1));
  store->add_image(image_of("p1", 0));
  EXPECT_EQ(store->get_product("p1")->images,
            (std::vector<std::string>{"img/p1-0.jpg", "img/p1-1.jpg"}));
  std::vector<ImageRecord> images = store->images_of("p1", false);
  ASSERT_EQ(images.size(), 2u);
  EXPECT_EQ(images[0].position, 0);
  EXPECT_EQ(images[0].source, "/catalog/img/p1-0.jpg");
  EXPECT_EQ(images[0].sha256, std::string(64, 'a'));
}

TEST(CatalogStore, DeleteProductCascadesImagesAndBumpsVectorsVersion) {
  TempDir dir;
  auto store = Store::open(dir / "store.db");
  EXPECT_EQ(store->vectors_version(), 0);
  store->upsert_product(sample_product("p1"));
  store->upsert_product(sample_product("bare"));
  std::int64_t first = store->add_image(image_of("p1", 0));
  store->add_image(image_of("p1", 1));
  EXPECT_EQ(store->vectors_version(), 2);

  EXPECT_TRUE(store->delete_product("p1"));
  EXPECT_EQ(store->vectors_version(), 3);
  EXPECT_FALSE(store->get_image(first, false));
  EXPECT_TRUE(store->images_of("p1", false).empty());
  EXPECT_EQ(store->counts().images, 0);

  // No images removed, no new vectors version.
  EXPECT_TRUE(store->delete_product("bare"));
  EXPECT_FALSE(store->delete_product("absent"));
  EXPECT_EQ(store->vectors_version(), 3);
  EXPECT_TRUE(store->product_ids().empty());

  // Image ids are never reused: a stale vector index may still hold the old ones.
  store->upsert_product(sample_product("p2"));
  EXPECT_GT(store->add_image(image_of("p2", 0)), first + 1);
}

TEST(CatalogStore, DeleteImageBumpsVectorsVersion) {
  TempDir dir;
  auto store = Store::open(dir / "store.db");
  store->upsert_product(sample_product("p1"));
  std::int64_t id = store->add_image(image_of("p1", 0));
  store->delete_image(id);
  EXPECT_EQ(store->vectors_version(), 2);
  EXPECT_FALSE(store->get_image(id, true));
  store->delete_image(id);
  EXPECT_EQ(store->vectors_version(), 2);
}

TEST(CatalogStore, EmbeddingsRoundTripBitExact) {
  TempDir dir;
  auto store = Store::open(dir / "store.db");
  store->upsert_product(sample_product("p1"));
  std::vector<float> embedding = {0.1f,
                                  -0.0f,
                                  1e-45f,  // smallest denormal
                                  std::numeric_limits<float>::max(),
                                  -std::numeric_limits<float>::infinity(),
                                  std::numeric_limits<float>::quiet_NaN(),
                                  3.14159265f};
  std::int64_t id = store->add_image(image_of("p1", 0, "cnn-v1/64", embedding));

  std::optional<ImageRecord> image = store->get_image(id, true);
  ASSERT_TRUE(image);
  ASSERT_EQ(image->embedding.size(), embedding.size());
  EXPECT_EQ(std::memcmp(image->embedding.data(), embedding.data(), embedding.size() * 4), 0);
  EXPECT_EQ(image->model, "cnn-v1/64");
  EXPECT_TRUE(store->get_image(id, false)->embedding.empty());
  EXPECT_EQ(store->images_of("p1", true).at(0).embedding.size(), embedding.size());
}

TEST(CatalogStore, ForEachEmbeddingFiltersByModelInIdOrder) {
  TempDir dir;
  auto store = Store::open(dir / "store.db");
  store->upsert_product(sample_product("p1"));
  store->upsert_product(sample_product("p2"));
  std::int64_t a = store->add_image(image_of("p1", 0, "m1", {1, 2}));
  store->add_image(image_of("p1", 1, "m2", {3, 4}));
  store->add_image(image_of("p2", 0));
  std::int64_t b = store->add_image(image_of("p2", 1, "m1", {5, 6}));

  std::vector<std::tuple<std::int64_t, std::string, std::vector<float>>> seen;
  store->for_each_embedding(
      "m1", [&](std::int64_t id, const std::string& product, const std::vector<float>& embedding) {
        seen.emplace_back(id, product, embedding);
      });
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], std::make_tuple(a, std::string("p1"), std::vector<float>{1, 2}));
  EXPECT_EQ(seen[1], std::make_tuple(b, std::string("p2"), std::vector<float>{5, 6}));

  // A visitor may call back into the store, even into the call that is visiting.
  std::size_t pairs = 0;
  store->for_each_embedding("m1", [&](auto, const auto&, const auto&) {
    store->for_each_embedding("m1", [&](auto, const auto&, const auto&) { ++pairs; });
  });
  EXPECT_EQ(pairs, 4u);

  Counts counts = store->counts();
  EXPECT_EQ(counts.products, 2);
  EXPECT_EQ(counts.images, 4);
  EXPECT_EQ(counts.embedded, 3);
}

TEST(CatalogStore, MalformedEmbeddingIsAnInternalErrorNamingTheImage) {
  TempDir dir;
  std::int64_t id = 0;
  {
    auto store = Store::open(dir / "store.db");
    store->upsert_product(sample_product("p1"));
    id = store->add_image(image_of("p1", 0, "m1", {1, 2}));
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir / "store.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE images SET embedding = x'01020304050607'", nullptr, nullptr,
                         nullptr),
            SQLITE_OK);
  sqlite3_close(db);

  auto store = Store::open(dir / "store.db");
  expect_error([&] { store->for_each_embedding("m1", [](auto, const auto&, const auto&) {}); },
               ErrorKind::kInternal, "image " + std::to_string(id));
}

// A store as version 3 of the schema (before colours) left it: the first three
// migrations of store.cpp, as they were when migration 4 was added.
constexpr const char* kVersion3Schema = R"sql(
CREATE TABLE products (id TEXT PRIMARY KEY NOT NULL, title TEXT NOT NULL, brand TEXT NOT NULL,
  category TEXT NOT NULL, price REAL NOT NULL, currency TEXT NOT NULL, rating REAL NOT NULL,
  rating_count INTEGER NOT NULL, stock INTEGER NOT NULL, attributes TEXT NOT NULL, group_id TEXT NOT NULL,
  updated_at INTEGER NOT NULL);
CREATE TABLE images (id INTEGER PRIMARY KEY AUTOINCREMENT,
  product_id TEXT NOT NULL REFERENCES products (id) ON DELETE CASCADE, position INTEGER NOT NULL,
  path TEXT NOT NULL, source TEXT NOT NULL, sha256 TEXT NOT NULL, model TEXT NOT NULL, embedding BLOB);
CREATE INDEX images_by_product ON images (product_id, position);
CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('vectors_version', '1');
CREATE TABLE kept_vectors (model TEXT NOT NULL, image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
  embedding BLOB NOT NULL, PRIMARY KEY (model, image_id)) WITHOUT ROWID;
CREATE INDEX kept_vectors_by_image ON kept_vectors (image_id);
CREATE TABLE events (id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, product_id TEXT NOT NULL, type INTEGER NOT NULL,
  time_ms INTEGER NOT NULL);
CREATE INDEX events_by_user ON events (user_id, time_ms);
CREATE TABLE popularity (product_id TEXT PRIMARY KEY NOT NULL REFERENCES products (id) ON DELETE CASCADE,
  score REAL NOT NULL, at_ms INTEGER NOT NULL);
CREATE TABLE first_seen (product_id TEXT PRIMARY KEY NOT NULL REFERENCES products (id) ON DELETE CASCADE,
  at_ms INTEGER NOT NULL);
CREATE TRIGGER products_first_seen AFTER INSERT ON products BEGIN
  INSERT OR IGNORE INTO first_seen (product_id, at_ms) VALUES (new.id, new.updated_at);
END;
CREATE TABLE tastes (user_id TEXT PRIMARY KEY NOT NULL, model TEXT NOT NULL, vector BLOB NOT NULL,
  weight REAL NOT NULL, at_ms INTEGER NOT NULL);
CREATE TABLE profiles (name TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL, updated_at INTEGER NOT NULL);
INSERT INTO products VALUES ('p1', 'Shirt', 'Fjord', 'Shirt', 20, 'EUR', 4, 3, 5, '{}', '', 1000);
INSERT INTO images (product_id, position, path, source, sha256, model, embedding)
  VALUES ('p1', 0, 'a.png', '/x/a.png', 'abc', 'm1', x'0000803f');
PRAGMA application_id = 1280003147;
PRAGMA user_version = 3;
)sql";

TEST(CatalogStore, AVersion3StoreGainsColoursUnknownForItsImages) {
  TempDir dir;
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir / "store.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, kVersion3Schema, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  sqlite3_close(db);

  auto store = Store::open(dir / "store.db");
  // The old image is kept, vector and all, and says that its colour is not known.
  auto images = store->images_of("p1", /*with_embeddings=*/true);
  ASSERT_EQ(images.size(), 1u);
  EXPECT_EQ(images[0].embedding, std::vector<float>{1.f});
  EXPECT_TRUE(images[0].colour.empty());
  auto missing = store->images_without_colour();
  ASSERT_EQ(missing.size(), 1u);
  EXPECT_EQ(missing[0].id, images[0].id);
  EXPECT_EQ(missing[0].source, "/x/a.png");
  EXPECT_EQ(store->vectors_version(), 1);

  // Filling it in does not make the vectors look changed, and new images carry theirs.
  store->set_image_colour(images[0].id, {0.25f, 0.75f});
  EXPECT_EQ(store->vectors_version(), 1);
  EXPECT_TRUE(store->images_without_colour().empty());
  ImageRecord fresh = image_of("p1", 1, "m1", {2.f});
  fresh.colour = {1.f, 0.f, 0.f};
  const std::int64_t fresh_id = store->add_image(fresh);
  std::vector<std::pair<std::int64_t, std::vector<float>>> colours;
  store->for_each_colour([&](std::int64_t id, const std::vector<float>& c) { colours.emplace_back(id, c); });
  ASSERT_EQ(colours.size(), 2u);
  EXPECT_EQ(colours[0], std::make_pair(images[0].id, std::vector<float>{0.25f, 0.75f}));
  EXPECT_EQ(colours[1], std::make_pair(fresh_id, std::vector<float>{1.f, 0.f, 0.f}));
  EXPECT_EQ(store->get_image(fresh_id, false)->colour, (std::vector<float>{1.f, 0.f, 0.f}));
  expect_error([&] { store->set_image_colour(fresh_id, {}); }, ErrorKind::kInvalidInput, "empty");

  // Reopening migrates nothing twice.
  store.reset();
  store = Store::open(dir / "store.db");
  EXPECT_EQ(store->get_image(images[0].id, false)->colour, (std::vector<float>{0.25f, 0.75f}));
}

TEST(CatalogStore, LabelledImagesNeedACategory) {
  TempDir dir;
  auto store = Store::open(dir / "store.db");
  Product unlabelled = sample_product("u");
  unlabelled.category.clear();
  store->upsert_product(unlabelled);
  store->upsert_product(sample_product("p1"));
  store->add_image(image_of("u", 0));
  store->add_image(image_of("p1", 0));
  EXPECT_EQ(
      store->labelled_images(),
      (std::vector<std::pair<std::string, std::string>>{{"/catalog/img/p1-0.jpg", "dresses"}}));
}

TEST(CatalogStore, AddImageToMissingProductIsNotFoundAndLeavesNoTransaction) {
  TempDir dir;
  auto store = Store::open(dir / "store.db");
  expect_error([&] { store->add_image(image_of("ghost", 0)); }, ErrorKind::kNotFound, "ghost");
  EXPECT_EQ(store->vectors_version(), 0);
  // Would fail with "cannot start a transaction within a transaction" had one been left open.
  Store::Transaction transaction(*store);
  transaction.commit();
}

TEST(CatalogStore, MetaKeepsSettingsButNotTheVectorsVersion) {
  TempDir dir;
  auto store = Store::open(dir / "store.db");
  EXPECT_FALSE(store->get_meta("model"));
  store->set_meta("model", "cnn-v1");
  store->set_meta("model", "cnn-v2");
  EXPECT_EQ(store->get_meta("model"), "cnn-v2");
  expect_error([&] { store->set_meta("vectors_version", "7"); }, ErrorKind::kInvalidInput,
               "vectors_version");
}

TEST(CatalogStore, DataSurvivesReopen) {
  TempDir dir;
  Product p = sample_product("p1");
  std::int64_t id = 0;
  {
    auto store = Store::open(dir / "store.db");
    Store::Transaction transaction(*store);
    store->upsert_product(p);
    id = store->add_image(image_of("p1", 0, "m1", {0.5f, -1.5f}));
    store->set_meta("model", "m1");
    transaction.commit();
  }
  auto store = Store::open(dir / "store.db");
  Product expected = p;
  expected.images = {"img/p1-0.jpg"};
  EXPECT_EQ(store->get_product("p1"), expected);
  EXPECT_EQ(store->get_image(id, true)->embedding, (std::vector<float>{0.5f, -1.5f}));
  EXPECT_EQ(store->get_meta("model"), "m1");
  EXPECT_EQ(store->vectors_version(), 1);
}

TEST(CatalogStore, BackupIsACopyOfOneCommittedStateTakenWhileWriting) {
  TempDir dir;
  auto store = Store::open(dir / "store.db");
  auto writer = Store::open(dir / "store.db");
  for (int i = 0; i < 50; ++i) store->upsert_product(sample_product("p" + std::to_string(i)));
  {
    // A write in progress on another connection is not part of the copy.
    Store::Transaction open_write(*writer);
    writer->upsert_product(sample_product("uncommitted"));
    store->backup_to(dir / "copy.db");
  }
  auto copy = Store::open(dir / "copy.db");
  copy->check_integrity(dir / "copy.db");
  EXPECT_EQ(copy->product_ids(), store->product_ids());
  EXPECT_EQ(copy->counts().products, 50);
  EXPECT_EQ(copy->get_product("p7"), store->get_product("p7"));
  expect_error([&] { store->backup_to(dir / "copy.db"); }, ErrorKind::kIO, "already exists");
  expect_error([&] { store->backup_to(dir / "no-such-folder" / "copy.db"); }, ErrorKind::kIO,
               "no-such-folder");
  EXPECT_FALSE(std::filesystem::exists(dir / "no-such-folder"));
}

TEST(CatalogStore, CheckIntegrityNamesTheFileOfADamagedStore) {
  TempDir dir;
  {
    auto store = Store::open(dir / "store.db");
    Store::Transaction transaction(*store);
    for (int i = 0; i < 2000; ++i) store->upsert_product(sample_product("product-" + std::to_string(i)));
    transaction.commit();
  }
  Store::open(dir / "store.db")->check_integrity(dir / "store.db");
  // Overwrite pages in the middle of the file: the header still reads, the b-tree does not.
  std::string bytes = lookalike::testing::read_text(dir / "store.db");
  ASSERT_GT(bytes.size(), 20u * 4096);
  for (std::size_t i = 10 * 4096; i < 14 * 4096; ++i) bytes[i] = static_cast<char>(i * 131);
  write_text(dir / "store.db", bytes);
  auto store = Store::open(dir / "store.db");
  expect_error([&] { store->check_integrity(dir / "store.db"); }, ErrorKind::kIO,
               (dir / "store.db").string() + " is corrupt");
}

TEST(CatalogStore, TwoStoresOnOneFileSeeEachOthersCommits) {
  TempDir dir;
  auto writer = Store::open(dir / "store.db");
  auto reader = Store::open(dir / "store.db");
  {
    Store::Transaction transaction(*writer);
    writer->upsert_product(sample_product("p1"));
    // Uncommitted work is invisible to other connections, and a store opens meanwhile.
    EXPECT_FALSE(reader->get_product("p1"));
    auto late = Store::open(dir / "store.db");
    EXPECT_TRUE(late->product_ids().empty());
    transaction.commit();
  }
  EXPECT_TRUE(reader->get_product("p1"));
}

TEST(CatalogStore, TransactionRolledBackUnlessCommitted) {
  TempDir dir;
  auto store = Store::open(dir / "store.db");
  {
    Store::Transaction transaction(*store);
    store->upsert_product(sample_product("p1"));
    store->add_image(image_of("p1", 0));
    store->delete_product("p1");
    store->upsert_product(sample_product("p2"));
    store->add_image(image_of("p2", 0));
  }
  EXPECT_TRUE(store->product_ids().empty());
  EXPECT_EQ(store->counts().images, 0);
  EXPECT_EQ(store->vectors_version(), 0);

  {
    Store::Transaction transaction(*store);
    store->upsert_product(sample_product("p3"));
    transaction.commit();
  }
  EXPECT_EQ(store->product_ids(), std::vector<std::string>{"p3"});
}

TEST(CatalogStore, OpenRefusesFilesThatAreNotLookalikeStores) {
  TempDir dir;
  write_text(dir / "notes.db", std::string(8192, 'n'));
  expect_error([&] { Store::open(dir / "notes.db"); }, ErrorKind::kIO, (dir / "notes.db").string());

  std::string other = (dir / "other.db").string();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(other.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE products (id TEXT)", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  expect_error([&] { Store::open(other); }, ErrorKind::kIO,
               other + " is not a lookalike catalog store");

  expect_error([&] { Store::open(dir / "missing-folder" / "store.db"); }, ErrorKind::kIO,
               "missing-folder");
}

}  // namespace
}  // namespace lookalike::catalog

// ---- Full-text search (catalog/text.h, Store::match_text) ----

namespace lookalike::catalog {
namespace {

using lookalike::testing::TempDir;

Product text_product(const std::string& id, const std::string& title, const std::string& brand,
                     const std::string& category, std::map<std::string, std::string> attributes = {}) {
  Product p;
  p.id = id;
  p.title = title;
  p.brand = brand;
  p.category = category;
  p.price = 10;
  p.currency = "EUR";
  p.attributes = std::move(attributes);
  return p;
}

std::vector<std::string> matching(const Store& store, const std::string& text, bool prefix = true) {
  std::vector<std::string> ids;
  for (const auto& m : store.match_text(TextQuery::parse(text, {}, prefix))) ids.push_back(m.product_id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

using Ids = std::vector<std::string>;

TEST(TextQuery, QuotesEveryWordAndAndsThem) {
  auto q = TextQuery::parse("Leather  Boots");
  EXPECT_EQ(q.terms(), (Ids{"leather", "boots"}));
  EXPECT_TRUE(q.last_is_prefix());
  EXPECT_EQ(q.match_expression(), "\"leather\" AND \"boots\"*");
  // A space or punctuation after the last word: the shopper finished it.
  EXPECT_FALSE(TextQuery::parse("leather boots ").last_is_prefix());
  EXPECT_FALSE(TextQuery::parse("leather boots.").last_is_prefix());
  EXPECT_FALSE(TextQuery::parse("leather boots", {}, /*prefix=*/false).last_is_prefix());
  EXPECT_EQ(TextQuery::parse("leather boots", {}, false).match_expression(), "\"leather\" AND \"boots\"");
  // A one-letter last word is not a prefix: it would match most of the vocabulary.
  EXPECT_FALSE(TextQuery::parse("t").last_is_prefix());
  EXPECT_EQ(TextQuery::parse("T-shirt/top").terms(), (Ids{"t", "shirt", "top"}));
  EXPECT_EQ(TextQuery::parse("CAFÉ Crème").terms(), (Ids{"cafe", "creme"}));
}

TEST(TextQuery, OperatorsAndSyntaxAreOnlyWords) {
  struct Case {
    std::string text;
    Ids terms;
  };
  const Case cases[] = {
      {"\"leather", {"leather"}},
      {"boot\"", {"boot"}},
      {"NEAR(boot leather, 2)", {"near", "boot", "leather", "2"}},
      {"boot*", {"boot"}},
      {"^boot", {"boot"}},
      {"title:boot", {"title", "boot"}},
      {"{title brand}: boot", {"title", "brand", "boot"}},
      {"AND OR NOT", {"and", "or", "not"}},
      {"boot -leather +red", {"boot", "leather", "red"}},
      {"a\"\"b", {"a", "b"}},
      {"red; DROP TABLE products;--", {"red", "drop", "table", "products"}},
  };
  for (const auto& c : cases) {
    auto q = TextQuery::parse(c.text);
    EXPECT_EQ(q.terms(), c.terms) << c.text;
    // Nothing but quoted words, AND and a final *.
    std::string rebuilt;
    for (std::size_t i = 0; i < c.terms.size(); ++i) rebuilt += (i ? " AND \"" : "\"") + c.terms[i] + "\"";
    if (q.last_is_prefix()) rebuilt += "*";
    EXPECT_EQ(q.match_expression(), rebuilt) << c.text;
  }
}

TEST(TextQuery, RefusesBadTextNamingTheProblem) {
  auto refused = [](const std::string& text, const std::string& fragment, const TextLimits& limits = {}) {
    expect_error([&] { TextQuery::parse(text, limits); }, ErrorKind::kInvalidInput, fragment);
  };
  refused("", "text: is empty");
  refused("  \t ", "text: is empty");
  refused("\"\" * ^ : ( )", "text: has no letters or digits to search for");
  refused("— … «»", "has no letters or digits");
  refused(std::string(257, 'a'), "text: is 257 bytes, more than the limit of 256");
  refused("a b c d e f g h i j k l m n o p q", "text: has 17 words, more than the limit of 16");
  refused("one two three", "has 3 words, more than the limit of 2", TextLimits{256, 2, 2});
  refused("boot \xff", "text: is not valid UTF-8 (at byte 6)");
  refused("caf\xc3", "not valid UTF-8 (at byte 4)");
  refused("\xc0\xaf", "not valid UTF-8 (at byte 1)");          // overlong '/'
  refused("x\xed\xa0\x80", "not valid UTF-8 (at byte 2)");     // a UTF-16 surrogate
  refused("\xf4\x90\x80\x80", "not valid UTF-8 (at byte 1)");  // above U+10FFFF
  EXPECT_EQ(TextQuery::parse(std::string(256, 'a')).terms().size(), 1u);
}

TEST(TextSearch, MatchesTitleBrandCategoryAndAttributeValues) {
  TempDir dir;
  auto store = Store::open(dir / "store.db");
  store->upsert_product(
      text_product("a", "Everyday Ankle boot", "Northwind", "Ankle boot", {{"material", "leather"}}));
  store->upsert_product(
      text_product("b", "Studio T-shirt/top", "Kestrel", "T-shirt/top", {{"color", "red"}}));
  store->upsert_product(text_product("c", "Café runner", "Fjörd", "Sneaker", {{"material", "canvas"}}));
  EXPECT_EQ(matching(*store, "northwind"), (Ids{"a"}));   // brand
  EXPECT_EQ(matching(*store, "sneaker"), (Ids{"c"}));     // category
  EXPECT_EQ(matching(*store, "leather"), (Ids{"a"}));     // attribute value
  EXPECT_EQ(matching(*store, "material", false), Ids{});  // attribute keys are not indexed
  EXPECT_EQ(matching(*store, "color", false), Ids{});
  EXPECT_EQ(matching(*store, "boots", false), (Ids{"a"}));  // porter: plural finds singular
  EXPECT_EQ(matching(*store, "sneakers", false), (Ids{"c"}));
  EXPECT_EQ(matching(*store, "CAFE fjord"), (Ids{"c"}));  // case and diacritics folded
  EXPECT_EQ(matching(*store, "t-shirt"), (Ids{"b"}));
  EXPECT_EQ(matching(*store, "northwind red"), Ids{});  // every word must match
  EXPECT_EQ(matching(*store, "ankle bo"), (Ids{"a"}));  // the last word as a prefix
  EXPECT_EQ(matching(*store, "ankle bo", false), Ids{});
  EXPECT_EQ(matching(*store, "kes"), (Ids{"b"}));
  // Operators in the text are words: "NOT red" must not mean "without red".
  EXPECT_EQ(matching(*store, "NOT red"), Ids{});
  EXPECT_EQ(matching(*store, "title:studio"), Ids{});  // "title" is not a word of b
  EXPECT_EQ(matching(*store, "studio \"kestrel"), (Ids{"b"}));
}

TEST(TextSearch, RanksByBm25) {
  TempDir dir;
  auto store = Store::open(dir / "store.db");
  // "leather" in title, category and material, versus once in a long title.
  store->upsert_product(
      text_product("strong", "Leather boot", "Atlas", "Leather goods", {{"material", "leather"}}));
  store->upsert_product(
      text_product("weak", "Classic tall winter walking boot with leather trim and laces", "Atlas", "Boot"));
  store->upsert_product(text_product("none", "Canvas boot", "Atlas", "Boot"));
  auto matches = store->match_text(TextQuery::parse("leather"));
  ASSERT_EQ(matches.size(), 2u);
  std::map<std::string, double> relevance;
  for (const auto& m : matches) {
    EXPECT_GT(m.relevance, 0) << m.product_id;
    relevance[m.product_id] = m.relevance;
  }
  EXPECT_GT(relevance["strong"], relevance["weak"]);
}

TEST(TextSearch, FollowsUpdatesAndDeletes) {
  TempDir dir;
  auto store = Store::open(dir / "store.db");
  store->upsert_product(text_product("a", "Runner", "Atlas", "Sneaker", {{"color", "red"}}));
  store->upsert_product(text_product("b", "Runner", "Atlas", "Sneaker", {{"color", "blue"}}));
  EXPECT_EQ(matching(*store, "red"), (Ids{"a"}));
  // Changing only the price leaves the text alone; an unchanged upsert is a no-op.
  auto a = text_product("a", "Runner", "Atlas", "Sneaker", {{"color", "red"}});
  a.price = 20;
  EXPECT_TRUE(store->upsert_product(a));
  EXPECT_FALSE(store->upsert_product(a));
  EXPECT_EQ(matching(*store, "red runner"), (Ids{"a"}));
  // Title, brand and attributes changes are searchable at once; the old words are gone.
  a.title = "Trail shoe";
  a.brand = "Northwind";
  a.attributes = {{"color", "green"}};
  EXPECT_TRUE(store->upsert_product(a));
  EXPECT_EQ(matching(*store, "red"), Ids{});
  EXPECT_EQ(matching(*store, "runner"), (Ids{"b"}));
  EXPECT_EQ(matching(*store, "trail northwind green"), (Ids{"a"}));
  // Deletes, also inside a transaction that is rolled back.
  {
    Store::Transaction tx(*store);
    store->delete_product("b");
    EXPECT_EQ(matching(*store, "runner"), Ids{});
  }
  EXPECT_EQ(matching(*store, "runner"), (Ids{"b"}));
  EXPECT_TRUE(store->delete_product("b"));
  EXPECT_EQ(matching(*store, "runner"), Ids{});
  EXPECT_EQ(matching(*store, "sneaker"), (Ids{"a"}));
  // A product deleted and added again is found once.
  store->upsert_product(text_product("b", "Runner again", "Atlas", "Sneaker"));
  EXPECT_EQ(matching(*store, "runner"), (Ids{"b"}));
  EXPECT_EQ(matching(*store, "sneaker"), (Ids{"a", "b"}));
}

TEST(TextSearch, HostileTextIsRefusedOrSearchedNeverAnFts5Error) {
  TempDir dir;
  auto store = Store::open(dir / "store.db");
  store->upsert_product(text_product("a", "Leather boot", "Northwind", "Ankle boot"));
  const std::string hostile[] = {
      "\"",
      "\"\"",
      "boot\"",
      "NEAR(leather boot)",
      "NEAR/2",
      "*",
      "boot*",
      "^leather",
      "leather^",
      "title:boot",
      "-title:boot",
      "{title}:x",
      "AND",
      "OR OR",
      "NOT boot",
      "( boot",
      "boot )",
      "a AND OR NOT b",
      "'boot'",
      "boot + leather",
      "\\\"boot",
      "%",
      "\x01\x02 boot",
      std::string("boot\0leather", 12),
      "rowid:1",
      "product_text:boot",
      "leather NEAR boot",
      "b*o*o*t",
  };
  for (const auto& text : hostile) {
    try {
      auto query = TextQuery::parse(text);
      store->match_text(query);
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidInput) << text << ": " << e.what();
      EXPECT_EQ(std::string(e.what()).rfind("text: ", 0), 0u) << e.what();
    }
  }
  EXPECT_EQ(matching(*store, "NEAR(leather boot)"), Ids{});  // "near" is a word, not in the product
  EXPECT_EQ(matching(*store, "^leather boot*"), (Ids{"a"}));
  EXPECT_EQ(matching(*store, std::string("boot\0leather", 12)), (Ids{"a"}));
}

TEST(TextSearch, MigrationFillsTheTableFromAnOlderStore) {
  TempDir dir;
  {
    auto store = Store::open(dir / "store.db");
    store->upsert_product(
        text_product("a", "Leather boot", "Northwind", "Ankle boot", {{"material", "suede"}}));
    store->upsert_product(text_product("b", "Canvas sneaker", "Atlas", "Sneaker"));
  }
  // Take the file back to store version 4, before full-text search (migration 5) and
  // the taste affinities (migration 6) existed.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir / "store.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "DROP TRIGGER products_text_insert; DROP TRIGGER products_text_update; "
                         "DROP TRIGGER products_text_delete; DROP TABLE product_text; DROP TABLE text_rows; "
                         "DROP TABLE taste_affinities; PRAGMA user_version = 4",
                         nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);

  auto store = Store::open(dir / "store.db");
  EXPECT_EQ(matching(*store, "northwind suede"), (Ids{"a"}));
  EXPECT_EQ(matching(*store, "sneakers"), (Ids{"b"}));
  store->upsert_product(text_product("c", "Suede loafer", "Atlas", "Loafer"));
  EXPECT_EQ(matching(*store, "suede"), (Ids{"a", "c"}));
  // The table's tokenizer is the one the query builder assumes.
  ASSERT_EQ(sqlite3_open((dir / "store.db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* statement = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT sql FROM sqlite_master WHERE name = 'product_text'", -1,
                               &statement, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(statement), SQLITE_ROW);
  const std::string sql = reinterpret_cast<const char*>(sqlite3_column_text(statement, 0));
  sqlite3_finalize(statement);
  sqlite3_close(db);
  EXPECT_NE(sql.find(std::string("tokenize = '") + kTextTokenizer + "'"), std::string::npos) << sql;
}

}  // namespace
}  // namespace lookalike::catalog
