// What the CLI needs around the engine: the thread count, and progress on stderr.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include "embed/train.h"

namespace lookalike::cli {

// Sets the threads libtorch and FAISS use; 0 means all cores. Called once, first.
void configure_threads(int threads);

// Progress for long work on stderr: a redrawn bar when stderr is a terminal,
// plain lines (messages and epoch summaries only) when it is not.
class Progress {
 public:
  explicit Progress(std::string task);
  void update(std::size_t done, std::size_t total, const std::string& unit);
  void train(const embed::TrainProgress& p);
  void message(const std::string& text);  // a line of its own, above the bar
  void done();

 private:
  void clear_bar();
  std::string task_;
  bool tty_;
  bool bar_shown_ = false;
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace lookalike::cli
