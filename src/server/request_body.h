// Parsers for request bodies, shared by the API handlers and the fuzz targets.
// Internal to the server module. Every failure is an ApiError with status 400
// and a message naming what was wrong; nothing else escapes.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lookalike::server {

// Nesting deeper than this is refused before parsing.
constexpr int kMaxJsonDepth = 32;

// Parses a JSON object. `what` names the body in messages ("the body", "the
// product part"). Refuses invalid JSON or UTF-8, nesting deeper than
// kMaxJsonDepth, and anything but an object.
nlohmann::json parse_json_body(const std::string& body, const char* what);

// Standard or URL-safe alphabet, padding optional, whitespace ignored, and a
// "data:...;base64," prefix skipped (what a browser's FileReader produces).
std::vector<std::uint8_t> decode_base64(const std::string& text, const std::string& what);

}  // namespace lookalike::server
