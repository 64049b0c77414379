#include "server/api.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "catalog/event.h"
#include "catalog/product.h"
#include "catalog/text.h"
#include "common/error.h"
#include "common/files.h"
#include "image/image.h"
#include "search/engine.h"
#include "server/imports.h"
#include "server/metrics.h"
#include "server/request_body.h"

namespace lookalike::server {
namespace fs = std::filesystem;
using httplib::Request;
using httplib::Response;
using nlohmann::json;

namespace {

constexpr int kDefaultPageSize = 10;
// Browsers send about 20; the bytes of the request line and headers are bounded too
// (64 KiB, by the transport).
constexpr std::size_t kMaxHeaderFields = 100;
constexpr std::size_t kMaxStaticFileBytes = 16u << 20;
// How long a request waits for its share of the decode budget before 503.
constexpr std::chrono::seconds kDecodeBudgetWait{10};

const char* kHtmlSecurityPolicy =
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self'; "
    "script-src 'self'; frame-ancestors 'none'";

const std::vector<std::string> kDefaultFields = {"similarity", "title",     "brand",       "category",
                                                 "price",      "currency",  "rating",      "rating_count",
                                                 "stock",      "image_url", "family_size", "variants"};
// Result fields that are not product fields: present with grouping only (docs/API.md, "Variants").
bool is_family_field(const std::string& field) { return field == "family_size" || field == "variants"; }
const std::set<std::string> kAllowedFields = {"title",     "brand",      "category",     "price",
                                              "currency",  "rating",     "rating_count", "stock",
                                              "image_url", "attributes", "group_id"};

ApiError bad_request(const std::string& message) { return {400, "bad_request", message, {}}; }
ApiError not_found(const std::string& message) { return {404, "not_found", message, {}}; }

std::string dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_json(Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(dump(body), "application/json");
}

void render_error(Response& res, const ApiError& e) {
  for (const auto& [name, value] : e.headers) res.set_header(name, value);
  send_json(res, e.status, {{"error", {{"code", e.code}, {"message", e.message}}}});
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string trim(const std::string& s) {
  auto begin = s.find_first_not_of(" \t");
  if (begin == std::string::npos) return "";
  auto end = s.find_last_not_of(" \t");
  return s.substr(begin, end - begin + 1);
}

// "image/PNG; charset=x" -> "image/png"
std::string media_type(const Request& req) {
  const std::string header = req.get_header_value("Content-Type");
  return lower(trim(header.substr(0, header.find(';'))));
}

bool parse_u64(const std::string& text, std::uint64_t& value) {
  if (text.empty() || text.size() > 19) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
  }
  value = std::stoull(text);
  return true;
}

int parse_int(const std::string& name, const std::string& text, int min, int max) {
  int value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end || value < min || value > max) {
    throw bad_request(name + " must be an integer from " + std::to_string(min) + " to " +
                      std::to_string(max) + ", not \"" + text.substr(0, 32) + "\"");
  }
  return value;
}

int json_int(const json& doc, const std::string& name, int min, int max) {
  if (!doc.is_number_integer()) throw bad_request(name + " must be an integer");
  auto value = doc.get<std::int64_t>();
  if (value < min || value > max) {
    throw bad_request(name + " must be from " + std::to_string(min) + " to " + std::to_string(max));
  }
  return static_cast<int>(value);
}

std::string image_url(const std::string& id, std::size_t n) {
  return "/v1/products/" + percent_encode(id) + "/images/" + std::to_string(n);
}

double rounded(double v, double scale) { return std::round(v * scale) / scale; }

json product_field(const catalog::Product& p, const std::string& field) {
  if (field == "title") return p.title;
  if (field == "brand") return p.brand;
  if (field == "category") return p.category;
  if (field == "price") return p.price;
  if (field == "currency") return p.currency;
  if (field == "rating") return p.rating;
  if (field == "rating_count") return p.rating_count;
  if (field == "stock") return p.stock;
  if (field == "attributes") return p.attributes;
  if (field == "group_id") return p.group_id;
  if (field == "image_url") return p.images.empty() ? json(nullptr) : json(image_url(p.id, 0));
  return nullptr;
}

std::vector<std::string> parse_fields(const std::vector<std::string>& names) {
  std::vector<std::string> fields;
  for (const auto& raw : names) {
    std::string name = trim(raw);
    if (name.empty() || name == "product_id" || name == "score") continue;
    if (!kAllowedFields.count(name) && name != "similarity" && !is_family_field(name))
      throw bad_request("unknown field \"" + name.substr(0, 64) + "\" in fields");
    if (std::find(fields.begin(), fields.end(), name) == fields.end()) fields.push_back(name);
  }
  return fields;
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (;;) {
    auto comma = text.find(',', start);
    parts.push_back(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return parts;
}

struct Page {
  int k = kDefaultPageSize;
  int offset = 0;
  std::vector<std::string> fields = kDefaultFields;
  search::RankRequest ranking;  // searches are re-ranked, by the default profile unless told otherwise
  bool explain = false;
  search::SearchOptions search;  // filter, sort, depth, facets
};

double parse_price(const std::string& name, const std::string& text) {
  double value = 0;
  std::size_t used = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (text.empty() || used != text.size() || !std::isfinite(value) || value < 0 || value > 1e12) {
    throw bad_request(name + " must be a number from 0 to 1e12, not \"" + text.substr(0, 32) + "\"");
  }
  return value;
}

void set_filter(Page& page, const std::string& text) {
  if (trim(text).empty()) {  // an empty form field means no filter
    page.search.filter.reset();
    return;
  }
  try {
    page.search.filter = filter::Filter::parse(text);
  } catch (const Error& e) {
    throw ApiError{400, "invalid_filter", e.what(), {}};
  }
}

// The shopper's words: whole (text_prefix false) or with the last word as a prefix.
struct TextParams {
  std::optional<std::string> text;
  bool prefix = true;
};

void set_text(Page& page, const TextParams& params) {
  if (!params.text || trim(*params.text).empty()) {  // an empty search box means no text
    page.search.text.reset();
    return;
  }
  try {
    page.search.text = catalog::TextQuery::parse(*params.text, {}, params.prefix);
  } catch (const Error& e) {
    throw ApiError{400, "invalid_text", e.what(), {}};
  }
}

void set_sort(Page& page, const std::string& name) {
  try {
    page.search.sort = search::parse_sort(name);
  } catch (const Error& e) {
    throw bad_request(e.what());
  }
}

void set_match(Page& page, const std::string& name) {
  try {
    page.search.match = embed::parse_match(name);
  } catch (const Error& e) {
    throw bad_request(e.what());
  }
}

bool parse_bool(const std::string& name, const std::string& text) {
  if (text == "true" || text == "1") return true;
  if (text == "false" || text == "0") return false;
  throw bad_request(name + " must be true or false, not \"" + text.substr(0, 32) + "\"");
}

double json_price(const json& value, const std::string& name) {
  if (!value.is_number()) throw bad_request(name + " must be a number");
  return parse_price(name, value.dump());
}

std::string json_string(const json& value, const std::string& name) {
  if (!value.is_string()) throw bad_request(name + " must be a string");
  return value.get<std::string>();
}

// The ranking parameters a query string may carry (docs/API.md, "Ranking").
void ranking_from_query(const Request& req, Page& page) {
  auto& r = page.ranking;
  if (req.has_param("profile")) r.profile = req.get_param_value("profile");
  if (req.has_param("user")) r.user_id = req.get_param_value("user");
  if (req.has_param("price")) r.price.target = parse_price("price", req.get_param_value("price"));
  if (req.has_param("price_min")) r.price.min = parse_price("price_min", req.get_param_value("price_min"));
  if (req.has_param("price_max")) r.price.max = parse_price("price_max", req.get_param_value("price_max"));
  if (req.has_param("explain")) page.explain = parse_bool("explain", req.get_param_value("explain"));
}

// One ranking key of a JSON search body; false when the key is not one.
bool ranking_from_json(const std::string& key, const json& value, Page& page) {
  auto& r = page.ranking;
  if (key == "profile") {
    r.profile = json_string(value, "profile");
  } else if (key == "user") {
    r.user_id = json_string(value, "user");
  } else if (key == "price") {
    r.price.target = json_price(value, "price");
  } else if (key == "price_min") {
    r.price.min = json_price(value, "price_min");
  } else if (key == "price_max") {
    r.price.max = json_price(value, "price_max");
  } else if (key == "explain") {
    if (!value.is_boolean()) throw bad_request("explain must be true or false");
    page.explain = value.get<bool>();
  } else {
    return false;
  }
  return true;
}

void check_ranking(const Page& page) {
  const auto& price = page.ranking.price;
  if (price.min && price.max && *price.min > *price.max) throw bad_request("price_min is above price_max");
  if (price.target && *price.target <= 0) throw bad_request("price must be above 0");
  if (page.ranking.user_id.size() > catalog::EventLimits{}.max_id_bytes)
    throw bad_request("user is too long");
}

void check_page(const Page& page) {
  if (page.k + page.offset > search::Engine::kMaxK) {
    throw bad_request("k + offset must be at most " + std::to_string(search::Engine::kMaxK));
  }
  check_ranking(page);
}

Page page_from_query(const Request& req) {
  Page page;
  if (req.has_param("k")) page.k = parse_int("k", req.get_param_value("k"), 1, Api::kMaxPageSize);
  if (req.has_param("offset")) {
    page.offset = parse_int("offset", req.get_param_value("offset"), 0, search::Engine::kMaxK);
  }
  if (req.has_param("fields")) page.fields = parse_fields(split_commas(req.get_param_value("fields")));
  if (req.has_param("filter")) set_filter(page, req.get_param_value("filter"));
  if (req.has_param("sort")) set_sort(page, req.get_param_value("sort"));
  if (req.has_param("depth"))
    page.search.depth = parse_int("depth", req.get_param_value("depth"), 0, search::Engine::kMaxK);
  if (req.has_param("facets")) page.search.facets = parse_bool("facets", req.get_param_value("facets"));
  if (req.has_param("group")) page.search.group_variants = parse_bool("group", req.get_param_value("group"));
  if (req.has_param("match")) set_match(page, req.get_param_value("match"));
  ranking_from_query(req, page);
  return page;
}

image::CropBox crop_from_text(const std::string& text) {
  auto parts = split_commas(text);
  if (parts.size() != 4) throw bad_request("crop must be x,y,width,height");
  const int kMax = 1 << 20;
  return {parse_int("crop x", trim(parts[0]), 0, kMax), parse_int("crop y", trim(parts[1]), 0, kMax),
          parse_int("crop width", trim(parts[2]), 1, kMax),
          parse_int("crop height", trim(parts[3]), 1, kMax)};
}

image::CropBox crop_from_json(const json& doc) {
  if (!doc.is_object()) throw bad_request("crop must be an object {x, y, width, height}");
  const int kMax = 1 << 20;
  for (const char* key : {"x", "y", "width", "height"}) {
    if (!doc.contains(key)) throw bad_request(std::string("crop needs ") + key);
  }
  return {json_int(doc["x"], "crop x", 0, kMax), json_int(doc["y"], "crop y", 0, kMax),
          json_int(doc["width"], "crop width", 1, kMax), json_int(doc["height"], "crop height", 1, kMax)};
}

json swatch_json(const search::Variant& v) {
  json out{{"product_id", v.product_id},
           {"color", v.color},
           {"size", v.size},
           {"price", v.price},
           {"currency", v.currency},
           {"stock", v.stock},
           {"image_url", v.images > 0 ? json(image_url(v.product_id, 0)) : json(nullptr)}};
  if (v.score) out["score"] = rounded(*v.score, 1e6);
  return out;
}

// Why a hit stands for its family: the first of its family's candidates in the final order.
json variant_choice_json(const search::ProductHit& hit, const Page& page) {
  std::size_t candidates = 1;
  for (const auto& v : hit.variants) candidates += v.score.has_value();
  const std::string among = " among the " + std::to_string(candidates) + " of its " +
                            std::to_string(hit.family_size) + " variants that were candidates";
  std::string reason;
  if (page.search.sort != search::Sort::kBestMatch) {
    reason = std::string("first in the ") + search::to_string(page.search.sort) + " order" + among;
  } else if (hit.ranking) {
    reason = "highest final score (profile " + page.ranking.profile + ")" + among;
  } else {
    reason = "most similar to the query" + among;
  }
  return {{"reason", reason}, {"candidates", candidates}};
}

json results_json(const search::QueryResult& result, const Page& page, double took_ms) {
  json results = json::array();
  const auto& hits = result.hits;
  for (std::size_t i = static_cast<std::size_t>(page.offset); i < hits.size(); ++i) {
    const auto& hit = hits[i];
    json r{{"product_id", hit.product_id}, {"score", rounded(hit.score, 1e6)}};
    for (const auto& field : page.fields) {
      if (field == "family_size") {
        if (page.search.group_variants) r[field] = hit.family_size;
      } else if (field == "variants") {
        if (!page.search.group_variants) continue;
        r[field] = json::array();
        for (const auto& v : hit.variants) r[field].push_back(swatch_json(v));
      } else {
        r[field] =
            field == "similarity" ? json(rounded(hit.similarity, 1e6)) : product_field(hit.product, field);
      }
    }
    if (hit.text_relevance) r["text_relevance"] = rounded(*hit.text_relevance, 1e6);
    if (page.explain && hit.ranking) r["explain"] = json::parse(rank::explain_json(*hit.ranking));
    if (page.explain && page.search.group_variants && hit.family_size > 1) {
      r["variant_choice"] = variant_choice_json(hit, page);
    }
    results.push_back(std::move(r));
  }
  json out{{"results", results},
           {"k", page.k},
           {"offset", page.offset},
           {"took_ms", rounded(took_ms, 100)},
           {"model", result.model},
           {"matched", result.matched},
           {"sort", search::to_string(page.search.sort)}};
  if (result.facets) out["facets"] = json::parse(filter::facets_json(*result.facets));
  if (page.search.text) out["text"] = page.search.text->to_string();
  return out;
}

json product_json(const catalog::Product& p) {
  json out{{"product_id", p.id}};
  for (const auto& field : kAllowedFields) out[field] = product_field(p, field);
  json urls = json::array();
  for (std::size_t i = 0; i < p.images.size(); ++i) urls.push_back(image_url(p.id, i));
  out["image_urls"] = urls;
  return out;
}

const char* extension_of(image::Format format) {
  switch (format) {
    case image::Format::kJpeg:
      return "jpg";
    case image::Format::kPng:
      return "png";
    case image::Format::kWebp:
      return "webp";
  }
  return "bin";
}

const char* content_type_of(image::Format format) {
  switch (format) {
    case image::Format::kJpeg:
      return "image/jpeg";
    case image::Format::kPng:
      return "image/png";
    case image::Format::kWebp:
      return "image/webp";
  }
  return "application/octet-stream";
}

std::string static_content_type(const fs::path& file) {
  static const std::map<std::string, std::string> kTypes = {{".html", "text/html; charset=utf-8"},
                                                            {".js", "text/javascript; charset=utf-8"},
                                                            {".mjs", "text/javascript; charset=utf-8"},
                                                            {".css", "text/css; charset=utf-8"},
                                                            {".json", "application/json"},
                                                            {".map", "application/json"},
                                                            {".svg", "image/svg+xml"},
                                                            {".png", "image/png"},
                                                            {".jpg", "image/jpeg"},
                                                            {".jpeg", "image/jpeg"},
                                                            {".webp", "image/webp"},
                                                            {".gif", "image/gif"},
                                                            {".ico", "image/x-icon"},
                                                            {".woff2", "font/woff2"},
                                                            {".woff", "font/woff"},
                                                            {".txt", "text/plain; charset=utf-8"},
                                                            {".webmanifest", "application/manifest+json"}};
  auto it = kTypes.find(lower(file.extension().string()));
  return it == kTypes.end() ? "application/octet-stream" : it->second;
}

std::string presented_key(const Request& req) {
  std::string auth = trim(req.get_header_value("Authorization"));
  if (!auth.empty()) {
    if (auth.size() > 7 && lower(auth.substr(0, 7)) == "bearer ") return trim(auth.substr(7));
    return "";
  }
  return trim(req.get_header_value("X-API-Key"));
}

std::string known_method(const std::string& method) {
  static const std::set<std::string> kMethods = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
  return kMethods.count(method) ? method : "other";
}

std::string join(const std::vector<std::string>& parts, const char* separator) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : separator) + p;
  return out;
}

// The ETag list of If-None-Match matches ours (weak comparison, as RFC 9110 asks for GET).
bool etag_matches(const std::string& header, const std::string& etag) {
  for (auto part : split_commas(header)) {
    part = trim(part);
    if (part == "*") return true;
    if (part.compare(0, 2, "W/") == 0) part = part.substr(2);
    if (part == etag) return true;
  }
  return false;
}

}  // namespace

