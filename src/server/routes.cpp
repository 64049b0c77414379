#include "server/routes.h"

#include <algorithm>
#include <cctype>

#ifndef LOOKALIKE_VERSION
#define LOOKALIKE_VERSION "0"
#endif

namespace lookalike::server {
using nlohmann::json;

namespace {

const std::vector<QueryParam> kPageParams = {
    {"k", "integer", "results per page, 1..100 (default 10)"},
    {"offset", "integer", "results to skip, for pagination; k + offset <= 1000 (default 0)"},
    {"fields", "string",
     "comma-separated result fields to return (product_id and score always are): title, brand, category, "
     "price, "
     "currency, rating, rating_count, stock, image_url, attributes, group_id, family_size, variants"},
};

// Filter, sort and facets: shared by search by photo and more like this.
const std::vector<QueryParam> kFilterParams = {
    {"filter", "string",
     "only products passing this expression, applied inside the search, e.g. category = \"Sneaker\" AND "
     "price < 50 AND NOT attributes.color IN (\"red\",\"pink\"); grammar in docs/API.md; at most 4096 bytes"},
    {"sort", "string", "best (default), price_asc, price_desc or rating: orders the depth best matches"},
    {"depth", "integer",
     "candidates per query: the best matches that are re-ranked, sorted and counted in facets, 0..1000 "
     "(default: the profile's, 100)"},
    {"facets", "boolean", "true: count category, brand, color and price buckets over the depth best matches"},
    {"group", "boolean",
     "true (default): one result per product family (products sharing a group_id), shown by its best "
     "variant, with the others as swatches in variants; k and depth count families. false: every product"},
    {"match", "string",
     "similar (default): products that look like the photo; exact: the photo's own product (a fused "
     "model's exact weights)"},
    {"text", "string",
     "words every result must contain in its title, brand, category or attribute values; without a photo, a "
     "search by text alone; at most 256 bytes and 16 words"},
    {"text_prefix", "boolean", "false: the last word of text must match whole (default true: as a prefix)"},
};

std::vector<QueryParam> similar_params() {
  auto params = kPageParams;
  params.insert(params.end(), kFilterParams.begin(), kFilterParams.end());
  return params;
}

// Re-ranking (docs/API.md, "Ranking"), for search and "more like this".
std::vector<QueryParam> ranked_params() {
  auto params = similar_params();
  params.insert(
      params.end(),
      {{"profile", "string", "ranking profile: a stored one, default (the default) or visual (look only)"},
       {"user", "string", "shopper id whose taste (from their events) counts"},
       {"price", "number", "target price: closer prices rank higher"},
       {"price_min", "number", "lower end of the wanted price range"},
       {"price_max", "number", "upper end of the wanted price range"},
       {"explain", "boolean", "true: each result carries its score broken down by component"}});
  return params;
}

std::vector<QueryParam> search_params() {
  auto params = ranked_params();
  params.push_back(
      {"crop", "string", "x,y,width,height in pixels of the uploaded image: only that box is searched"});
  return params;
}

std::vector<Route> make_routes() {
  const std::vector<std::string> kNoBody;
  return {
      {RouteId::kIndex,
       "GET",
       "/",
       Access::kPublic,
       false,
       false,
       "The shopper web page",
       {},
       kNoBody,
       {200, 404}},
      {RouteId::kStatic,
       "GET",
       "/static/{file}",
       Access::kPublic,
       false,
       true,
       "Files of the shopper web page (scripts, styles, images)",
       {},
       kNoBody,
       {200, 404}},
      {RouteId::kLivez,
       "GET",
       "/livez",
       Access::kPublic,
       false,
       false,
       "The process is up",
       {},
       kNoBody,
       {200}},
      {RouteId::kReadyz,
       "GET",
       "/readyz",
       Access::kPublic,
       false,
       false,
       "The catalog and its index are loaded and searchable",
       {},
       kNoBody,
       {200, 503}},
      {RouteId::kMetrics,
       "GET",
       "/metrics",
       Access::kPublic,
       false,
       false,
       "Prometheus metrics (text format 0.0.4)",
       {},
       kNoBody,
       {200}},
      {RouteId::kOpenApi,
       "GET",
       "/openapi.json",
       Access::kPublic,
       false,
       false,
       "This description",
       {},
       kNoBody,
       {200}},
      {RouteId::kSearch,
       "POST",
       "/v1/search",
       Access::kSearch,
       true,
       false,
       "Search by photo (multipart part 'image', a raw JPEG/PNG/WebP body, or JSON image_base64), by text "
       "(text, no photo), or by both",
       search_params(),
       {"multipart/form-data", "image/jpeg", "image/png", "image/webp", "application/json"},
       {200, 400, 401, 403, 411, 413, 415, 422, 503}},
      {RouteId::kGetProduct,
       "GET",
       "/v1/products/{id}",
       Access::kSearch,
       true,
       false,
       "One product",
       {},
       kNoBody,
       {200, 401, 403, 404, 503}},
      {RouteId::kSimilar,
       "GET",
       "/v1/products/{id}/similar",
       Access::kSearch,
       true,
       false,
       "More like this: products that look like this one (it is left out; with group=true, its whole family)",
       ranked_params(),
       kNoBody,
       {200, 400, 401, 403, 404, 503}},
      {RouteId::kVariants,
       "GET",
       "/v1/products/{id}/variants",
       Access::kSearch,
       true,
       false,
       "Every variant of the product's family (those sharing its group_id, itself included) with price, "
       "stock, rating, attributes and image, by product id; a product without group_id is a family of one",
       {},
       kNoBody,
       {200, 401, 403, 404, 503}},
      {RouteId::kImage,
       "GET",
       "/v1/products/{id}/images/{n}",
       Access::kSearch,
       true,
       false,
       "Image bytes of a product (n from 0), with ETag (SHA-256) and Cache-Control",
       {},
       kNoBody,
       {200, 304, 400, 401, 403, 404, 503}},
      {RouteId::kPutProduct,
       "PUT",
       "/v1/products/{id}",
       Access::kAdmin,
       true,
       false,
       "Add or replace a product with its images; 200 once committed and searchable",
       {},
       {"application/json", "multipart/form-data"},
       {200, 400, 401, 403, 411, 413, 415, 422, 503}},
      {RouteId::kDeleteProduct,
       "DELETE",
       "/v1/products/{id}",
       Access::kAdmin,
       true,
       false,
       "Delete a product",
       {},
       kNoBody,
       {200, 401, 403, 404, 503}},
      {RouteId::kPostImport,
       "POST",
       "/v1/imports",
       Access::kAdmin,
       true,
       false,
       "Bulk import of a JSONL catalog body as a background task",
       {},
       {"application/x-ndjson", "application/jsonl", "application/x-jsonlines", "text/plain", "*"},
       {202, 400, 401, 403, 411, 413, 415, 503}},
      {RouteId::kGetImport,
       "GET",
       "/v1/imports/{task_id}",
       Access::kAdmin,
       false,
       false,
       "Progress and per-line errors of an import task",
       {},
       kNoBody,
       {200, 401, 403, 404}},
      {RouteId::kPostReindex,
       "POST",
       "/v1/admin/reindex",
       Access::kAdmin,
       true,
       false,
       "Switch to another model file on the server (or roll back) in the background while search goes on",
       {},
       {"application/json"},
       {202, 400, 401, 403, 409, 411, 413, 415, 503}},
      {RouteId::kGetReindex,
       "GET",
       "/v1/admin/reindex",
       Access::kAdmin,
       true,
       false,
       "The active and previous model, and how far a running or the last reindex has come",
       {},
       kNoBody,
       {200, 401, 403, 503}},
      {RouteId::kPostEvents,
       "POST",
       "/v1/events",
       Access::kAdmin,
       true,
       false,
       "Record shopper events (view, click, add_to_cart, purchase): one JSON object, a JSON array or JSONL",
       {},
       {"application/json", "application/x-ndjson", "application/jsonl", "application/x-jsonlines"},
       {200, 400, 401, 403, 404, 411, 413, 415, 503}},
      {RouteId::kListProfiles,
       "GET",
       "/v1/profiles",
       Access::kSearch,
       true,
       false,
       "The ranking profiles: default, visual and the stored ones",
       {},
       kNoBody,
       {200, 401, 403, 503}},
      {RouteId::kGetProfile,
       "GET",
       "/v1/profiles/{name}",
       Access::kSearch,
       true,
       false,
       "One ranking profile",
       {},
       kNoBody,
       {200, 401, 403, 404, 503}},
      {RouteId::kPutProfile,
       "PUT",
       "/v1/profiles/{name}",
       Access::kAdmin,
       true,
       false,
       "Create or replace a ranking profile; fields left out take the built-in default's values",
       {},
       {"application/json"},
       {200, 400, 401, 403, 411, 413, 415, 503}},
      {RouteId::kDeleteProfile,
       "DELETE",
       "/v1/profiles/{name}",
       Access::kAdmin,
       true,
       false,
       "Delete a ranking profile (deleting default restores the built-in one)",
       {},
       kNoBody,
       {200, 400, 401, 403, 404, 503}},
      {RouteId::kGetUser,
       "GET",
       "/v1/users/{id}",
       Access::kAdmin,
       true,
       false,
       "What is kept about a shopper: their number of events and whether they have a taste",
       {},
       kNoBody,
       {200, 401, 403, 404, 503}},
      {RouteId::kDeleteUser,
       "DELETE",
       "/v1/users/{id}",
       Access::kAdmin,
       true,
       false,
       "Forget a shopper: their events, their taste and their share of popularity",
       {},
       kNoBody,
       {200, 401, 403, 404, 503}},
  };
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> segments;
  std::size_t start = 1;
  while (start <= path.size()) {
    std::size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    segments.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return segments;
}

bool is_param(const std::string& segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

// Matches the path only; fills params. Returns false on a mismatch.
bool match_path(const Route& route, const std::vector<std::string>& raw,
                std::map<std::string, std::string>& params, bool& bad) {
  const auto pattern = split_path(route.pattern);
  if (route.pattern == "/") return raw.size() == 1 && raw[0].empty();
  if (raw.size() < pattern.size() || (!route.last_param_is_rest && raw.size() != pattern.size())) {
    return false;
  }
  params.clear();
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const bool last = i + 1 == pattern.size();
    if (!is_param(pattern[i])) {
      if (raw[i] != pattern[i]) return false;
      continue;
    }
    std::string value;
    const std::size_t end = last && route.last_param_is_rest ? raw.size() : i + 1;
    for (std::size_t j = i; j < end; ++j) {
      std::string decoded;
      if (raw[j].empty()) return false;  // "/v1/products/" names no product
      if (!percent_decode(raw[j], decoded) || decoded.find('\0') != std::string::npos ||
          (route.last_param_is_rest && decoded.find('/') != std::string::npos)) {
        bad = true;
        return false;
      }
      if (j > i) value += '/';
      value += decoded;
    }
    params[pattern[i].substr(1, pattern[i].size() - 2)] = value;
  }
  return true;
}

json error_response(const std::string& description) {
  return {{"description", description},
          {"content", {{"application/json", {{"schema", {{"$ref", "#/components/schemas/Error"}}}}}}}};
}

const char* status_description(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 202:
      return "Accepted";
    case 304:
      return "Not modified (If-None-Match matched the ETag)";
    case 400:
      return "bad_request: malformed body or parameters out of range";
    case 401:
      return "unauthorized: no key";
    case 403:
      return "forbidden: wrong key, or the search key on a write";
    case 404:
      return "not_found";
    case 411:
      return "length_required: a body without Content-Length";
    case 413:
      return "payload_too_large: body or image over the limit";
    case 415:
      return "unsupported_media_type: not JPEG/PNG/WebP, or an unexpected Content-Type";
    case 422:
      return "undecodable_image: an allowed format that does not decode";
    case 503:
      return "overloaded or not_ready, with Retry-After";
  }
  return "";
}

// JSON schemas of the bodies, by route.
json success_content(RouteId id) {
  auto ref = [](const char* name) {
    return json{{"application/json", {{"schema", {{"$ref", std::string("#/components/schemas/") + name}}}}}};
  };
  switch (id) {
    case RouteId::kIndex:
      return {{"text/html", {{"schema", {{"type", "string"}}}}}};
    case RouteId::kStatic:
      return {{"*/*", {{"schema", {{"type", "string"}, {"format", "binary"}}}}}};
    case RouteId::kLivez:
    case RouteId::kReadyz:
      return ref("Status");
    case RouteId::kMetrics:
      return {{"text/plain", {{"schema", {{"type", "string"}}}}}};
    case RouteId::kOpenApi:
      return {{"application/json", {{"schema", {{"type", "object"}}}}}};
    case RouteId::kSearch:
    case RouteId::kSimilar:
      return ref("SearchResponse");
    case RouteId::kGetProduct:
      return ref("Product");
    case RouteId::kVariants:
      return ref("VariantList");
    case RouteId::kImage:
      return {{"image/jpeg", {{"schema", {{"type", "string"}, {"format", "binary"}}}}},
              {"image/png", {{"schema", {{"type", "string"}, {"format", "binary"}}}}},
              {"image/webp", {{"schema", {{"type", "string"}, {"format", "binary"}}}}}};
    case RouteId::kPutProduct:
      return ref("PutResult");
    case RouteId::kDeleteProduct:
      return ref("DeleteResult");
    case RouteId::kPostImport:
      return ref("ImportAccepted");
    case RouteId::kGetImport:
      return ref("ImportStatus");
    case RouteId::kPostReindex:
    case RouteId::kGetReindex:
      return ref("ReindexStatus");
    case RouteId::kPostEvents:
      return ref("EventsResult");
    case RouteId::kListProfiles:
      return ref("ProfileList");
    case RouteId::kGetProfile:
    case RouteId::kPutProfile:
      return ref("Profile");
    case RouteId::kDeleteProfile:
      return ref("ProfileDeleted");
    case RouteId::kGetUser:
      return ref("User");
    case RouteId::kDeleteUser:
      return ref("UserDeleted");
  }
  return json::object();
}

json request_body(const Route& route) {
  json content = json::object();
  auto binary = json{{"schema", {{"type", "string"}, {"format", "binary"}}}};
  for (const auto& type : route.body_types) {
    if (type == "*") continue;
    if (type == "application/json") {
      content[type] = {
          {"schema",
           {{"$ref", route.id == RouteId::kSearch        ? "#/components/schemas/SearchRequest"
                     : route.id == RouteId::kPostReindex ? "#/components/schemas/ReindexRequest"
                                                         : "#/components/schemas/ProductWrite"}}}};
      const char* schema = route.id == RouteId::kSearch       ? "#/components/schemas/SearchRequest"
                           : route.id == RouteId::kPostEvents ? "#/components/schemas/EventsRequest"
                           : route.id == RouteId::kPutProfile ? "#/components/schemas/Profile"
                                                              : "#/components/schemas/ProductWrite";
      content[type] = {{"schema", {{"$ref", schema}}}};
    } else if (type == "multipart/form-data") {
      json props =
          route.id == RouteId::kSearch
              ? json{{"image", {{"type", "string"}, {"format", "binary"}}}}
              : json{{"product", {{"type", "string"}, {"description", "the product JSON, without images"}}},
                     {"image",
                      {{"type", "array"},
                       {"items", {{"type", "string"}, {"format", "binary"}}},
                       {"description", "image file parts, in order, at most 16"}}}};
      content[type] = {{"schema", {{"type", "object"}, {"properties", props}}}};
    } else {
      content[type] = binary;
    }
  }
  return {{"required", true}, {"content", content}};
}

const char* kComponents = R"json({
  "securitySchemes": {
    "bearer": {"type": "http", "scheme": "bearer"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
  },
  "schemas": {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
      "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
    "Status": {"type": "object", "properties": {"status": {"type": "string"}, "products": {"type": "integer"}}},
    "Crop": {"type": "object", "required": ["x", "y", "width", "height"], "properties": {
      "x": {"type": "integer"}, "y": {"type": "integer"}, "width": {"type": "integer"}, "height": {"type": "integer"}}},
    "SearchRequest": {"type": "object", "description": "needs image_base64, text or both", "properties": {
      "image_base64": {"type": "string"}, "text": {"type": "string"}, "text_prefix": {"type": "boolean"},
      "k": {"type": "integer"}, "offset": {"type": "integer"},
      "crop": {"$ref": "#/components/schemas/Crop"},
      "profile": {"type": "string"}, "user": {"type": "string"},
      "price": {"type": "number"}, "price_min": {"type": "number"}, "price_max": {"type": "number"},
      "explain": {"type": "boolean"},
      "fields": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
      "filter": {"type": "string"}, "sort": {"type": "string", "enum": ["best", "price_asc", "price_desc", "rating"]},
      "depth": {"type": "integer"}, "facets": {"type": "boolean"}, "group": {"type": "boolean"},
      "match": {"type": "string", "enum": ["similar", "exact"]}}},
    "FacetValue": {"type": "object", "required": ["value", "count"], "properties": {
      "value": {"type": "string"}, "count": {"type": "integer"}}},
    "Facets": {"type": "object", "properties": {
      "category": {"type": "array", "items": {"$ref": "#/components/schemas/FacetValue"}},
      "brand": {"type": "array", "items": {"$ref": "#/components/schemas/FacetValue"}},
      "color": {"type": "array", "items": {"$ref": "#/components/schemas/FacetValue"}},
      "price": {"type": "array", "items": {"type": "object", "properties": {
        "from": {"type": "number"}, "to": {"type": "number", "nullable": true}, "count": {"type": "integer"}}}}}},
    "SearchResult": {"type": "object", "required": ["product_id", "score"], "properties": {
      "product_id": {"type": "string"}, "score": {"type": "number"}, "similarity": {"type": "number"},
      "text_relevance": {"type": "number", "description": "bm25 relevance to text, when the search has text"},
      "explain": {"$ref": "#/components/schemas/Explain"}, "title": {"type": "string"},
      "brand": {"type": "string"}, "category": {"type": "string"}, "price": {"type": "number"},
      "currency": {"type": "string"}, "rating": {"type": "number"}, "rating_count": {"type": "integer"},
      "stock": {"type": "integer"}, "image_url": {"type": "string", "nullable": true},
      "attributes": {"type": "object", "additionalProperties": {"type": "string"}}, "group_id": {"type": "string"},
      "family_size": {"type": "integer", "description": "variants in the product's family, this one included (grouped results)"},
      "variants": {"type": "array", "description": "the family's other variants, swatches (grouped results)",
        "items": {"$ref": "#/components/schemas/Swatch"}},
      "variant_choice": {"type": "object", "description": "with explain: why this variant stands for its family",
        "properties": {"reason": {"type": "string"}, "candidates": {"type": "integer"}}}}},
    "Swatch": {"type": "object", "required": ["product_id"], "properties": {
      "product_id": {"type": "string"}, "color": {"type": "string"}, "size": {"type": "string"},
      "price": {"type": "number"}, "currency": {"type": "string"}, "stock": {"type": "integer"},
      "image_url": {"type": "string", "nullable": true},
      "score": {"type": "number", "description": "its final score, when it was among the candidates"}}},
    "VariantList": {"type": "object", "required": ["product_id", "variants"], "properties": {
      "product_id": {"type": "string"}, "group_id": {"type": "string"},
      "variants": {"type": "array", "items": {"$ref": "#/components/schemas/Product"}}}},
    "SearchResponse": {"type": "object", "required": ["results", "k", "offset", "took_ms", "model"], "properties": {
      "results": {"type": "array", "items": {"$ref": "#/components/schemas/SearchResult"}},
      "k": {"type": "integer"}, "offset": {"type": "integer"}, "took_ms": {"type": "number"},
      "model": {"type": "string", "description": "identity of the model that made every score in results"},
      "matched": {"type": "integer", "description": "catalog products passing the filter"},
      "sort": {"type": "string"}, "facets": {"$ref": "#/components/schemas/Facets"},
      "text": {"type": "string", "description": "the words searched for, as understood (prefix marked *)"}}},
    "Product": {"type": "object", "required": ["product_id"], "properties": {
      "product_id": {"type": "string"}, "title": {"type": "string"}, "brand": {"type": "string"},
      "category": {"type": "string"}, "price": {"type": "number"}, "currency": {"type": "string"},
      "rating": {"type": "number"}, "rating_count": {"type": "integer"}, "stock": {"type": "integer"},
      "attributes": {"type": "object", "additionalProperties": {"type": "string"}}, "group_id": {"type": "string"},
      "image_url": {"type": "string", "nullable": true},
      "image_urls": {"type": "array", "items": {"type": "string"}}}},
    "ProductWrite": {"type": "object", "properties": {
      "id": {"type": "string", "description": "optional; must equal the id in the path"},
      "title": {"type": "string"}, "brand": {"type": "string"}, "category": {"type": "string"},
      "price": {"type": "number"}, "currency": {"type": "string"}, "rating": {"type": "number"},
      "rating_count": {"type": "integer"}, "stock": {"type": "integer"},
      "attributes": {"type": "object", "additionalProperties": {"type": "string"}}, "group_id": {"type": "string"},
      "images_base64": {"type": "array", "maxItems": 16, "items": {"type": "string"}}}},
    "Component": {"type": "object", "properties": {"value": {"type": "number"}, "weight": {"type": "number"},
      "contribution": {"type": "number"}}},
    "Explain": {"type": "object", "properties": {"score": {"type": "number"},
      "components": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Component"}},
      "similarity": {"type": "number"}, "rating_average": {"type": "number"}, "price_fit": {"type": "number"},
      "taste_similarity": {"type": "number"}, "taste_affinity": {"type": "number"},
      "taste_parts": {"type": "object", "properties": {"look": {"type": "number", "nullable": true},
        "attributes": {"type": "number", "nullable": true}, "attribute_share": {"type": "number"}}},
      "colour_similarity": {"type": "number"}, "text_relevance": {"type": "number"}}},
    "Event": {"type": "object", "required": ["type", "product_id", "user_id"], "properties": {
      "type": {"type": "string", "enum": ["view", "click", "add_to_cart", "purchase"]},
      "product_id": {"type": "string"}, "user_id": {"type": "string"},
      "time": {"oneOf": [{"type": "string", "format": "date-time"}, {"type": "number"}]}}},
    "EventsRequest": {"oneOf": [{"$ref": "#/components/schemas/Event"},
      {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}]},
    "EventsResult": {"type": "object", "properties": {"accepted": {"type": "integer"}, "rejected": {"type": "integer"},
      "errors": {"type": "array", "items": {"type": "object", "properties": {"line": {"type": "integer"},
        "message": {"type": "string"}}}}, "errors_truncated": {"type": "boolean"}}},
    "Profile": {"type": "object", "properties": {"name": {"type": "string"},
      "weights": {"type": "object", "properties": {"visual": {"type": "number"}, "popularity": {"type": "number"},
        "rating": {"type": "number"}, "stock": {"type": "number"}, "price": {"type": "number"},
        "recency": {"type": "number"}, "taste": {"type": "number"}, "colour": {"type": "number"},
        "text": {"type": "number"}}},
      "out_of_stock": {"type": "string", "enum": ["demote", "hide"]},
      "rating_prior": {"type": "object", "properties": {"mean": {"type": "number"}, "count": {"type": "number"}}},
      "popularity_half_saturation": {"type": "number"}, "price_tolerance": {"type": "number"},
      "recency_half_life_days": {"type": "number"}, "candidate_depth": {"type": "integer"},
      "taste_attribute_share": {"type": "number"}}},
    "ProfileList": {"type": "object", "properties": {"profiles": {"type": "array",
      "items": {"$ref": "#/components/schemas/Profile"}}}},
    "ProfileDeleted": {"type": "object", "properties": {"name": {"type": "string"}, "deleted": {"type": "boolean"}}},
    "User": {"type": "object", "properties": {"user_id": {"type": "string"}, "events": {"type": "integer"},
      "has_taste": {"type": "boolean"}}},
    "UserDeleted": {"type": "object", "properties": {"user_id": {"type": "string"}, "deleted": {"type": "boolean"}}},
    "PutResult": {"type": "object", "properties": {"product_id": {"type": "string"}, "created": {"type": "boolean"}}},
    "DeleteResult": {"type": "object", "properties": {"product_id": {"type": "string"}, "deleted": {"type": "boolean"}}},
    "ImportAccepted": {"type": "object", "properties": {"task_id": {"type": "string"}, "state": {"type": "string"},
      "status_url": {"type": "string"}}},
    "ImportStatus": {"type": "object", "properties": {
      "task_id": {"type": "string"},
      "state": {"type": "string", "enum": ["queued", "running", "done", "failed"]},
      "lines_done": {"type": "integer"}, "added": {"type": "integer"}, "updated": {"type": "integer"},
      "unchanged": {"type": "integer"}, "deleted": {"type": "integer"}, "skipped": {"type": "integer"},
      "images_embedded": {"type": "integer"}, "images_reused": {"type": "integer"},
      "errors": {"type": "array", "items": {"type": "object", "properties": {"line": {"type": "integer"},
        "image": {"type": "string"}, "message": {"type": "string"}}}},
      "errors_truncated": {"type": "boolean"}, "error": {"type": "string"}, "seconds": {"type": "number"}}},
    "ReindexRequest": {"type": "object", "properties": {
      "model": {"type": "string", "description": "path of a model file on the server, or \"pixels\""},
      "rollback": {"type": "boolean", "description": "restore the previous model instead"}}},
    "ReindexStatus": {"type": "object", "properties": {
      "model": {"type": "string"}, "model_parts": {"type": "array", "items": {"type": "string"}},
      "previous_model": {"type": "string"},
      "running": {"type": "boolean"}, "target": {"type": "string"},
      "images_done": {"type": "integer"}, "images_total": {"type": "integer"},
      "last_error": {"type": "string"}}}
  }
})json";

}  // namespace

