// Bounds the memory that image decoding takes across concurrent requests.
// Internal to the server module.
//
// A decode costs memory in proportion to the image's pixels (up to about 18 bytes
// a pixel for 16-bit RGBA PNG while it is converted; measured in bench/RESULTS.md),
// and a file of a few hundred kilobytes may hold the 50,000,000 pixels the decode
// limits allow. Each request therefore holds its image's pixel count, read from the
// file header, while it decodes; requests wait while the budget is spent.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>

namespace lookalike::server {

class DecodeBudget {
 public:
  explicit DecodeBudget(std::int64_t pixels) : total_(pixels) {}

  // Holds pixels of the budget until destroyed.
  class Ticket {
   public:
    Ticket(Ticket&& other) noexcept : budget_(other.budget_), pixels_(other.pixels_) {
      other.budget_ = nullptr;
    }
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    Ticket& operator=(Ticket&&) = delete;
    ~Ticket() {
      if (budget_) budget_->release(pixels_);
    }

   private:
    friend class DecodeBudget;
    Ticket(DecodeBudget* budget, std::int64_t pixels) : budget_(budget), pixels_(pixels) {}
    DecodeBudget* budget_;
    std::int64_t pixels_;
  };

  // Waits until `pixels` fit beside the decodes running, or until `deadline` (then
  // returns nothing). An image larger than the whole budget waits until nothing else
  // decodes. Thread-safe.
  std::optional<Ticket> acquire(std::int64_t pixels, std::chrono::steady_clock::time_point deadline);

  std::int64_t in_use() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return in_use_;
  }

 private:
  void release(std::int64_t pixels) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      in_use_ -= pixels;
    }
    released_.notify_all();
  }

  const std::int64_t total_;
  mutable std::mutex mutex_;
  std::condition_variable released_;
  std::int64_t in_use_ = 0;
};

}  // namespace lookalike::server
