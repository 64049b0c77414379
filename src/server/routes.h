// The route table: the one list of routes that both dispatches requests and
// generates /openapi.json, so the two cannot disagree.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lookalike::server {

enum class RouteId {
  kIndex,
  kStatic,
  kLivez,
  kReadyz,
  kMetrics,
  kOpenApi,
  kSearch,
  kGetProduct,
  kSimilar,
  kVariants,
  kImage,
  kPutProduct,
  kDeleteProduct,
  kPostImport,
  kGetImport,
  kPostReindex,
  kGetReindex,
  kPostEvents,
  kListProfiles,
  kGetProfile,
  kPutProfile,
  kDeleteProfile,
  kGetUser,
  kDeleteUser,
};

enum class Access { kPublic, kSearch, kAdmin };

struct QueryParam {
  std::string name;
  std::string type;  // OpenAPI type: integer, string
  std::string description;
};

struct Route {
  RouteId id;
  std::string method;   // GET (HEAD too), POST, PUT, DELETE
  std::string pattern;  // OpenAPI path: literal segments and {name} parameters
  Access access = Access::kPublic;
  bool needs_engine = false;        // answers 503 not_ready until the catalog is loaded
  bool last_param_is_rest = false;  // the last {param} takes the rest of the path (several segments)
  std::string summary;
  std::vector<QueryParam> query;
  // Media types a body may have; empty: no body. "*" also allows a body without Content-Type.
  std::vector<std::string> body_types;
  std::vector<int> statuses;  // documented answers
};

const std::vector<Route>& routes();

enum class MatchResult { kFound, kNoRoute, kWrongMethod, kBadPath };

struct RouteMatch {
  const Route* route = nullptr;               // the route of this method and path
  const Route* any = nullptr;                 // the first route of this path, any method
  std::map<std::string, std::string> params;  // percent-decoded
  std::vector<std::string> allowed;           // methods of the path, for 405 and OPTIONS
};

// Matches a method and a raw (still percent-encoded) path. HEAD matches GET
// routes. kBadPath: a malformed percent escape, or a NUL or '/' where it cannot be.
MatchResult match_route(const std::string& method, const std::string& raw_path, RouteMatch& match);

// The OpenAPI 3.0 description of routes(); public_search marks search routes as
// usable without a key.
nlohmann::json openapi_spec(bool public_search);

// Percent-decodes one path segment; false for a malformed escape.
bool percent_decode(const std::string& in, std::string& out);
// Percent-encodes everything but RFC 3986 unreserved characters.
std::string percent_encode(const std::string& in);

}  // namespace lookalike::server
