#include "cli/runtime.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <thread>

#include "embed/embedder.h"

namespace lookalike::cli {

void configure_threads(int threads) {
  embed::set_compute_threads(threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency()));
}

Progress::Progress(std::string task) : task_(std::move(task)), tty_(::isatty(STDERR_FILENO) == 1) {}

void Progress::clear_bar() {
  if (bar_shown_) std::fprintf(stderr, "\r\033[K");
  bar_shown_ = false;
}

void Progress::update(std::size_t done, std::size_t total, const std::string& unit) {
  if (!tty_) return;
  auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ < std::chrono::milliseconds(100) && done != total) return;
  last_draw_ = now;
  clear_bar();
  if (total > 0) {
    constexpr int kWidth = 30;
    int filled = static_cast<int>(kWidth * done / total);
    std::fprintf(stderr, "%s [%s%s] %zu/%zu %s", task_.c_str(), std::string(filled, '#').c_str(),
                 std::string(kWidth - filled, '.').c_str(), done, total, unit.c_str());
  } else {
    std::fprintf(stderr, "%s: %zu %s", task_.c_str(), done, unit.c_str());
  }
  bar_shown_ = true;
}

void Progress::train(const embed::TrainProgress& p) {
  // Steps done by this run only: a resumed run's clock starts at its first epoch.
  double per_step = p.seconds / double((p.epoch - p.first_epoch) * p.steps + p.step);
  double left = per_step * double((p.epochs - p.epoch) * p.steps + (p.steps - p.step));
  if (p.epoch_done) {
    clear_bar();
    std::string photos;
    if (p.objective != embed::Objective::kSupervised) {
      photos = "  (photos " + std::to_string(static_cast<long>(std::lround(p.photo_seconds))) + " s)";
    }
    std::fprintf(stderr, "epoch %d/%d  loss %.4f  %s %.4f  %.0f s elapsed%s, about %.0f s left\n", p.epoch,
                 p.epochs, p.loss,
                 p.objective == embed::Objective::kSelfSupervised ? "pair accuracy" : "train accuracy",
                 p.accuracy, p.seconds, photos.c_str(), left);
    return;
  }
  if (!tty_) return;
  auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ < std::chrono::milliseconds(200)) return;
  last_draw_ = now;
  clear_bar();
  std::fprintf(stderr, "epoch %d/%d  step %zu/%zu  loss %.4f  about %.0f s left", p.epoch, p.epochs, p.step,
               p.steps, p.loss, left);
  bar_shown_ = true;
}

void Progress::message(const std::string& text) {
  clear_bar();
  std::fprintf(stderr, "%s: %s\n", task_.c_str(), text.c_str());
}

void Progress::done() { clear_bar(); }

}  // namespace lookalike::cli
