#include "server/decode_budget.h"

#include <algorithm>

namespace lookalike::server {

std::optional<DecodeBudget::Ticket> DecodeBudget::acquire(std::int64_t pixels,
                                                          std::chrono::steady_clock::time_point deadline) {
  pixels = std::clamp<std::int64_t>(pixels, 0, total_);
  std::unique_lock<std::mutex> lock(mutex_);
  if (!released_.wait_until(lock, deadline, [&] { return in_use_ + pixels <= total_; })) return std::nullopt;
  in_use_ += pixels;
  return Ticket(this, pixels);
}

}  // namespace lookalike::server
