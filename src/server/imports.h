// Bulk imports over the API: each body is saved as DIR/imports/<pid>-<task>.jsonl and
// run through Engine::ingest on the queue's one thread, one task at a time.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace lookalike::search {
class Engine;
}

namespace lookalike::server {

class Metrics;

class ImportQueue {
 public:
  static constexpr std::size_t kMaxErrors = 1000;  // per task; later ones are counted, not kept
  static constexpr std::size_t kMaxPending = 16;   // tasks queued or running
  static constexpr std::size_t kMaxKept = 256;     // finished tasks remembered for status queries

  ImportQueue(std::filesystem::path data_dir, Metrics& metrics);
  ~ImportQueue();  // stop()

  // Saves the body atomically and queues it; returns the task id, or nothing when
  // kMaxPending tasks are already waiting or the queue is stopping (the caller
  // answers 503). Throws Error(kIO) when the file cannot be written.
  std::optional<std::string> submit(std::shared_ptr<search::Engine> engine, const std::string& body);

  // The task's status as documented in docs/API.md, if the task is known.
  std::optional<nlohmann::json> status(const std::string& task_id) const;

  // Interrupts the running task after its current batch (committed batches stay),
  // marks queued ones failed and joins the thread. Idempotent.
  void stop();

 private:
  struct Task {
    std::string id;
    std::filesystem::path file;
    std::shared_ptr<search::Engine> engine;
    std::string state = "queued";
    std::size_t lines_done = 0;
    std::size_t added = 0, updated = 0, unchanged = 0, deleted = 0, skipped = 0;
    std::size_t images_embedded = 0, images_reused = 0;
    std::size_t error_count = 0;
    std::vector<nlohmann::json> errors;
    std::string error;  // why the task failed
    double seconds = 0;
  };

  // Removes the bodies of tasks of servers that were killed (their tasks died with them).
  void remove_abandoned_bodies();
  void run();
  void run_task(const std::shared_ptr<Task>& task);
  nlohmann::json to_json(const Task& task) const;

  const std::filesystem::path dir_;
  Metrics& metrics_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Task>> queue_;
  std::map<std::string, std::shared_ptr<Task>> tasks_;
  std::deque<std::string> finished_;  // oldest first, for forgetting
  bool stopping_ = false;
  std::thread thread_;
};

// Model switches over the API (POST /v1/admin/reindex): one Engine::reindex or
// rollback at a time, on the runner's one thread, while the server keeps serving.
// Progress is read from the engine (Engine::reindex_progress).
class ReindexRunner {
 public:
  ReindexRunner() = default;
  ~ReindexRunner();  // stop()

  // Starts a switch to model (a file on the server, or "pixels"), or a rollback
  // when model is empty. False when one is already running or the runner stops.
  bool start(std::shared_ptr<search::Engine> engine, const std::string& model);

  // True from a successful start() until its switch has finished or failed.
  bool running() const;

  // Interrupts a running switch at its next batch (the active model stays; the
  // vectors embedded so far are kept for the next attempt) and joins. Idempotent.
  void stop();

 private:
  mutable std::mutex mutex_;
  bool running_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace lookalike::server