ApiError to_api_error(const Error& error) {
  switch (error.kind()) {
    case ErrorKind::kInvalidInput:
      return bad_request(error.what());
    case ErrorKind::kUnsupported:
      return {415, "unsupported_media_type", error.what(), {}};
    case ErrorKind::kTooLarge:
      return {413, "payload_too_large", error.what(), {}};
    case ErrorKind::kUndecodable:
      return {422, "undecodable_image", error.what(), {}};
    case ErrorKind::kNotFound:
      return not_found(error.what());
    case ErrorKind::kModelMismatch:
    case ErrorKind::kIO:
    case ErrorKind::kInternal:
      break;
  }
  // Server-side failures: the details (paths, SQL) go to the log, not to the client.
  std::cerr << "lookalike: error (" << to_string(error.kind()) << "): " << error.what() << "\n";
  return {500, "internal", "internal error; the server log has the details", {}};
}

std::shared_ptr<search::Engine> EngineSlot::get() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return engine_;
}

void EngineSlot::set(std::shared_ptr<search::Engine> engine) {
  std::lock_guard<std::mutex> lock(mutex_);
  engine_ = std::move(engine);
}

Api::Api(ApiOptions options, ApiKeys keys, EngineSlot& engine, Metrics& metrics, ImportQueue& imports,
         ReindexRunner& reindexer)
    : options_(std::move(options)),
      keys_(std::move(keys)),
      engine_(engine),
      metrics_(metrics),
      imports_(imports),
      reindexer_(reindexer),
      openapi_(dump(openapi_spec(options_.public_search))),
      decode_budget_(options_.decode_budget_pixels) {}

