#include "server/imports.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "common/error.h"
#include "common/files.h"
#include "search/engine.h"
#include "server/keys.h"
#include "server/metrics.h"

namespace lookalike::server {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Thrown from the progress callback to stop an import at a batch boundary.
struct Interrupted {};

}  // namespace

ImportQueue::ImportQueue(fs::path data_dir, Metrics& metrics)
    : dir_(std::move(data_dir) / "imports"), metrics_(metrics) {
  if (::mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) {
    throw Error(ErrorKind::kIO, "cannot create " + dir_.string() + ": " + std::strerror(errno));
  }
  remove_abandoned_bodies();
  thread_ = std::thread([this] { run(); });
}

void ImportQueue::remove_abandoned_bodies() {
  std::error_code ec;
  for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const auto dash = name.find('-');
    if (it->path().extension() != ".jsonl" || dash == std::string::npos || dash == 0 ||
        name.find_first_not_of("0123456789") != dash) {
      continue;
    }
    if (process_has_ended(std::strtol(name.c_str(), nullptr, 10))) {
      std::error_code remove_ec;
      fs::remove(it->path(), remove_ec);
    }
  }
}

ImportQueue::~ImportQueue() { stop(); }

void ImportQueue::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::optional<std::string> ImportQueue::submit(std::shared_ptr<search::Engine> engine,
                                               const std::string& body) {
  auto task = std::make_shared<Task>();
  task->id = random_hex(8);
  // Named by the server's pid, so that the next server can tell a body left by a killed one.
  task->file = dir_ / (std::to_string(::getpid()) + "-" + task->id + ".jsonl");
  task->engine = std::move(engine);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    std::size_t pending = queue_.size();
    for (const auto& [id, t] : tasks_) pending += t->state == "running" ? 1 : 0;
    if (stopping_ || pending >= kMaxPending) return std::nullopt;
  }
  write_file_atomic(task->file, body.data(), body.size());
  {
    std::lock_guard<std::mutex> lock(mutex_);
    tasks_[task->id] = task;
    queue_.push_back(task);
  }
  wake_.notify_all();
  return task->id;
}

std::optional<json> ImportQueue::status(const std::string& task_id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = tasks_.find(task_id);
  if (it == tasks_.end()) return std::nullopt;
  return to_json(*it->second);
}

json ImportQueue::to_json(const Task& t) const {
  json out{{"task_id", t.id},
           {"state", t.state},
           {"lines_done", t.lines_done},
           {"added", t.added},
           {"updated", t.updated},
           {"unchanged", t.unchanged},
           {"deleted", t.deleted},
           {"skipped", t.skipped},
           {"images_embedded", t.images_embedded},
           {"images_reused", t.images_reused},
           {"errors", t.errors},
           {"errors_truncated", t.error_count > t.errors.size()},
           {"seconds", t.seconds}};
  if (!t.error.empty()) out["error"] = t.error;
  return out;
}

void ImportQueue::run() {
  for (;;) {
    std::shared_ptr<Task> task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) {
        for (auto& t : queue_) {
          t->state = "failed";
          t->error = "the server shut down before this import started; submit it again";
          std::error_code ec;
          fs::remove(t->file, ec);
        }
        queue_.clear();
        return;
      }
      task = queue_.front();
      queue_.pop_front();
      task->state = "running";
    }
    run_task(task);
    std::lock_guard<std::mutex> lock(mutex_);
    task->engine.reset();
    finished_.push_back(task->id);
    while (finished_.size() > kMaxKept) {
      tasks_.erase(finished_.front());
      finished_.pop_front();
    }
  }
}

void ImportQueue::run_task(const std::shared_ptr<Task>& task) {
  search::IngestOptions options;
  options.on_progress = [&](std::size_t lines) {
    std::lock_guard<std::mutex> lock(mutex_);
    task->lines_done = lines;
    if (stopping_) throw Interrupted{};
  };
  options.on_skip = [&](std::size_t line, const std::string& image, const std::string& reason) {
    std::lock_guard<std::mutex> lock(mutex_);
    ++task->skipped;
    if (task->error_count++ < kMaxErrors)
      task->errors.push_back({{"line", line}, {"image", image}, {"message", reason}});
  };
  std::string state = "done", error;
  search::IngestReport report;
  try {
    report = task->engine->ingest(task->file, options);
  } catch (const Interrupted&) {
    state = "failed";
    error = "interrupted by server shutdown after " + std::to_string(task->lines_done) +
            " lines (those are committed); submit the file again to finish it";
  } catch (const Error& e) {
    state = "failed";
    error = e.what();
  } catch (const std::exception& e) {
    state = "failed";
    error = std::string("internal error: ") + e.what();
    std::cerr << "lookalike: import " << task->id << " failed: " << e.what() << "\n";
  }
  std::error_code ec;
  fs::remove(task->file, ec);
  metrics_.add_ingest(report.images_embedded + report.images_reused, report.skipped());
  std::lock_guard<std::mutex> lock(mutex_);
  task->state = state;
  task->error = error;
  if (state == "done") {
    task->lines_done = report.lines;
    task->added = report.products_added;
    task->updated = report.products_updated;
    task->unchanged = report.products_unchanged;
    task->deleted = report.products_deleted;
    task->images_embedded = report.images_embedded;
    task->images_reused = report.images_reused;
    task->skipped = report.skipped();
    task->seconds = report.seconds;
  }
}

ReindexRunner::~ReindexRunner() { stop(); }

bool ReindexRunner::start(std::shared_ptr<search::Engine> engine, const std::string& model) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (running_ || stopping_) return false;
  if (thread_.joinable()) thread_.join();  // the last one has finished
  running_ = true;
  thread_ = std::thread([this, engine = std::move(engine), model] {
    search::ReindexOptions options;
    options.on_progress = [this](std::size_t, std::size_t) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) throw Interrupted{};
    };
    try {
      auto report = model.empty() ? engine->rollback(options) : engine->reindex(model, options);
      std::cerr << "lookalike: switched from model " << report.from << " to " << report.to << " ("
                << report.embedded << " images embedded, " << report.reused << " reused)\n";
    } catch (const Interrupted&) {
      std::cerr << "lookalike: reindex interrupted by server shutdown; the active model is unchanged\n";
    } catch (const std::exception& e) {
      // The engine keeps the reason in its progress, where GET /v1/admin/reindex shows it.
      std::cerr << "lookalike: reindex failed: " << e.what() << "\n";
    }
    std::lock_guard<std::mutex> lock(mutex_);
    running_ = false;
  });
  return true;
}

bool ReindexRunner::running() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return running_;
}

void ReindexRunner::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

}  // namespace lookalike::server