const std::vector<Route>& routes() {
  static const std::vector<Route> table = make_routes();
  return table;
}

bool percent_decode(const std::string& in, std::string& out) {
  out.clear();
  out.reserve(in.size());
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size()) return false;
    int hi = hex(in[i + 1]), lo = hex(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return true;
}

std::string percent_encode(const std::string& in) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : in) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

MatchResult match_route(const std::string& method, const std::string& raw_path, RouteMatch& match) {
  match = RouteMatch{};
  if (raw_path.empty() || raw_path[0] != '/') return MatchResult::kBadPath;
  const auto raw = split_path(raw_path);
  const std::string wanted = method == "HEAD" ? "GET" : method;
  bool bad = false;
  for (const auto& route : routes()) {
    std::map<std::string, std::string> params;
    if (!match_path(route, raw, params, bad)) continue;
    if (!match.any) match.any = &route;
    if (std::find(match.allowed.begin(), match.allowed.end(), route.method) == match.allowed.end()) {
      match.allowed.push_back(route.method);
      if (route.method == "GET") match.allowed.push_back("HEAD");
    }
    if (!match.route && route.method == wanted) {
      match.route = &route;
      match.params = std::move(params);
    }
  }
  if (match.route) return MatchResult::kFound;
  if (!match.allowed.empty()) return MatchResult::kWrongMethod;
  return bad ? MatchResult::kBadPath : MatchResult::kNoRoute;
}

