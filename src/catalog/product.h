// The catalog's plain data types and the parsers for catalog files (JSONL, CSV).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace lookalike::catalog {

// A product as the shop describes it. `id` is the shop's own identifier.
struct Product {
  std::string id;
  std::string title;
  std::string brand;
  std::string category;
  double price = 0;
  std::string currency;
  double rating = 0;             // 0..5
  std::int64_t rating_count = 0;
  std::int64_t stock = 0;
  std::map<std::string, std::string> attributes;  // free key/value: color, size, material, ...
  std::string group_id;          // product family shared by colour/size variants; may be empty
  std::vector<std::string> images;  // as written in the catalog: relative to the catalog file

  bool operator==(const Product& other) const;
  bool operator!=(const Product& other) const { return !(*this == other); }
};

// One line of a catalog file: a product to add/update, or a deletion
// (JSONL {"id": "...", "deleted": true}; CSV column deleted=true).
struct CatalogEntry {
  Product product;
  bool deleted = false;
};

// Limits on what a catalog line may hold; each has a default documented in the README.
struct ParseLimits {
  std::size_t max_line_bytes = 1u << 20;     // 1 MiB
  std::size_t max_field_bytes = 64u << 10;   // 64 KiB for any one string
  std::size_t max_images = 64;               // per product
  std::size_t max_attributes = 64;           // per product
};

// Reads a catalog file, JSONL or CSV chosen by extension (.jsonl/.ndjson or .csv).
// Calls on_entry for each valid line and on_error(line_number, message) for each
// invalid one, then continues: one bad line never stops an import. Line numbers
// start at 1. Throws Error(kNotFound/kIO) if the file cannot be read and
// Error(kInvalidInput) for an unknown extension or a CSV without an id column.
//
// JSONL: one object per line with keys id (required, non-empty string), title,
// brand, category, price, currency, rating, rating_count, stock, attributes
// (object of strings), group_id, images (array of strings), deleted (bool).
// Unknown keys are an error (they are usually typos). Blank lines are skipped.
// CSV (RFC 4180 quoting): a header row naming the same columns; images are
// separated by '|'; columns named attr.<key> become attributes.
void read_catalog(const std::filesystem::path& file, const ParseLimits& limits,
                  const std::function<void(std::size_t line, CatalogEntry&& entry)>& on_entry,
                  const std::function<void(std::size_t line, const std::string& message)>& on_error);

// Parses one JSONL line (same rules as above). Throws Error(kInvalidInput).
CatalogEntry parse_json_line(const std::string& line, const ParseLimits& limits);

// Serialises a product to one JSON line (the JSONL format above, images included).
std::string to_json_line(const Product& product);

}  // namespace lookalike::catalog
