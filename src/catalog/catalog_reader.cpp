// read_catalog: streams a JSONL or CSV catalog file line by line with bounded memory.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>
#include <utility>

#include "catalog/product.h"
#include "common/error.h"

namespace lookalike::catalog {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Reads a stream in large chunks so that neither format pays a virtual call per byte.
class ByteSource {
 public:
  ByteSource(std::istream& in, const fs::path& file) : in_(in), file_(file), buffer_(kChunk) {}

  int get() { return pos_ < end_ || fill() ? static_cast<unsigned char>(buffer_[pos_++]) : -1; }
  int peek() { return pos_ < end_ || fill() ? static_cast<unsigned char>(buffer_[pos_]) : -1; }

  // Spreadsheet programs start UTF-8 files with a byte order mark; it is not content.
  void skip_byte_order_mark() {
    static constexpr char kMark[] = "\xEF\xBB\xBF";
    if (peek() >= 0 && end_ - pos_ >= 3 && std::memcmp(&buffer_[pos_], kMark, 3) == 0) pos_ += 3;
  }

  // Reads up to the next '\n' (consumed, not stored). Keeps at most max bytes of the line
  // and sets too_long if it held more, so an oversized line costs no memory. Returns false
  // at the end of the input.
  bool read_line(std::string& line, std::size_t max, bool& too_long) {
    line.clear();
    too_long = false;
    if (pos_ == end_ && !fill()) return false;
    for (;;) {
      const char* start = &buffer_[pos_];
      std::size_t available = end_ - pos_;
      const auto* newline = static_cast<const char*>(std::memchr(start, '\n', available));
      std::size_t length = newline ? static_cast<std::size_t>(newline - start) : available;
      std::size_t room = max - line.size();
      if (length > room) too_long = true;
      line.append(start, std::min(length, room));
      pos_ += newline ? length + 1 : length;
      if (newline || !fill()) return true;
    }
  }

 private:
  static constexpr std::size_t kChunk = 64 * 1024;

  bool fill() {
    in_.read(buffer_.data(), static_cast<std::streamsize>(buffer_.size()));
    if (in_.bad()) throw Error(ErrorKind::kIO, "cannot read " + file_.string());
    pos_ = 0;
    end_ = static_cast<std::size_t>(in_.gcount());
    return end_ > 0;
  }

