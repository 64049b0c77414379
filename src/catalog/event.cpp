#include "catalog/event.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "common/error.h"

namespace lookalike::catalog {
using nlohmann::json;

namespace {

constexpr const char* kTypeNames[] = {"view", "click", "add_to_cart", "purchase"};
constexpr std::int64_t kEarliestMs = 946684800000;  // 2000-01-01T00:00:00Z
constexpr double kMsPerDay = 86400e3;

Error invalid(const std::string& message) { return Error(ErrorKind::kInvalidInput, message); }

bool digits(const std::string& text, std::size_t pos, std::size_t n, int& value) {
  if (pos + n > text.size()) return false;
  value = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    value = value * 10 + (text[i] - '0');
  }
  return true;
}

std::string id_field(const json& doc, const char* key, const EventLimits& limits) {
  auto it = doc.find(key);
  if (it == doc.end()) throw invalid(std::string(key) + " is missing");
  if (!it->is_string()) throw invalid(std::string(key) + " must be a string");
  const auto& value = it->get_ref<const std::string&>();
  if (value.empty()) throw invalid(std::string(key) + " is empty");
  if (value.size() > limits.max_id_bytes) {
    throw invalid(std::string(key) + " is over " + std::to_string(limits.max_id_bytes) + " bytes");
  }
  return value;
}

}  // namespace

const char* event_type_name(EventType type) { return kTypeNames[static_cast<int>(type)]; }

std::optional<EventType> event_type_from_name(const std::string& name) {
  for (int i = 0; i < 4; ++i) {
    if (name == kTypeNames[i]) return static_cast<EventType>(i);
  }
  return std::nullopt;
}

double event_weight(EventType type) {
  switch (type) {
    case EventType::kView:
      return 1;
    case EventType::kClick:
      return 2;
    case EventType::kAddToCart:
      return 5;
    case EventType::kPurchase:
      return 10;
  }
  return 0;
}

double decay_factor(std::int64_t from_ms, std::int64_t to_ms, double half_life_days) {
  return std::exp2(-static_cast<double>(to_ms - from_ms) / (half_life_days * kMsPerDay));
}

std::optional<std::int64_t> parse_rfc3339_ms(const std::string& text) {
  // YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM); 't' and 'z' too, as RFC 3339 allows.
  int year, month, day, hour, minute, second;
  if (!digits(text, 0, 4, year) || text.size() < 20 || text[4] != '-' || !digits(text, 5, 2, month) ||
      text[7] != '-' || !digits(text, 8, 2, day) || (text[10] != 'T' && text[10] != 't') ||
      !digits(text, 11, 2, hour) || text[13] != ':' || !digits(text, 14, 2, minute) || text[16] != ':' ||
      !digits(text, 17, 2, second)) {
    return std::nullopt;
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) {
    return std::nullopt;
  }
  std::size_t pos = 19;
  double fraction = 0;
  if (pos < text.size() && text[pos] == '.') {
    double scale = 0.1;
    std::size_t start = ++pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      fraction += (text[pos++] - '0') * scale;
      scale /= 10;
    }
    if (pos == start || pos - start > 9) return std::nullopt;
  }
  if (pos >= text.size()) return std::nullopt;
  int offset_minutes = 0;
  if (text[pos] == 'Z' || text[pos] == 'z') {
    ++pos;
  } else if (text[pos] == '+' || text[pos] == '-') {
    int oh, om;
    if (!digits(text, pos + 1, 2, oh) || pos + 3 >= text.size() || text[pos + 3] != ':' ||
        !digits(text, pos + 4, 2, om) || oh > 23 || om > 59) {
      return std::nullopt;
    }
    offset_minutes = (text[pos] == '+' ? 1 : -1) * (oh * 60 + om);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != text.size()) return std::nullopt;
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  const std::time_t seconds = timegm(&tm);
  if (tm.tm_mday != day) return std::nullopt;  // timegm normalised an impossible date (Feb 30)
  return (static_cast<std::int64_t>(seconds) - offset_minutes * 60) * 1000 +
         static_cast<std::int64_t>(std::floor(fraction * 1000));
}

std::string format_rfc3339(std::int64_t time_ms) {
  const std::time_t seconds =
      static_cast<std::time_t>(time_ms >= 0 ? time_ms / 1000 : (time_ms - 999) / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char text[96];
  std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(time_ms - seconds * 1000LL));
  return text;
}

std::int64_t unix_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Event parse_event(const std::string& json_text, std::int64_t now_ms, const EventLimits& limits) {
  if (json_text.size() > limits.max_line_bytes) {
    throw invalid("the event is over " + std::to_string(limits.max_line_bytes) + " bytes");
  }
  json doc = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) throw invalid("not valid JSON (UTF-8)");
  if (!doc.is_object()) throw invalid("an event must be a JSON object");
  for (const auto& [key, value] : doc.items()) {
    if (key != "type" && key != "product_id" && key != "user_id" && key != "time") {
      throw invalid("unknown key \"" + key.substr(0, 64) + "\" (known: type, product_id, user_id, time)");
    }
  }
  Event event;
  auto type = doc.find("type");
  if (type == doc.end()) throw invalid("type is missing");
  auto parsed = type->is_string() ? event_type_from_name(type->get<std::string>()) : std::nullopt;
  if (!parsed) throw invalid("type must be \"view\", \"click\", \"add_to_cart\" or \"purchase\"");
  event.type = *parsed;
  event.product_id = id_field(doc, "product_id", limits);
  event.user_id = id_field(doc, "user_id", limits);
  event.time_ms = now_ms;
  auto time = doc.find("time");
  if (time != doc.end()) {
    if (time->is_string()) {
      auto ms = parse_rfc3339_ms(time->get<std::string>());
      if (!ms) {
        throw invalid("time \"" + time->get<std::string>().substr(0, 64) +
                      "\" is not an RFC 3339 date-time such as 2026-11-27T16:00:00Z");
      }
      event.time_ms = *ms;
    } else if (time->is_number()) {
      const double seconds = time->get<double>();
      if (!std::isfinite(seconds) || std::abs(seconds) > 1e11) throw invalid("time is out of range");
      event.time_ms = static_cast<std::int64_t>(std::llround(seconds * 1000));
    } else {
      throw invalid("time must be an RFC 3339 string or a number of Unix seconds");
    }
  }
  if (event.time_ms < kEarliestMs) throw invalid("time is before 2000-01-01");
  if (event.time_ms > now_ms + limits.max_future_ms) {
    throw invalid("time " + format_rfc3339(event.time_ms) + " is in the future (server time " +
                  format_rfc3339(now_ms) + ")");
  }
  return event;
}

}  // namespace lookalike::catalog