json openapi_spec(bool public_search) {
  json paths = json::object();
  for (const auto& route : routes()) {
    json op;
    std::string method = route.method;
    std::transform(method.begin(), method.end(), method.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    op["operationId"] = method + "_" + route.pattern;
    op["summary"] = route.summary;
    json params = json::array();
    for (const auto& segment : split_path(route.pattern)) {
      if (!is_param(segment)) continue;
      params.push_back({{"name", segment.substr(1, segment.size() - 2)},
                        {"in", "path"},
                        {"required", true},
                        {"schema", {{"type", "string"}}}});
    }
    for (const auto& q : route.query) {
      params.push_back({{"name", q.name},
                        {"in", "query"},
                        {"required", false},
                        {"description", q.description},
                        {"schema", {{"type", q.type}}}});
    }
    if (!params.empty()) op["parameters"] = params;
    if (!route.body_types.empty()) op["requestBody"] = request_body(route);
    json responses = json::object();
    for (int status : route.statuses) {
      const std::string code = std::to_string(status);
      if (status < 300) {
        responses[code] = {{"description", status_description(status)},
                           {"content", success_content(route.id)}};
      } else if (status == 304) {
        responses[code] = {{"description", status_description(status)}};
      } else {
        responses[code] = error_response(status_description(status));
      }
    }
    op["responses"] = responses;
    json keyed = json::array({{{"bearer", json::array()}}, {{"apiKey", json::array()}}});
    if (route.access == Access::kPublic) {
      op["security"] = json::array();
    } else if (route.access == Access::kSearch && public_search) {
      keyed.push_back(json::object());
      op["security"] = keyed;
    } else {
      op["security"] = keyed;
    }
    paths[route.pattern][method] = op;
  }
  json spec;
  spec["openapi"] = "3.0.3";
  spec["info"] = {{"title", "lookalike"},
                  {"version", LOOKALIKE_VERSION},
                  {"description",
                   "Visual product search. See docs/API.md; errors are "
                   "{\"error\": {\"code\", \"message\"}}."}};
  spec["paths"] = paths;
  spec["components"] = json::parse(kComponents);
  return spec;
}

}  // namespace lookalike::server
