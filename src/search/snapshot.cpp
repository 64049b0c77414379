#include "search/snapshot.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "catalog/store.h"
#include "common/error.h"
#include "common/files.h"
#include "search/engine.h"

namespace lookalike::search {
namespace fs = std::filesystem;

namespace {

constexpr const char* kStoreFile = "catalog.db";
constexpr const char* kImports = "imports";

[[noreturn]] void throw_errno(const std::string& what) {
  throw Error(ErrorKind::kIO, what + ": " + std::strerror(errno));
}

void make_dir(const fs::path& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0) throw_errno("cannot create " + dir.string());
}

// A folder beside `target` for assembling a copy, removed on destruction unless released.
class TempFolder {
 public:
  TempFolder(const fs::path& target, const std::string& kind) {
    fs::path parent = target.parent_path().empty() ? fs::path(".") : target.parent_path();
    const std::string prefix = "." + target.filename().string() + "." + kind + "-";
    remove_abandoned(parent, prefix);
    path_ = parent / (prefix + std::to_string(::getpid()));
    make_dir(path_);
  }
  ~TempFolder() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  TempFolder(const TempFolder&) = delete;
  TempFolder& operator=(const TempFolder&) = delete;
  const fs::path& path() const { return path_; }
  void release() { path_.clear(); }

 private:
  // Removes the folders "<prefix><pid>" of processes that no longer run (killed midway).
  static void remove_abandoned(const fs::path& parent, const std::string& prefix) {
    std::error_code ec;
    for (fs::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      const std::string digits = name.substr(std::min(name.size(), prefix.size()));
      if (name.rfind(prefix, 0) != 0 || digits.empty() ||
          digits.find_first_not_of("0123456789") != std::string::npos) {
        continue;
      }
      const long pid = std::strtol(digits.c_str(), nullptr, 10);
      if (pid == ::getpid() || process_has_ended(pid)) {
        std::error_code remove_ec;
        fs::remove_all(it->path(), remove_ec);
      }
    }
  }

  fs::path path_;
};

// Copies one regular file with its permission bits and syncs it.
void copy_synced(const fs::path& from, const fs::path& to, SnapshotReport& report) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::none, ec);
  if (ec)
    throw Error(ErrorKind::kIO, "cannot copy " + from.string() + " to " + to.string() + ": " + ec.message());
  fs::permissions(to, fs::status(from).permissions(), ec);
  if (ec) throw Error(ErrorKind::kIO, "cannot set the permissions of " + to.string() + ": " + ec.message());
  sync_path(to);
  ++report.files;
  report.bytes += fs::file_size(to);
}

// Whether a file or folder of a data folder belongs in a copy: not the store (backed up on
// its own, with its -wal and -shm files), not temp files (a leading dot), and not the bodies
// of bulk imports waiting in imports/ (a restored server would not run them); everything
// else is: the model, the index, keys.json, uploaded images, images put in imports/ for
// bulk imports (the store names them), and whatever else the folder holds.
bool belongs_in_copy(const fs::path& relative, bool is_file) {
  for (const auto& part : relative) {
    if (part.string().empty() || part.string()[0] == '.') return false;
  }
  const std::string first = relative.begin()->string();
  if (first == kStoreFile || first.rfind(std::string(kStoreFile) + "-", 0) == 0) return false;
  return !(is_file && relative.parent_path() == kImports && relative.extension() == ".jsonl");
}

// Copies the data folder `from` but its store into the existing folder `to`, syncing
// every file and folder. Symbolic links are copied as the files they point to.
void copy_data_files(const fs::path& from, const fs::path& to, SnapshotReport& report) {
  std::error_code ec;
  std::vector<fs::path> folders{to};
  fs::recursive_directory_iterator it(from, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const fs::path relative = it->path().lexically_relative(from);
    const bool is_dir = it->is_directory(ec);
    if (!belongs_in_copy(relative, !is_dir)) {
      if (is_dir) it.disable_recursion_pending();
      continue;
    }
    if (is_dir) {
      make_dir(to / relative);
      folders.push_back(to / relative);
    } else if (it->is_regular_file(ec)) {
      copy_synced(it->path(), to / relative, report);
    }
  }
  if (ec) throw Error(ErrorKind::kIO, "cannot list " + from.string() + ": " + ec.message());
  for (const auto& folder : folders) sync_path(folder);
}

