// Shopper behaviour events (view, click, add to cart, purchase) and the time decay
// that turns them into popularity per product and taste per shopper.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace lookalike::catalog {

enum class EventType { kView = 0, kClick = 1, kAddToCart = 2, kPurchase = 3 };

struct Event {
  EventType type = EventType::kView;
  std::string product_id;
  std::string user_id;       // opaque: whatever the shop uses to tell shoppers apart
  std::int64_t time_ms = 0;  // Unix time, milliseconds
};

// "view", "click", "add_to_cart", "purchase".
const char* event_type_name(EventType type);
std::optional<EventType> event_type_from_name(const std::string& name);

// What one event of a type adds to popularity and taste: a purchase says more
// than a view.
double event_weight(EventType type);  // view 1, click 2, add_to_cart 5, purchase 10

// Popularity and taste fade with a half-life: an event counts half after this long.
inline constexpr double kPopularityHalfLifeDays = 7;
inline constexpr double kTasteHalfLifeDays = 14;

// 2^(-(to_ms - from_ms) / half_life): the factor by which a value decayed between two
// times. Greater than 1 when to_ms < from_ms.
double decay_factor(std::int64_t from_ms, std::int64_t to_ms, double half_life_days);

struct EventLimits {
  std::size_t max_line_bytes = 4096;           // one JSON event
  std::size_t max_id_bytes = 1024;             // product_id and user_id each
  std::int64_t max_future_ms = 5 * 60 * 1000;  // clock skew accepted for event times
};

// Parses one JSON event: {"type": "view"|"click"|"add_to_cart"|"purchase",
// "product_id": "...", "user_id": "...", "time": ...} where time is an RFC 3339
// string ("2026-11-27T16:00:00Z", "2026-11-27T17:00:00.5+01:00") or a number of
// Unix seconds, and may be left out (then it is now_ms). Unknown keys, empty ids,
// over-long lines or ids, times before 2000 or more than max_future_ms after now_ms
// are errors: throws Error(kInvalidInput) naming the field.
Event parse_event(const std::string& json_text, std::int64_t now_ms, const EventLimits& limits);

// Parses an RFC 3339 date-time to Unix milliseconds; nullopt when malformed.
std::optional<std::int64_t> parse_rfc3339_ms(const std::string& text);
// Unix milliseconds as "2026-11-27T16:00:00.000Z".
std::string format_rfc3339(std::int64_t time_ms);

// The current time, Unix milliseconds.
std::int64_t unix_now_ms();

}  // namespace lookalike::catalog
