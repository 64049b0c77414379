// Product filters: a small expression language over the catalog's metadata, and
// the columnar metadata table the expressions are evaluated on. Independent of
// the vector index and the embedder.
//
// Grammar (keywords AND, OR, NOT, IN, TRUE, FALSE are case-insensitive):
//
//   expr       := or
//   or         := and ("OR" and)*
//   and        := unary ("AND" unary)*
//   unary      := "NOT" unary | "(" expr ")" | comparison
//   comparison := field op value
//               | field ["NOT"] "IN" "(" value ("," value)* ")"
//               | "in_stock"                       (same as in_stock = true)
//   op         := "=" | "!=" | "<" | "<=" | ">" | ">="
//   value      := "string" | 'string' | number | TRUE | FALSE
//
// Fields: category, brand, group_id, attributes.<key> (text: =, !=, IN);
// price, stock, rating, rating_count (numbers: every op, IN); in_stock
// (true when stock > 0: = or != with TRUE/FALSE, or alone). Text comparisons
// ignore ASCII case ("sneaker" matches "Sneaker"). A product without the
// attribute never equals a value: attributes.color != "red" is NOT
// attributes.color = "red", so it holds for products without a colour.
// Strings use backslash escapes for the quote and the backslash.
//
// Example: category = "Sneaker" AND price < 50 AND NOT attributes.color IN ("red", "pink")
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "catalog/product.h"

namespace lookalike::filter {

// Bounds on what a filter may be; each has a default, documented in the README.
struct ParseLimits {
  std::size_t max_length = 4096;  // bytes of filter text
  std::size_t max_depth = 32;     // nesting of parentheses and NOT
  std::size_t max_terms = 128;    // comparisons plus values listed after IN
};

struct Node;  // the parsed expression, defined in filter.cpp

class Table;

// A parsed filter. Immutable; safe to share between threads.
class Filter {
 public:
  // Parses filter text. Throws Error(kInvalidInput) whose message names the
  // position (1-based, in bytes) and what was expected there, for example
  //   filter: at position 18: expected a number after "<", found "cheap"
  // Text that is empty or only spaces is refused too (no filter means none given).
  static Filter parse(const std::string& text, const ParseLimits& limits = {});

  // The filter written back in canonical form (keywords upper-case, strings
  // double-quoted); parsing it again gives the same filter.
  std::string to_string() const;

  // Whether one product passes. The reference implementation: plain and slow.
  bool matches(const catalog::Product& product) const;

  // One byte per table row, 1 when the row is a live product that passes.
  // Column at a time; the fast path used by searches.
  std::vector<std::uint8_t> evaluate(const Table& table) const;

 private:
  std::shared_ptr<const Node> root_;
};

// The metadata of every product, one row per product, column by column, for
// evaluating filters and counting facets without touching the store. Rows are
// never reused: a deleted product leaves a dead row.
//
// Thread safety: const members may run concurrently; a Table is copied, changed
// and then published (copy-on-write), never changed while others read it.
class Table {
 public:
  Table();

  // Adds a product, or replaces the metadata of one already present. Returns its row.
  std::uint32_t upsert(const catalog::Product& product);
  // Marks a product's row dead; false when it was not present.
  bool remove(const std::string& id);

  std::optional<std::uint32_t> row_of(const std::string& id) const;
  std::size_t rows() const { return ids_.size(); }  // live and dead
  std::size_t live() const { return live_count_; }
  bool alive(std::uint32_t row) const { return alive_[row] != 0; }
  const std::string& id(std::uint32_t row) const { return ids_[row]; }
  double price(std::uint32_t row) const { return price_[row]; }
  double rating(std::uint32_t row) const { return rating_[row]; }
  std::int64_t stock(std::uint32_t row) const { return stock_[row]; }
  std::int64_t rating_count(std::uint32_t row) const { return rating_count_[row]; }
  const std::string& currency(std::uint32_t row) const { return currency_.names[currency_.codes[row]]; }
  // Images the product has (Product::images of upsert, or set_images).
  std::size_t images(std::uint32_t row) const { return images_[row]; }
  void set_images(std::uint32_t row, std::size_t count) { images_[row] = static_cast<std::uint32_t>(count); }
  // The row's value of attribute `key` (ASCII case ignored), or "" when it has none.
  const std::string& attribute(std::uint32_t row, const std::string& key) const;

