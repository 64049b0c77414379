// Full-text search over the catalog: the shopper's words made into a safe SQLite
// FTS5 query. The store keeps an FTS5 table of every product's title, brand,
// category and attribute values in step with the products (catalog/store.h,
// Store::match_text); this header only turns text into a query for it.
//
// A shopper's text is never handed to FTS5's query language as it is: it is split
// into words by the same tokenizer the table uses (unicode61: letters and digits
// are word characters, everything else separates words, case and diacritics are
// folded), and each word becomes a quoted FTS5 string; the words are ANDed. So
// quotes, NEAR, *, ^, column filters ("title:"), parentheses and AND/OR/NOT are
// ordinary words or separators, never operators.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace lookalike::catalog {

// The FTS5 tokenizer of the text table. porter: English stemming, so "boots"
// finds "boot" and "sneakers" "sneaker" (catalog text is English in the demo and
// in most shops' feeds; stemming costs precision only for rare words). unicode61
// remove_diacritics 2: "cafe" finds "Café" and "CAFÉ", in any script unicode61 knows.
inline constexpr const char* kTextTokenizer = "porter unicode61 remove_diacritics 2";

// Bounds on a text query; each has a default, documented in the README and docs/API.md.
struct TextLimits {
  std::size_t max_bytes = 256;  // of the text as given (UTF-8)
  std::size_t max_terms = 16;   // words after tokenizing
  // The last word matches as a prefix ("leather bo" finds "boot") when the text
  // ends in it (no space or punctuation after it) and it has at least this many
  // characters: one-letter prefixes would match most of the vocabulary.
  std::size_t min_prefix_chars = 2;
};

// A parsed text query. Immutable; safe to share between threads.
class TextQuery {
 public:
  // Parses a shopper's text. Throws Error(kInvalidInput) naming what was wrong:
  //   text: is empty / has no letters or digits to search for
  //   text: is 300 bytes, more than the limit of 256
  //   text: has 20 words, more than the limit of 16
  //   text: is not valid UTF-8 (at byte 7)
  // prefix: whether the last word may match as a prefix (search as you type).
  static TextQuery parse(const std::string& text, const TextLimits& limits = {}, bool prefix = true);

  // The words, lower-cased and without diacritics, in the order given.
  const std::vector<std::string>& terms() const { return terms_; }
  // Whether the last term matches as a prefix.
  bool last_is_prefix() const { return last_is_prefix_; }

  // The FTS5 MATCH expression: every term quoted, ANDed, the last one followed
  // by * when it is a prefix, e.g. "leather" AND "bo"*.
  std::string match_expression() const;

  // The terms joined by spaces, with a trailing * on a prefix: for messages and echoes.
  std::string to_string() const;

 private:
  std::vector<std::string> terms_;
  bool last_is_prefix_ = false;
};

}  // namespace lookalike::catalog
