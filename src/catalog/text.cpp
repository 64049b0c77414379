#include "catalog/text.h"

#include <sqlite3.h>

#include <cstdint>
#include <memory>

#include "common/error.h"

namespace lookalike::catalog {

namespace {

Error text_error(const std::string& what) { return Error(ErrorKind::kInvalidInput, "text: " + what); }

// The byte offset of the first invalid UTF-8 sequence (overlong forms, surrogates and
// code points above U+10FFFF included), or npos when the text is valid.
std::size_t invalid_utf8_at(const std::string& text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return i;
    }
    if (i + len > n) return i;
    for (std::size_t j = 1; j < len; ++j) {
      if ((s[i + j] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (s[i + j] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return i;
    }
    i += len;
  }
  return std::string::npos;
}

std::size_t code_points(const std::string& token) {
  std::size_t count = 0;
  for (unsigned char c : token) count += (c & 0xC0) != 0x80;
  return count;
}

struct Token {
  std::string text;
  std::size_t end = 0;  // byte offset just after it in the text tokenized
};

struct CloseDb {
  void operator()(sqlite3* db) const { sqlite3_close(db); }
};

// Splits text into words exactly as the FTS5 table's tokenizer does before stemming
// (kTextTokenizer without porter: the table stems the quoted words itself when it
// parses the query, and stemming twice is not always the same as stemming once).
// Uses FTS5's own unicode61 tokenizer on a private in-memory connection.
std::vector<Token> tokenize(const std::string& text) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(":memory:", &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_MEMORY, nullptr);
  std::unique_ptr<sqlite3, CloseDb> db(raw);
  if (rc != SQLITE_OK) throw Error(ErrorKind::kInternal, "text: cannot open SQLite to tokenize the text");

  fts5_api* api = nullptr;
  sqlite3_stmt* statement = nullptr;
  if (sqlite3_prepare_v2(db.get(), "SELECT fts5(?1)", -1, &statement, nullptr) == SQLITE_OK) {
    sqlite3_bind_pointer(statement, 1, static_cast<void*>(&api), "fts5_api_ptr", nullptr);
    sqlite3_step(statement);
  }
  sqlite3_finalize(statement);
  if (api == nullptr || api->iVersion < 2) {
    throw Error(ErrorKind::kInternal, "text: this SQLite library has no FTS5 full-text search");
  }
  void* user_data = nullptr;
  fts5_tokenizer methods{};
  if (api->xFindTokenizer(api, "unicode61", &user_data, &methods) != SQLITE_OK) {
    throw Error(ErrorKind::kInternal, "text: FTS5 has no unicode61 tokenizer");
  }
  const char* args[] = {"remove_diacritics", "2"};
  Fts5Tokenizer* tokenizer = nullptr;
  if (methods.xCreate(user_data, args, 2, &tokenizer) != SQLITE_OK) {
    throw Error(ErrorKind::kInternal, "text: cannot create the unicode61 tokenizer");
  }
  std::vector<Token> tokens;
  auto on_token = [](void* context, int /*flags*/, const char* token, int size, int /*start*/, int end) {
    static_cast<std::vector<Token>*>(context)->push_back(
        Token{std::string(token, static_cast<std::size_t>(size)), static_cast<std::size_t>(end)});
    return SQLITE_OK;
  };
  const int tokenized = methods.xTokenize(tokenizer, &tokens, FTS5_TOKENIZE_QUERY, text.data(),
                                          static_cast<int>(text.size()), on_token);
  methods.xDelete(tokenizer);
  if (tokenized != SQLITE_OK) throw Error(ErrorKind::kInternal, "text: the tokenizer failed");
  return tokens;
}

std::string quoted(const std::string& term) {
  std::string out = "\"";
  for (char c : term) {
    if (c == '"') out += '"';  // FTS5 strings escape a quote by doubling it
    out += c;
  }
  return out + "\"";
}

}  // namespace

TextQuery TextQuery::parse(const std::string& text, const TextLimits& limits, bool prefix) {
  if (text.size() > limits.max_bytes) {
    throw text_error("is " + std::to_string(text.size()) + " bytes, more than the limit of " +
                     std::to_string(limits.max_bytes));
  }
  if (const std::size_t at = invalid_utf8_at(text); at != std::string::npos) {
    throw text_error("is not valid UTF-8 (at byte " + std::to_string(at + 1) + ")");
  }
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) throw text_error("is empty");
  const std::vector<Token> tokens = tokenize(text);
  if (tokens.empty()) throw text_error("has no letters or digits to search for");
  if (tokens.size() > limits.max_terms) {
    throw text_error("has " + std::to_string(tokens.size()) + " words, more than the limit of " +
                     std::to_string(limits.max_terms));
  }
  TextQuery query;
  for (const auto& token : tokens) query.terms_.push_back(token.text);
  query.last_is_prefix_ = prefix && tokens.back().end == text.size() &&
                          code_points(tokens.back().text) >= limits.min_prefix_chars;
  return query;
}

std::string TextQuery::match_expression() const {
  std::string out;
  for (std::size_t i = 0; i < terms_.size(); ++i) {
    if (i > 0) out += " AND ";
    out += quoted(terms_[i]);
  }
  if (last_is_prefix_) out += '*';
  return out;
}

std::string TextQuery::to_string() const {
  std::string out;
  for (std::size_t i = 0; i < terms_.size(); ++i) {
    if (i > 0) out += ' ';
    out += terms_[i];
  }
  if (last_is_prefix_) out += '*';
  return out;
}

}  // namespace lookalike::catalog