std::shared_ptr<search::Engine> Api::engine() const {
  auto engine = engine_.get();
  if (!engine) throw ApiError{503, "not_ready", "the catalog is still loading", {{"Retry-After", "1"}}};
  return engine;
}

void Api::authorize(const Request& req, const Route& route) const {
  if (route.access == Access::kPublic) return;
  const std::string key = presented_key(req);
  if (key.empty()) {
    if (route.access == Access::kSearch && options_.public_search) return;
    throw ApiError{401,
                   "unauthorized",
                   "this route needs an API key: send Authorization: Bearer <key> or X-API-Key",
                   {{"WWW-Authenticate", "Bearer"}}};
  }
  // Both comparisons always run, so the time taken says nothing about which key matched.
  const bool admin = same_key(key, keys_.admin);
  const bool search = same_key(key, keys_.search);
  if (admin || (route.access == Access::kSearch && search)) return;
  if (search) {
    throw ApiError{403, "forbidden", "the search key cannot write; this route needs the admin key", {}};
  }
  throw ApiError{403, "forbidden", "the API key is not valid", {}};
}

bool Api::admit(const Request& req, Response& res, RequestState& state) {
  const bool chunked = req.has_header("Transfer-Encoding");
  const bool has_length = req.has_header("Content-Length");
  std::uint64_t length = 0;
  const bool length_ok = parse_u64(req.get_header_value("Content-Length"), length);
  // Until the body is known to be read, a refusal must close the connection:
  // the unread body would otherwise be parsed as the next request.
  state.close_after = state.linger = chunked || (has_length && (!length_ok || length > 0));
  try {
    // httplib adds REMOTE_ADDR, REMOTE_PORT, LOCAL_ADDR and LOCAL_PORT to what the client sent.
    const std::size_t sent_headers = req.headers.size() - std::min<std::size_t>(req.headers.size(), 4);
    if (sent_headers > kMaxHeaderFields) {
      throw ApiError{431,
                     "headers_too_large",
                     "the request has " + std::to_string(sent_headers) + " header fields; the limit is " +
                         std::to_string(kMaxHeaderFields),
                     {}};
    }
    const std::string raw_path = req.target.substr(0, req.target.find('?'));
    const MatchResult result = match_route(req.method, raw_path, state.match);
    if (state.match.any) state.route_label = state.match.any->pattern;
    if (result == MatchResult::kBadPath) throw bad_request("malformed path");
    if (result == MatchResult::kNoRoute) throw not_found("no route for " + raw_path.substr(0, 200));
    if (req.method == "OPTIONS") {
      auto allowed = state.match.allowed;
      allowed.push_back("OPTIONS");
      res.status = 204;
      res.set_header("Allow", join(allowed, ", "));
      if (!options_.cors_origin.empty()) {
        res.set_header("Access-Control-Allow-Methods", join(allowed, ", "));
        res.set_header("Access-Control-Allow-Headers",
                       "Authorization, X-API-Key, Content-Type, If-None-Match");
        res.set_header("Access-Control-Max-Age", "600");
      }
      return true;
    }
    if (result == MatchResult::kWrongMethod) {
      throw ApiError{405,
                     "method_not_allowed",
                     req.method + " is not allowed on " + state.route_label +
                         "; allowed: " + join(state.match.allowed, ", "),
                     {{"Allow", join(state.match.allowed, ", ")}}};
    }
    const Route& route = *state.match.route;
    state.route_label = route.pattern;

    // Body framing, decided from the headers alone: httplib 0.11 would read a
    // chunked or length-less body without any bound.
    if (chunked) {
      throw ApiError{411,
                     "length_required",
                     "send the body with Content-Length; chunked transfer encoding is not accepted",
                     {}};
    }
    if (req.get_header_value_count("Content-Length") > 1) throw bad_request("more than one Content-Length");
    if (has_length && !length_ok) throw bad_request("Content-Length is not a number");
    if (length > options_.max_body_bytes) {
      throw ApiError{413,
                     "payload_too_large",
                     "the body is " + std::to_string(length) + " bytes; the limit is " +
                         std::to_string(options_.max_body_bytes),
                     {}};
    }
    if ((route.method == "POST" || route.method == "PUT") && !has_length) {
      throw ApiError{411, "length_required", route.method + " needs a Content-Length header", {}};
    }
    if (length > 0 && !route.body_types.empty()) {
      const std::string encoding = lower(trim(req.get_header_value("Content-Encoding")));
      if (!encoding.empty() && encoding != "identity") {
        throw ApiError{
            415, "unsupported_media_type", "Content-Encoding " + encoding + " is not accepted", {}};
      }
      const std::string type = media_type(req);
      const auto& types = route.body_types;
      const bool allowed = type.empty() ? std::find(types.begin(), types.end(), "*") != types.end()
                                        : std::find(types.begin(), types.end(), type) != types.end();
      if (!allowed) {
        std::vector<std::string> listed;
        for (const auto& t : types) {
          if (t != "*") listed.push_back(t);
        }
        throw ApiError{
            415,
            "unsupported_media_type",
            "Content-Type \"" + type.substr(0, 100) + "\" is not accepted here; use " + join(listed, ", "),
            {}};
      }
    }
    authorize(req, route);
    if (route.needs_engine) engine();

    return false;  // the transport keeps the connection only once the body has been read
  } catch (const ApiError& e) {
    render_error(res, e);
    return true;
  }
}

