#include "server/request_body.h"

#include "server/api.h"

namespace lookalike::server {
namespace {

using nlohmann::json;

ApiError bad_request(const std::string& message) { return {400, "bad_request", message, {}}; }

}  // namespace

// The depth is bounded before parsing: nlohmann's parser keeps a stack per nesting level.
json parse_json_body(const std::string& body, const char* what) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : body) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) throw bad_request(std::string(what) + " is nested too deeply");
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) throw bad_request(std::string(what) + " is not valid JSON (UTF-8)");
  if (!doc.is_object()) throw bad_request(std::string(what) + " must be a JSON object");
  return doc;
}

std::vector<std::uint8_t> decode_base64(const std::string& text, const std::string& what) {
  std::size_t start = 0;
  if (text.compare(0, 5, "data:") == 0) {
    auto comma = text.find(',');
    if (comma == std::string::npos || text.substr(0, comma).find(";base64") == std::string::npos) {
      throw bad_request(what + " is a data URL without ;base64");
    }
    start = comma + 1;
  }
  std::vector<std::uint8_t> out;
  out.reserve((text.size() - start) / 4 * 3 + 3);
  std::uint32_t acc = 0;
  int bits = 0;
  bool padding = false;
  for (std::size_t i = start; i < text.size(); ++i) {
    const char c = text[i];
    int v;
    if (c >= 'A' && c <= 'Z') {
      v = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      v = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      v = c - '0' + 52;
    } else if (c == '+' || c == '-') {
      v = 62;
    } else if (c == '/' || c == '_') {
      v = 63;
    } else if (c == '=') {
      padding = true;
      continue;
    } else if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
      continue;
    } else {
      throw bad_request(what + " is not valid base64");
    }
    if (padding) throw bad_request(what + " is not valid base64 (data after padding)");
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<std::uint8_t>((acc >> bits) & 0xFF));
    }
  }
  if (bits >= 6) throw bad_request(what + " is not valid base64 (truncated)");
  return out;
}

}  // namespace lookalike::server
