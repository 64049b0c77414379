#include "catalog/product.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "common/error.h"

namespace lookalike::catalog {

using json = nlohmann::json;

namespace {

// A catalog line needs two levels (the product, its attributes or images); 16 leaves room
// for a clear "wrong type" message while bounding the parser's work.
constexpr int kMaxDepth = 16;
constexpr std::size_t kMaxIdBytes = 256;
constexpr double kMaxRating = 5;

[[noreturn]] void invalid(const std::string& message) {
  throw Error(ErrorKind::kInvalidInput, message);
}

// Quotes user text for an error message: escaped, and cut so that a huge or binary key
// cannot make the message huge or invalid UTF-8.
std::string quote(const std::string& text) {
  constexpr std::size_t kMaxShown = 64;
  bool cut = text.size() > kMaxShown;
  json shown = cut ? text.substr(0, kMaxShown) : text;
  return shown.dump(-1, ' ', false, json::error_handler_t::replace) + (cut ? "..." : "");
}

// nlohmann's messages quote the bytes last read, which may be binary or megabytes long.
std::string describe_parse_error(const json::exception& e) {
  std::string message = e.what();
  if (message.rfind("[json.exception.", 0) == 0) {
    if (auto close = message.find("] "); close != std::string::npos) message.erase(0, close + 2);
  }
  const std::string prefix = "parse error at line 1, ";
  if (message.rfind(prefix, 0) == 0) message.erase(0, prefix.size());
  constexpr std::size_t kMaxMessage = 200;
  if (message.size() > kMaxMessage) message = message.substr(0, kMaxMessage) + "...";
  for (char& c : message) {
    auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte >= 0x7f) c = '?';
  }
  return "invalid JSON: " + message;
}

// nlohmann builds the document without recursion, but a deeply nested line is never a
// product: refuse it before spending time and memory on it.
void check_depth(const std::string& line) {
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxDepth) {
        invalid("JSON is nested deeper than " + std::to_string(kMaxDepth) + " levels");
      }
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
}

// json::parse keeps the last of duplicate keys silently; a duplicate is usually a mistake
// whose outcome the shop would not expect, so it is refused.
json parse_object(const std::string& line) {
  std::vector<std::set<std::string>> keys;
  std::string duplicate;
  auto on_event = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        keys.emplace_back();
        break;
      case json::parse_event_t::object_end:
        keys.pop_back();
        break;
      case json::parse_event_t::key:
        if (!keys.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
          duplicate = parsed.get<std::string>();
        }
        break;
      default:
        break;
    }
    return true;
  };
  json doc;
  try {
    doc = json::parse(line, on_event, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const json::exception& e) {
    invalid(describe_parse_error(e));
  }
  if (!duplicate.empty()) invalid("duplicate key " + quote(duplicate));
  if (!doc.is_object()) invalid("a catalog line must be a JSON object");
  return doc;
}

void check_size(const std::string& what, const std::string& text, const ParseLimits& limits) {
  if (text.size() > limits.max_field_bytes) {
    invalid(what + " is longer than " + std::to_string(limits.max_field_bytes) + " bytes");
  }
}

std::string get_string(const std::string& key, const json& value, const ParseLimits& limits) {
  if (!value.is_string()) invalid(key + " must be a string");
  const auto& text = value.get_ref<const std::string&>();
  check_size(key, text, limits);
  return text;
}

double get_number(const std::string& key, const json& value) {
  if (!value.is_number()) invalid(key + " must be a number");
  double number = value.get<double>();
  if (!std::isfinite(number)) invalid(key + " must be finite");
  return number;
}

std::int64_t get_count(const std::string& key, const json& value) {
  if (value.is_number_unsigned()) {
    if (value.get<std::uint64_t>() >
        static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      invalid(key + " is too large");
    }
  } else if (!value.is_number_integer()) {
    invalid(key + " must be an integer");
  }
  auto count = value.get<std::int64_t>();
  if (count < 0) invalid(key + " must not be negative");
  return count;
}