void Api::handle(const Request& req, Response& res, RequestState& state) {
  const Route& route = *state.match.route;
  const auto& params = state.match.params;
  auto param = [&](const char* name) { return params.at(name); };
  try {
    switch (route.id) {
      case RouteId::kIndex:
        serve_static(req, res, "index.html");
        break;
      case RouteId::kStatic:
        serve_static(req, res, param("file"));
        break;
      case RouteId::kLivez:
        send_json(res, 200, {{"status", "ok"}});
        break;
      case RouteId::kReadyz:
        readyz(res);
        break;
      case RouteId::kMetrics:
        metrics(res);
        break;
      case RouteId::kOpenApi:
        res.set_content(openapi_, "application/json");
        break;
      case RouteId::kSearch:
        search(req, res);
        break;
      case RouteId::kGetProduct:
        get_product(res, param("id"));
        break;
      case RouteId::kSimilar:
        similar(req, res, param("id"));
        break;
      case RouteId::kVariants:
        variants(res, param("id"));
        break;
      case RouteId::kImage:
        image(req, res, param("id"), param("n"));
        break;
      case RouteId::kPutProduct:
        put_product(req, res, param("id"));
        break;
      case RouteId::kDeleteProduct:
        delete_product(res, param("id"));
        break;
      case RouteId::kPostImport:
        post_import(req, res);
        break;
      case RouteId::kPostReindex:
        post_reindex(req, res);
        break;
      case RouteId::kGetReindex:
        get_reindex(res);
        break;
      case RouteId::kGetImport:
        get_import(res, param("task_id"));
        break;
      case RouteId::kPostEvents:
        post_events(req, res);
        break;
      case RouteId::kListProfiles:
        list_profiles(res);
        break;
      case RouteId::kGetProfile:
        get_profile(res, param("name"));
        break;
      case RouteId::kPutProfile:
        put_profile(req, res, param("name"));
        break;
      case RouteId::kDeleteProfile:
        delete_profile(res, param("name"));
        break;
      case RouteId::kGetUser:
        get_user(res, param("id"));
        break;
      case RouteId::kDeleteUser:
        delete_user(res, param("id"));
        break;
    }
  } catch (const ApiError& e) {
    render_error(res, e);
  } catch (const Error& e) {
    render_error(res, to_api_error(e));
  } catch (const std::exception& e) {
    std::cerr << "lookalike: internal error on " << route.method << " " << route.pattern << ": " << e.what()
              << "\n";
    render_error(res, {500, "internal", "internal error; the server log has the details", {}});
  }
}