  std::istream& in_;
  const fs::path& file_;
  std::vector<char> buffer_;
  std::size_t pos_ = 0;
  std::size_t end_ = 0;
};

using EntryCallback = std::function<void(std::size_t, CatalogEntry&&)>;
using ErrorCallback = std::function<void(std::size_t, const std::string&)>;

std::string too_long_message(const char* what, std::size_t max) {
  return std::string(what) + " is longer than " + std::to_string(max) + " bytes";
}

void read_jsonl(ByteSource& source, const ParseLimits& limits, const EntryCallback& on_entry,
                const ErrorCallback& on_error) {
  std::string line;
  bool too_long = false;
  std::size_t number = 0;
  // One byte of slack (saturating) so that a CRLF line of exactly the limit is not refused
  // for its '\r'.
  std::size_t read_limit = std::max(limits.max_line_bytes, limits.max_line_bytes + 1);
  while (source.read_line(line, read_limit, too_long)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (too_long || line.size() > limits.max_line_bytes) {
      on_error(number, too_long_message("line", limits.max_line_bytes));
      continue;
    }
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    CatalogEntry entry;
    try {
      entry = parse_json_line(line, limits);
    } catch (const Error& e) {
      on_error(number, e.what());
      continue;
    }
    on_entry(number, std::move(entry));
  }
}

struct CsvRecord {
  std::vector<std::string> fields;
  std::string error;     // the first problem found, empty if none
  std::size_t line = 0;  // where the record starts
  bool blank = false;
};

// Reads one RFC 4180 record. `line` is the number of the line the next byte is on; quoted
// newlines advance it, so later records keep their true line numbers. A malformed record
// is still read to its end so that the next one starts in the right place. Returns false
// at the end of the input.
bool read_record(ByteSource& source, std::size_t max_bytes, std::size_t& line, CsvRecord& record) {
  record.fields.assign(1, std::string());
  record.error.clear();
  record.line = line;
  int c = source.get();
  if (c < 0) return false;

  enum class State { kFieldStart, kUnquoted, kQuoted, kAfterQuote } state = State::kFieldStart;
  std::size_t bytes = 0;  // of the record, without its final line break
  auto fail = [&](const char* message) {
    if (record.error.empty()) record.error = message;
  };
  for (;; c = source.get()) {
    if (c < 0) {
      if (state == State::kQuoted) fail("quoted field is not closed");
      break;
    }
    if (state != State::kQuoted && (c == '\n' || (c == '\r' && source.peek() == '\n'))) {
      if (c == '\r') source.get();
      ++line;
      break;
    }
    bool keep = ++bytes <= max_bytes;
    if (state == State::kQuoted) {
      if (c == '"' && source.peek() == '"') {
        source.get();
        ++bytes;
        if (keep) record.fields.back().push_back('"');
      } else if (c == '"') {
        state = State::kAfterQuote;
      } else {
        if (c == '\n') ++line;
        if (keep) record.fields.back().push_back(static_cast<char>(c));
      }
    } else if (c == ',') {
      if (keep) record.fields.emplace_back();
      state = State::kFieldStart;
    } else if (c == '"' && state == State::kFieldStart) {
      state = State::kQuoted;
    } else {
      if (c == '"') fail("a quote inside an unquoted field must be doubled and the field quoted");
      if (state == State::kAfterQuote) fail("unexpected text after a closing quote");
      if (keep) record.fields.back().push_back(static_cast<char>(c));
      state = State::kUnquoted;
    }
  }
  record.blank = bytes == 0;
  if (bytes > max_bytes) record.error = too_long_message("record", max_bytes);
  return true;
}

enum class Kind { kText, kReal, kInteger, kImages, kDeleted, kAttribute };

struct Column {
  Kind kind;
  std::string name;  // the JSONL key, or the attribute name for kAttribute
};

std::vector<Column> parse_header(const std::vector<std::string>& names, const fs::path& file) {
  static const std::map<std::string, Kind> kKnown = {
      {"id", Kind::kText},       {"title", Kind::kText},           {"brand", Kind::kText},
      {"category", Kind::kText}, {"price", Kind::kReal},           {"currency", Kind::kText},
      {"rating", Kind::kReal},   {"rating_count", Kind::kInteger}, {"stock", Kind::kInteger},
      {"group_id", Kind::kText}, {"images", Kind::kImages},        {"deleted", Kind::kDeleted}};
  static const std::string kAttributePrefix = "attr.";
  auto header_error = [&](const std::string& message) {
    return Error(ErrorKind::kInvalidInput, file.string() + ": header: " + message);
  };
  std::vector<Column> columns;
  std::set<std::string> seen;
  for (const auto& name : names) {
    if (!seen.insert(name).second) throw header_error("duplicate column " + json(name).dump());
    if (auto known = kKnown.find(name); known != kKnown.end()) {
      columns.push_back({known->second, name});
    } else if (name.rfind(kAttributePrefix, 0) == 0 && name.size() > kAttributePrefix.size()) {
      columns.push_back({Kind::kAttribute, name.substr(kAttributePrefix.size())});
    } else {
      throw header_error("unknown column " +
                         json(name).dump(-1, ' ', false, json::error_handler_t::replace));
    }
  }
  if (!seen.count("id")) throw header_error("an id column is required");
  return columns;
}

std::string_view trim(std::string_view text) {
  auto first = text.find_first_not_of(" \t");
  if (first == std::string_view::npos) return {};
  return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

template <typename Number>
Number parse_number(std::string_view text, const std::string& column, const char* expected) {
  Number value{};
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) {
    throw Error(ErrorKind::kInvalidInput, column + " must be " + expected);
  }
  return value;
}

bool parse_deleted(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower.empty() || lower == "false" || lower == "0") return false;
  if (lower == "true" || lower == "1") return true;
  throw Error(ErrorKind::kInvalidInput, "deleted must be true, false, 1, 0 or empty");
}