  // Product families (colour and size variants). Rows sharing a non-empty group_id,
  // compared ignoring ASCII case as filters compare it, are one family; a row
  // without one is a family of its own. Kept up to date by upsert and remove, so
  // grouping search results reads no store.
  //
  // The family's key: equal for two rows exactly when they are of one family.
  std::uint64_t family_key(std::uint32_t row) const {
    const std::uint32_t group = group_.codes[row];
    return group != 0 ? group : (std::uint64_t{1} << 32) | row;
  }
  // Keys of families with a group_id are below this bound (those without are above it).
  std::uint64_t grouped_family_keys() const { return group_.names.size(); }
  // The live rows of the row's family, ascending (the row itself included when live).
  std::vector<std::uint32_t> family(std::uint32_t row) const;

  // A text column: one code per row (0: empty or absent), the spelling first
  // seen for each code, and a lookup from ASCII-lower-cased text to code.
  struct TextColumn {
    std::vector<std::uint32_t> codes;
    std::vector<std::string> names{""};
    std::unordered_map<std::string, std::uint32_t> by_folded;
    std::uint32_t code_of(const std::string& value);  // adds a new code when unseen
    std::optional<std::uint32_t> find(const std::string& value) const;
  };

  const TextColumn* text_column(
      const std::string& field) const;  // category, brand, group_id, attributes.<key>

 private:
  friend class Filter;
  std::vector<std::string> ids_;
  // Shared between copies until one adds a product; that copy then clones it once.
  std::shared_ptr<std::unordered_map<std::string, std::uint32_t>> rows_by_id_;
  std::vector<std::uint8_t> alive_;
  std::size_t live_count_ = 0;
  std::vector<double> price_, rating_;
  std::vector<std::int64_t> stock_, rating_count_;
  std::vector<std::uint32_t> images_;
  TextColumn category_, brand_, group_, currency_;
  std::map<std::string, TextColumn> attributes_;  // by ASCII-lower-cased key
  // The live rows of each family with a group_id, ascending, by group_ code.
  std::vector<std::vector<std::uint32_t>> family_rows_;
  void leave_family(std::uint32_t row);
  void join_family(std::uint32_t row);
};

// ASCII lower case: how text fields and attribute keys are compared.
std::string fold(const std::string& text);

// Facet counts over a set of rows: for the filter sidebar.
struct FacetValue {
  std::string value;
  std::size_t count = 0;
};
struct PriceBucket {
  double from = 0;           // inclusive
  std::optional<double> to;  // exclusive; none for the last, open-ended bucket
  std::size_t count = 0;
};
struct Facets {
  std::vector<FacetValue> category, brand;
  std::map<std::string, std::vector<FacetValue>> attributes;  // by the attribute key asked for
  std::vector<PriceBucket> price;
};

struct FacetOptions {
  std::vector<std::string> attributes{"color"};            // attribute keys to count
  std::vector<double> price_edges{25, 50, 100, 200, 500};  // ascending; buckets [0,25) ... [500,inf)
  std::size_t max_values = 20;  // per facet, the most frequent first (ties by value)
};

// Counts the given rows (live ones only; each row once, however often listed).
// Values are counted under their first-seen spelling; absent values are not
// counted; every price bucket is listed, empty ones too.
Facets count_facets(const Table& table, const std::vector<std::uint32_t>& rows, const FacetOptions& options);

// The facets as one JSON object, the form the API and the CLI print (docs/API.md):
// {"category": [{"value", "count"}...], "brand": [...], "<attribute key>": [...],
//  "price": [{"from", "to" (null for the last bucket), "count"}...]}.
std::string facets_json(const Facets& facets);

}  // namespace lookalike::filter