void Api::fill_error(Response& res) {
  switch (res.status) {
    case 400:
      render_error(res, bad_request("malformed HTTP request"));
      break;
    case 404:
      render_error(res, not_found("not found"));
      break;
    case 413:
      render_error(res, {413, "payload_too_large", "the body is over the limit", {}});
      break;
    case 414:
      render_error(res, {414, "uri_too_long", "the request line is over 8192 bytes", {}});
      break;
    case 416:
      render_error(res, {416, "range_not_satisfiable", "the requested range is outside the content", {}});
      break;
    default:
      render_error(res, {res.status, res.status >= 500 ? "internal" : "bad_request", "request failed", {}});
  }
}

void Api::finished(const Request& req, const Response& res, const RequestState& state) {
  const double seconds = std::chrono::duration<double>(Clock::now() - state.start).count();
  metrics_.observe(state.route_label, known_method(req.method), res.status, seconds);
}

void Api::refused_overloaded() { metrics_.count_overload_refusal(); }

void Api::serve_static(const Request&, Response& res, const std::string& file) const {
  // Only plain names: no hidden files, no "..", nothing a shell or a browser treats specially.
  std::size_t start = 0;
  while (start <= file.size()) {
    auto slash = file.find('/', start);
    std::string segment = file.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (segment.empty() || segment[0] == '.' ||
        !std::all_of(segment.begin(), segment.end(),
                     [](unsigned char c) { return std::isalnum(c) || c == '-' || c == '_' || c == '.'; })) {
      throw not_found("no such file: " + file.substr(0, 200));
    }
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  fs::path path;
  try {
    path = resolve_inside(options_.web_dir, file);  // follows symlinks: none may lead outside
  } catch (const Error&) {
    throw not_found("no such file: " + file);
  }
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw not_found("no such file: " + file);
  auto bytes = read_file(path, kMaxStaticFileBytes);
  res.set_header("Cache-Control", "no-cache");
  res.set_header("Content-Security-Policy", kHtmlSecurityPolicy);
  res.set_content(reinterpret_cast<const char*>(bytes.data()), bytes.size(), static_content_type(path));
}

void Api::readyz(Response& res) const {
  auto engine = engine_.get();
  if (!engine) {
    render_error(res, {503, "not_ready", "the catalog is still loading", {{"Retry-After", "1"}}});
    return;
  }
  send_json(res, 200, {{"status", "ready"}, {"products", engine->info().products}});
}

void Api::metrics(Response& res) const {
  auto engine = engine_.get();
  std::string text;
  if (engine) {
    auto info = engine->info();
    text = metrics_.render(&info);
  } else {
    text = metrics_.render(nullptr);
  }
  res.set_content(text, "text/plain; version=0.0.4; charset=utf-8");
}

void Api::search(const Request& req, Response& res) const {
  const auto started = Clock::now();
  auto engine = this->engine();
  Page page = page_from_query(req);
  std::optional<image::CropBox> crop;
  if (req.has_param("crop")) crop = crop_from_text(req.get_param_value("crop"));
  TextParams text;
  if (req.has_param("text")) text.text = req.get_param_value("text");
  if (req.has_param("text_prefix"))
    text.prefix = parse_bool("text_prefix", req.get_param_value("text_prefix"));

  std::vector<std::uint8_t> json_image;
  const std::uint8_t* data = nullptr;
  std::size_t size = 0;
  const std::string type = media_type(req);
  if (type == "multipart/form-data") {
    for (const auto& [name, part] : req.files) {
      if (name != "image")
        throw bad_request("unexpected multipart part \"" + name.substr(0, 64) +
                          "\"; send the photo as part \"image\"");
    }
    if (req.files.count("image") > 1 || (req.files.empty() && !text.text)) {
      throw bad_request("send exactly one multipart part named \"image\"");
    }
    if (req.files.count("image") == 1) {
      const auto& part = req.files.find("image")->second;
      data = reinterpret_cast<const std::uint8_t*>(part.content.data());
      size = part.content.size();
      if (size == 0) throw bad_request("the query image is empty");
    }
  } else if (type == "application/json") {
    json doc = parse_json_body(req.body, "the body");
    for (const auto& [key, value] : doc.items()) {
      if (key == "image_base64") {
        if (!value.is_string()) throw bad_request("image_base64 must be a string");
        json_image = decode_base64(value.get_ref<const std::string&>(), "image_base64");
      } else if (key == "k") {
        page.k = json_int(value, "k", 1, kMaxPageSize);
      } else if (key == "offset") {
        page.offset = json_int(value, "offset", 0, search::Engine::kMaxK);
      } else if (key == "crop") {
        if (!value.is_null()) crop = crop_from_json(value);
      } else if (key == "text") {
        if (!value.is_null() && !value.is_string()) throw bad_request("text must be a string");
        text.text = value.is_null() ? std::string() : value.get<std::string>();
      } else if (key == "text_prefix") {
        if (!value.is_boolean()) throw bad_request("text_prefix must be true or false");
        text.prefix = value.get<bool>();
      } else if (ranking_from_json(key, value, page)) {
        continue;
      } else if (key == "filter") {
        if (!value.is_null() && !value.is_string()) throw bad_request("filter must be a string");
        set_filter(page, value.is_null() ? "" : value.get<std::string>());
      } else if (key == "sort") {
        if (!value.is_string()) throw bad_request("sort must be a string");
        set_sort(page, value.get<std::string>());
      } else if (key == "depth") {
        page.search.depth = json_int(value, "depth", 0, search::Engine::kMaxK);
      } else if (key == "facets") {
        if (!value.is_boolean()) throw bad_request("facets must be true or false");
        page.search.facets = value.get<bool>();
      } else if (key == "group") {
        if (!value.is_boolean()) throw bad_request("group must be true or false");
        page.search.group_variants = value.get<bool>();
      } else if (key == "match") {
        set_match(page, json_string(value, "match"));
      } else if (key == "fields") {
        if (value.is_string()) {
          page.fields = parse_fields(split_commas(value.get<std::string>()));
        } else if (value.is_array() &&
                   std::all_of(value.begin(), value.end(), [](const json& v) { return v.is_string(); })) {
          page.fields = parse_fields(value.get<std::vector<std::string>>());
        } else {
          throw bad_request("fields must be a string or an array of strings");
        }
      } else {
        throw bad_request("unknown key \"" + key.substr(0, 64) + "\" in the search request");
      }
    }
    if (!doc.contains("image_base64") && !text.text)
      throw bad_request("the JSON search request needs image_base64, text or both");
    if (doc.contains("image_base64") && json_image.empty()) throw bad_request("the query image is empty");
    data = json_image.data();
    size = json_image.size();
  } else {
    data = reinterpret_cast<const std::uint8_t*>(req.body.data());
    size = req.body.size();
  }
  set_text(page, text);
  if (size == 0 && !page.search.text) {
    throw bad_request(text.text
                          ? "the query image is empty and the text has no words (send a photo, text or both)"
                          : "the query image is empty");
  }
  check_page(page);
  page.ranking.depth = page.search.depth;
  if (size == 0) {
    if (crop) throw bad_request("crop needs a photo");
    auto result =
        engine->search_text(page.k + page.offset, /*with_details=*/true, page.search, &page.ranking);
    const double took_ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
    send_json(res, 200, results_json(result, page, took_ms));
    return;
  }

  const int min_side = engine->query_min_side();
  const auto ticket = decode_ticket(data, size, engine->limits());
  image::Image query = crop ? image::decode_crop(data, size, engine->limits(), *crop, min_side)
                            : image::decode(data, size, engine->limits(), min_side);
  auto results =
      engine->search({query}, page.k + page.offset, /*with_details=*/true, page.search, &page.ranking);
  const double took_ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
  send_json(res, 200, results_json(results.front(), page, took_ms));
}

std::optional<DecodeBudget::Ticket> Api::decode_ticket(const std::uint8_t* data, std::size_t size,
                                                       const image::DecodeLimits& limits) const {
  const auto format = image::sniff_format(data, size);
  const auto dims = image::read_dimensions(data, size, format);
  const std::int64_t pixels = std::int64_t{dims.width} * dims.height;
  // Over the limits: decode refuses it from the header, at no cost.
  if (dims.width > limits.max_width || dims.height > limits.max_height || pixels > limits.max_pixels)
    return {};
  auto ticket = decode_budget_.acquire(pixels, Clock::now() + kDecodeBudgetWait);
  if (!ticket) {
    throw ApiError{503,
                   "overloaded",
                   "the server is decoding too many large images; retry after 1 second",
                   {{"Retry-After", "1"}}};
  }
  return ticket;
}

void Api::get_product(Response& res, const std::string& id) const {
  auto product = engine()->product(id);
  if (!product) throw not_found("no product with id " + id.substr(0, 200));
  send_json(res, 200, product_json(*product));
}

void Api::similar(const Request& req, Response& res, const std::string& id) const {
  const auto started = Clock::now();
  auto engine = this->engine();
  Page page = page_from_query(req);
  TextParams text;
  if (req.has_param("text")) text.text = req.get_param_value("text");
  if (req.has_param("text_prefix"))
    text.prefix = parse_bool("text_prefix", req.get_param_value("text_prefix"));
  set_text(page, text);
  check_page(page);
  page.ranking.depth = page.search.depth;
  auto result =
      engine->similar_products(id, page.k + page.offset, /*with_details=*/true, page.search, &page.ranking);
  const double took_ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
  send_json(res, 200, results_json(result, page, took_ms));
}

void Api::variants(Response& res, const std::string& id) const {
  const auto family = engine()->variants(id);
  json list = json::array();
  std::string group;
  for (const auto& p : family) {
    if (p.id == id) group = p.group_id;
    list.push_back(product_json(p));
  }
  send_json(res, 200, {{"product_id", id}, {"group_id", group}, {"variants", list}});
}

void Api::image(const Request& req, Response& res, const std::string& id, const std::string& n) const {
  auto engine = this->engine();
  const int position = parse_int("image number", n, 0, 9999);
  auto source = engine->image_source(id, position);
  if (!source) {
    if (!engine->product(id)) throw not_found("no product with id " + id.substr(0, 200));
    throw not_found("product " + id.substr(0, 200) + " has no image " + n);
  }
  std::vector<std::uint8_t> bytes;
  try {
    bytes = read_file(*source, engine->limits().max_file_bytes);
  } catch (const Error& e) {
    std::cerr << "lookalike: cannot serve image " << position << " of " << id << ": " << e.what() << "\n";
    throw not_found("image " + n + " of product " + id.substr(0, 200) + " is missing on the server");
  }
  const auto format = image::sniff_format(bytes.data(), bytes.size());
  const std::string etag = "\"" + sha256_hex(bytes.data(), bytes.size()) + "\"";
  res.set_header("ETag", etag);
  res.set_header("Cache-Control", "public, max-age=86400");
  if (req.has_header("If-None-Match") && etag_matches(req.get_header_value("If-None-Match"), etag)) {
    res.status = 304;
    return;
  }
  res.set_content(reinterpret_cast<const char*>(bytes.data()), bytes.size(), content_type_of(format));
}

void Api::put_product(const Request& req, Response& res, const std::string& id) const {
  auto engine = this->engine();
  json doc;
  std::vector<std::vector<std::uint8_t>> images;
  if (media_type(req) == "multipart/form-data") {
    for (const auto& [name, part] : req.files) {
      if (name != "product" && name != "image") {
        throw bad_request("unexpected multipart part \"" + name.substr(0, 64) +
                          "\"; use \"product\" and \"image\"");
      }
    }
    if (req.files.count("product") != 1)
      throw bad_request("send exactly one multipart part named \"product\"");
    doc = parse_json_body(req.get_file_value("product").content, "the product part");
    if (doc.contains("images_base64"))
      throw bad_request("with multipart, send images as parts named \"image\"");
    auto range = req.files.equal_range("image");
    for (auto it = range.first; it != range.second; ++it) {
      images.emplace_back(it->second.content.begin(), it->second.content.end());
      if (images.size() > kMaxUploadImages) break;
    }
  } else {
    doc = parse_json_body(req.body, "the body");
    if (doc.contains("images_base64")) {
      const json& list = doc["images_base64"];
      if (!list.is_array()) throw bad_request("images_base64 must be an array of base64 strings");
      if (list.size() > kMaxUploadImages) {
        throw bad_request("at most " + std::to_string(kMaxUploadImages) + " images per product");
      }
      for (std::size_t i = 0; i < list.size(); ++i) {
        if (!list[i].is_string()) throw bad_request("images_base64 must be an array of base64 strings");
        images.push_back(
            decode_base64(list[i].get_ref<const std::string&>(), "images_base64[" + std::to_string(i) + "]"));
      }
      doc.erase("images_base64");
    }
  }
  if (images.size() > kMaxUploadImages) {
    throw bad_request("at most " + std::to_string(kMaxUploadImages) + " images per product");
  }
  if (doc.contains("images")) {
    throw bad_request(
        "images cannot be given as paths over the API; send images_base64 or multipart parts \"image\"");
  }
  if (doc.contains("deleted")) throw bad_request("to delete a product, use DELETE /v1/products/{id}");
  if (doc.contains("id") && (!doc["id"].is_string() || doc["id"].get<std::string>() != id)) {
    throw bad_request("the id in the body differs from the id in the path");
  }
  doc["id"] = id;
  doc["images"] = json::array();
  // The catalog's own rules check the metadata before any image is stored.
  const catalog::ParseLimits limits;
  catalog::parse_json_line(dump(doc), limits);

  // Every image first: allow-listed format (415), decodable within the limits
  // (422, 413); only then are they stored, by content hash and atomically, so a
  // refused product leaves nothing behind.
  std::vector<std::string> names;
  for (std::size_t i = 0; i < images.size(); ++i) {
    const auto& bytes = images[i];
    try {
      if (bytes.empty()) throw bad_request("is empty");
      const auto format = image::sniff_format(bytes.data(), bytes.size());
      const auto ticket = decode_ticket(bytes.data(), bytes.size(), engine->limits());
      image::decode(bytes.data(), bytes.size(), engine->limits(), engine->query_min_side());
      names.push_back(sha256_hex(bytes.data(), bytes.size()) + "." + extension_of(format));
    } catch (const Error& e) {
      ApiError mapped = to_api_error(e);
      mapped.message = "image " + std::to_string(i) + ": " + mapped.message;
      throw mapped;
    } catch (ApiError& e) {
      e.message = "image " + std::to_string(i) + ": " + e.message;
      throw;
    }
  }
  std::vector<std::string> paths;
  for (std::size_t i = 0; i < images.size(); ++i) {
    const fs::path file = options_.data_dir / "uploads" / names[i];
    std::error_code ec;
    if (!fs::exists(file, ec)) write_file_atomic(file, images[i].data(), images[i].size());
    paths.push_back("uploads/" + names[i]);
  }
  doc["images"] = paths;
  catalog::CatalogEntry entry = catalog::parse_json_line(dump(doc), limits);

  std::vector<std::string> skipped;
  search::IngestOptions options;
  options.on_skip = [&](std::size_t, const std::string& image, const std::string& reason) {
    skipped.push_back((image.empty() ? "" : image + ": ") + reason);
  };
  auto report = engine->apply({entry}, options_.data_dir, options);
  metrics_.add_ingest(report.images_embedded + report.images_reused, report.skipped());
  if (!skipped.empty()) {
    // Stored, but not as sent: never acknowledge that with a 2xx.
    throw ApiError{422,
                   "undecodable_image",
                   "product " + id + " was stored without some images: " + join(skipped, "; "),
                   {}};
  }
  send_json(res, 200, {{"product_id", id}, {"created", report.products_added > 0}});
}

void Api::delete_product(Response& res, const std::string& id) const {
  if (engine()->delete_products({id}) == 0) throw not_found("no product with id " + id.substr(0, 200));
  send_json(res, 200, {{"product_id", id}, {"deleted", true}});
}

void Api::post_import(const Request& req, Response& res) const {
  auto engine = this->engine();
  if (req.body.find_first_not_of(" \t\r\n") == std::string::npos) {
    throw bad_request("the import body is empty");
  }
  auto task = imports_.submit(engine, req.body);
  if (!task) {
    throw ApiError{503,
                   "overloaded",
                   std::to_string(ImportQueue::kMaxPending) + " imports are already waiting; try again later",
                   {{"Retry-After", "5"}}};
  }
  const std::string url = "/v1/imports/" + *task;
  res.set_header("Location", url);
  send_json(res, 202, {{"task_id", *task}, {"state", "queued"}, {"status_url", url}});
}

void Api::get_import(Response& res, const std::string& task_id) const {
  auto status = imports_.status(task_id);
  if (!status) throw not_found("no import task " + task_id.substr(0, 100));
  send_json(res, 200, *status);
}

json reindex_json(const search::Engine& engine, bool started) {
  auto info = engine.info();
  json out{{"model", info.model},
           {"model_parts", info.model_parts},
           {"previous_model", info.previous_model},
           {"running", started || info.reindex.running},
           {"target", info.reindex.target},
           {"images_done", info.reindex.done},
           {"images_total", info.reindex.total}};
  if (!info.reindex.last_error.empty()) out["last_error"] = info.reindex.last_error;
  return out;
}

void Api::post_reindex(const Request& req, Response& res) const {
  auto engine = this->engine();
  json doc = parse_json_body(req.body, "the body");
  std::string model;
  bool rollback = false;
  for (const auto& [key, value] : doc.items()) {
    if (key == "model") {
      if (!value.is_string() || value.get_ref<const std::string&>().empty())
        throw bad_request("model must be a non-empty string: a model file on the server, or \"pixels\"");
      model = value.get<std::string>();
    } else if (key == "rollback") {
      if (!value.is_boolean()) throw bad_request("rollback must be true or false");
      rollback = value.get<bool>();
    } else {
      throw bad_request("unknown key \"" + key.substr(0, 64) + "\" in the reindex request");
    }
  }
  if (model.empty() == !rollback) throw bad_request("send either \"model\" or \"rollback\": true");
  if (rollback && engine->info().previous_model.empty()) {
    throw not_found("there is no previous model to restore");
  }
  // A bad file is answered now (400 naming it), not found later in the task's status.
  if (!rollback) search::Engine::check_model(model);
  if (!reindexer_.start(engine, model)) {
    throw ApiError{
        409, "conflict", "a reindex is already running; GET /v1/admin/reindex shows its progress", {}};
  }
  res.set_header("Location", "/v1/admin/reindex");
  send_json(res, 202, reindex_json(*engine, true));
}

void Api::get_reindex(Response& res) const {
  // The runner's flag first: it is set before the engine's progress says so.
  const bool running = reindexer_.running();
  send_json(res, 200, reindex_json(*engine(), running));
}

void Api::post_events(const Request& req, Response& res) const {
  auto engine = this->engine();
  const catalog::EventLimits limits;
  const std::int64_t now = catalog::unix_now_ms();
  std::vector<std::string> texts;  // one JSON object per event, in order
  const std::string type = media_type(req);
  bool single = false;
  if (type == "application/json") {
    // A bounded nesting depth first, as for every JSON body; an array is checked as a whole.
    const std::string trimmed = trim(req.body);
    if (!trimmed.empty() && trimmed.front() == '[') {
      parse_json_body("{\"events\":" + req.body + "}", "the body");
      json list = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
      if (!list.is_array()) throw bad_request("the body is not valid JSON (UTF-8)");
      if (list.size() > kMaxEventsPerRequest) {
        throw bad_request("at most " + std::to_string(kMaxEventsPerRequest) + " events per request");
      }
      for (const auto& item : list) texts.push_back(dump(item));
    } else {
      texts.push_back(dump(parse_json_body(req.body, "the body")));
      single = true;
    }
  } else {
    std::size_t start = 0;
    while (start < req.body.size()) {
      std::size_t end = req.body.find('\n', start);
      if (end == std::string::npos) end = req.body.size();
      std::string line = req.body.substr(start, end - start);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      texts.push_back(std::move(line));
      if (texts.size() > kMaxEventsPerRequest) {
        throw bad_request("at most " + std::to_string(kMaxEventsPerRequest) + " events (lines) per request");
      }
      start = end + 1;
    }
  }
  std::vector<catalog::Event> events;
  std::vector<std::size_t> lines;  // of each parsed event, from 1
  std::vector<std::pair<std::size_t, std::string>> errors;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    if (!single && texts[i].find_first_not_of(" \t") == std::string::npos) continue;  // blank JSONL line
    try {
      events.push_back(catalog::parse_event(texts[i], now, limits));
      lines.push_back(i + 1);
    } catch (const Error& e) {
      if (single) throw bad_request(std::string("the event: ") + e.what());
      errors.emplace_back(i + 1, e.what());
    }
  }
  if (events.empty() && errors.empty()) throw bad_request("the body holds no events");
  auto report = engine->record_events(events);
  if (single && !report.rejected.empty()) throw not_found(report.rejected.front().second);
  for (const auto& [index, why] : report.rejected) errors.emplace_back(lines[index], why);
  std::sort(errors.begin(), errors.end());
  json listed = json::array();
  for (std::size_t i = 0; i < errors.size() && i < kMaxEventErrors; ++i) {
    listed.push_back({{"line", errors[i].first}, {"message", errors[i].second}});
  }
  send_json(res, 200,
            {{"accepted", report.accepted},
             {"rejected", errors.size()},
             {"errors", listed},
             {"errors_truncated", errors.size() > kMaxEventErrors}});
}