// Opens the folder as the engine would, which checks the store, the model and the index
// (rebuilding the index when it does not match the store), and counts what it holds.
void verify(const fs::path& dir, const std::function<void(const std::string&)>& on_message,
            SnapshotReport& report) {
  OpenOptions options;
  options.on_message = on_message;
  auto engine = Engine::open(dir, options);
  auto info = engine->info();
  report.products = info.products;
  report.images = info.images;
}

void require_store(const fs::path& dir, const std::string& what) {
  std::error_code ec;
  if (!fs::is_regular_file(dir / kStoreFile, ec)) {
    throw Error(fs::exists(dir, ec) ? ErrorKind::kInvalidInput : ErrorKind::kNotFound,
                dir.string() + " is not " + what + " (it has no " + kStoreFile + ")");
  }
}

void rename_no_replace(const fs::path& from, const fs::path& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) != 0) {
    if (errno == EEXIST) throw Error(ErrorKind::kInvalidInput, to.string() + " already exists");
    throw_errno("cannot rename " + from.string() + " to " + to.string());
  }
}

void sync_parent(const fs::path& path) {
  sync_path(path.parent_path().empty() ? fs::path(".") : path.parent_path());
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

SnapshotReport snapshot_data_folder(const fs::path& data_dir, const fs::path& dest,
                                    const std::function<void(const std::string&)>& on_message) {
  const auto start = std::chrono::steady_clock::now();
  require_store(data_dir, "a data folder");
  std::error_code ec;
  if (fs::exists(dest, ec)) throw Error(ErrorKind::kInvalidInput, dest.string() + " already exists");
  SnapshotReport report;
  TempFolder temp(dest, "partial");
  // The store first: every file it names (uploads) was written before its rows were.
  catalog::Store::open(data_dir / kStoreFile)->backup_to(temp.path() / kStoreFile);
  ++report.files;
  copy_data_files(data_dir, temp.path(), report);
  verify(temp.path(), on_message, report);
  // Verifying may have rebuilt the index: count and sync what is there now.
  report.files = 0;
  report.bytes = 0;
  for (auto it = fs::recursive_directory_iterator(temp.path()); it != fs::recursive_directory_iterator();
       ++it) {
    if (!it->is_regular_file()) continue;
    ++report.files;
    report.bytes += it->file_size();
    sync_path(it->path());
  }
  sync_path(temp.path());
  rename_no_replace(temp.path(), dest);
  temp.release();
  sync_parent(dest);
  report.seconds = seconds_since(start);
  return report;
}

SnapshotReport restore_data_folder(const fs::path& snapshot, const fs::path& data_dir, bool force,
                                   const std::function<void(const std::string&)>& on_message) {
  const auto start = std::chrono::steady_clock::now();
  require_store(snapshot, "a lookalike snapshot");
  std::error_code ec;
  const bool exists = fs::exists(data_dir, ec);
  if (exists && !fs::is_directory(data_dir, ec)) {
    throw Error(ErrorKind::kInvalidInput, data_dir.string() + " is not a folder");
  }
  if (exists && !fs::is_empty(data_dir, ec) && !force) {
    throw Error(ErrorKind::kInvalidInput,
                data_dir.string() + " is not empty; pass --force to replace its content with the snapshot");
  }
  SnapshotReport report;
  TempFolder temp(data_dir, "restore");
  copy_synced(snapshot / kStoreFile, temp.path() / kStoreFile, report);
  copy_data_files(snapshot, temp.path(), report);
  verify(temp.path(), on_message, report);
  sync_path(temp.path());
  if (exists) {
    // One atomic step: the restored folder takes data_dir's name, the old content the temp name.
    if (::renameat2(AT_FDCWD, temp.path().c_str(), AT_FDCWD, data_dir.c_str(), RENAME_EXCHANGE) != 0) {
      throw_errno("cannot move the restored folder to " + data_dir.string());
    }
  } else {
    rename_no_replace(temp.path(), data_dir);
    temp.release();
  }
  sync_parent(data_dir);
  report.seconds = seconds_since(start);
  return report;
}

}  // namespace lookalike::search