// A CSV row becomes the equivalent JSONL line, so both formats are held to exactly the
// same rules by one validator. Empty cells mean "not given".
std::string row_to_json_line(const std::vector<Column>& columns,
                             const std::vector<std::string>& cells) {
  json line = json::object();
  for (std::size_t i = 0; i < columns.size(); ++i) {
    const Column& column = columns[i];
    std::string_view cell = cells[i];
    std::string_view value = trim(cell);
    switch (column.kind) {
      case Kind::kText:
        if (column.name == "id" || !cell.empty()) line[column.name] = cell;
        break;
      case Kind::kReal:
        if (!value.empty()) {
          line[column.name] = parse_number<double>(value, column.name, "a number");
        }
        break;
      case Kind::kInteger:
        if (!value.empty()) {
          line[column.name] = parse_number<std::int64_t>(value, column.name, "an integer");
        }
        break;
      case Kind::kImages: {
        json images = json::array();
        for (std::size_t start = 0; start <= cell.size();) {
          std::size_t bar = std::min(cell.find('|', start), cell.size());
          if (bar > start) images.push_back(cell.substr(start, bar - start));
          start = bar + 1;
        }
        if (!images.empty()) line["images"] = std::move(images);
        break;
      }
      case Kind::kDeleted:
        line["deleted"] = parse_deleted(value);
        break;
      case Kind::kAttribute:
        if (!cell.empty()) line["attributes"][column.name] = cell;
        break;
    }
  }
  try {
    return line.dump();
  } catch (const json::type_error&) {
    throw Error(ErrorKind::kInvalidInput, "text is not valid UTF-8");
  }
}

void read_csv(ByteSource& source, const fs::path& file, const ParseLimits& limits,
              const EntryCallback& on_entry, const ErrorCallback& on_error) {
  CsvRecord record;
  std::size_t line = 1;
  if (!read_record(source, limits.max_line_bytes, line, record) || record.blank) {
    throw Error(ErrorKind::kInvalidInput, file.string() + ": the header row is missing");
  }
  if (!record.error.empty()) {
    throw Error(ErrorKind::kInvalidInput, file.string() + ": header: " + record.error);
  }
  const std::vector<Column> columns = parse_header(record.fields, file);

  // The record was already bounded; its JSON form may be longer because of escaping.
  ParseLimits json_limits = limits;
  json_limits.max_line_bytes = std::numeric_limits<std::size_t>::max();
  while (read_record(source, limits.max_line_bytes, line, record)) {
    if (record.blank) continue;
    if (!record.error.empty()) {
      on_error(record.line, record.error);
      continue;
    }
    if (record.fields.size() != columns.size()) {
      on_error(record.line, "expected " + std::to_string(columns.size()) + " fields, found " +
                                std::to_string(record.fields.size()));
      continue;
    }
    CatalogEntry entry;
    try {
      entry = parse_json_line(row_to_json_line(columns, record.fields), json_limits);
    } catch (const Error& e) {
      on_error(record.line, e.what());
      continue;
    }
    on_entry(record.line, std::move(entry));
  }
}

}  // namespace

void read_catalog(const fs::path& file, const ParseLimits& limits, const EntryCallback& on_entry,
                  const ErrorCallback& on_error) {
  std::string extension = file.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  bool is_csv = extension == ".csv";
  if (!is_csv && extension != ".jsonl" && extension != ".ndjson") {
    throw Error(ErrorKind::kInvalidInput,
                file.string() + ": unknown catalog format (expected .jsonl, .ndjson or .csv)");
  }
  std::error_code ec;
  auto status = fs::status(file, ec);
  if (!fs::exists(status)) throw Error(ErrorKind::kNotFound, "no such file: " + file.string());
  if (fs::is_directory(status)) {
    throw Error(ErrorKind::kIO, "cannot read " + file.string() + ": it is a directory");
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    throw Error(ErrorKind::kIO, "cannot open " + file.string() + ": " + std::strerror(errno));
  }
  ByteSource source(in, file);
  source.skip_byte_order_mark();
  if (is_csv) {
    read_csv(source, file, limits, on_entry, on_error);
  } else {
    read_jsonl(source, limits, on_entry, on_error);
  }
}

}  // namespace lookalike::catalog