namespace {

json profile_doc(const rank::Profile& profile) { return json::parse(rank::profile_json(profile)); }

}  // namespace

void Api::list_profiles(Response& res) const {
  json profiles = json::array();
  for (const auto& profile : engine()->ranking_profiles()) profiles.push_back(profile_doc(profile));
  send_json(res, 200, {{"profiles", profiles}});
}

void Api::get_profile(Response& res, const std::string& name) const {
  send_json(res, 200, profile_doc(engine()->ranking_profile(name)));
}

void Api::put_profile(const Request& req, Response& res, const std::string& name) const {
  auto engine = this->engine();
  parse_json_body(req.body, "the profile");  // bounded nesting, an object
  auto profile = rank::parse_profile(name, req.body);
  engine->put_ranking_profile(profile);
  send_json(res, 200, profile_doc(profile));
}

void Api::delete_profile(Response& res, const std::string& name) const {
  const bool deleted = engine()->delete_ranking_profile(name);
  if (!deleted && name != rank::kDefaultProfile)
    throw not_found("no ranking profile named " + name.substr(0, 80));
  send_json(res, 200, {{"name", name}, {"deleted", deleted}});
}

void Api::get_user(Response& res, const std::string& id) const {
  auto user = engine()->user(id);
  if (!user) throw not_found("nothing is known of user " + id.substr(0, 200));
  send_json(res, 200, {{"user_id", id}, {"events", user->events}, {"has_taste", user->has_taste}});
}

void Api::delete_user(Response& res, const std::string& id) const {
  if (!engine()->forget_user(id)) throw not_found("nothing is known of user " + id.substr(0, 200));
  send_json(res, 200, {{"user_id", id}, {"deleted", true}});
}

}  // namespace lookalike::server