void check_id(const std::string& id) {
  if (id.empty()) invalid("id must not be empty");
  if (id.size() > kMaxIdBytes) {
    invalid("id is longer than " + std::to_string(kMaxIdBytes) + " bytes");
  }
  for (char c : id) {
    auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) invalid("id must not contain control characters");
  }
}

std::map<std::string, std::string> get_attributes(const json& value, const ParseLimits& limits) {
  if (!value.is_object()) invalid("attributes must be an object of strings");
  if (value.size() > limits.max_attributes) {
    invalid("more than " + std::to_string(limits.max_attributes) + " attributes");
  }
  std::map<std::string, std::string> attributes;
  for (const auto& [key, item] : value.items()) {
    if (key.empty()) invalid("attribute names must not be empty");
    check_size("attribute name " + quote(key), key, limits);
    attributes.emplace(key, get_string("attribute " + quote(key), item, limits));
  }
  return attributes;
}

std::vector<std::string> get_images(const json& value, const ParseLimits& limits) {
  if (!value.is_array()) invalid("images must be an array of strings");
  if (value.size() > limits.max_images) {
    invalid("more than " + std::to_string(limits.max_images) + " images");
  }
  std::vector<std::string> images;
  images.reserve(value.size());
  for (const auto& item : value) {
    images.push_back(get_string("each image", item, limits));
    if (images.back().empty()) invalid("image paths must not be empty");
  }
  return images;
}

}  // namespace

bool Product::operator==(const Product& other) const {
  auto fields = [](const Product& p) {
    return std::tie(p.id, p.title, p.brand, p.category, p.price, p.currency, p.rating,
                    p.rating_count, p.stock, p.attributes, p.group_id, p.images);
  };
  return fields(*this) == fields(other);
}

CatalogEntry parse_json_line(const std::string& line, const ParseLimits& limits) {
  if (line.size() > limits.max_line_bytes) {
    invalid("line is longer than " + std::to_string(limits.max_line_bytes) + " bytes");
  }
  check_depth(line);
  json doc = parse_object(line);

  CatalogEntry entry;
  Product& p = entry.product;
  bool has_id = false;
  for (const auto& [key, value] : doc.items()) {
    if (key == "id") {
      p.id = get_string(key, value, limits);
      has_id = true;
    } else if (key == "title") {
      p.title = get_string(key, value, limits);
    } else if (key == "brand") {
      p.brand = get_string(key, value, limits);
    } else if (key == "category") {
      p.category = get_string(key, value, limits);
    } else if (key == "price") {
      p.price = get_number(key, value);
      if (p.price < 0) invalid("price must not be negative");
    } else if (key == "currency") {
      p.currency = get_string(key, value, limits);
    } else if (key == "rating") {
      p.rating = get_number(key, value);
      if (p.rating < 0 || p.rating > kMaxRating) invalid("rating must be between 0 and 5");
    } else if (key == "rating_count") {
      p.rating_count = get_count(key, value);
    } else if (key == "stock") {
      p.stock = get_count(key, value);
    } else if (key == "attributes") {
      p.attributes = get_attributes(value, limits);
    } else if (key == "group_id") {
      p.group_id = get_string(key, value, limits);
    } else if (key == "images") {
      p.images = get_images(value, limits);
    } else if (key == "deleted") {
      if (!value.is_boolean()) invalid("deleted must be true or false");
      entry.deleted = value.get<bool>();
    } else {
      invalid("unknown key " + quote(key));
    }
  }
  if (!has_id) invalid("id is required");
  check_id(p.id);
  return entry;
}

std::string to_json_line(const Product& product) {
  nlohmann::ordered_json line;
  line["id"] = product.id;
  line["title"] = product.title;
  line["brand"] = product.brand;
  line["category"] = product.category;
  line["price"] = product.price;
  line["currency"] = product.currency;
  line["rating"] = product.rating;
  line["rating_count"] = product.rating_count;
  line["stock"] = product.stock;
  line["attributes"] = product.attributes;
  line["group_id"] = product.group_id;
  line["images"] = product.images;
  try {
    return line.dump();
  } catch (const json::type_error&) {
    throw Error(ErrorKind::kInvalidInput,
                "product " + quote(product.id) + " holds text that is not valid UTF-8");
  }
}

}  // namespace lookalike::catalog
