// Snapshots of a data folder: a consistent copy taken while a server keeps serving
// (and writing to) the folder, and the way back from such a copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

namespace lookalike::search {

struct SnapshotReport {
  std::int64_t products = 0;
  std::int64_t images = 0;
  std::size_t files = 0;     // files in the result, the store included
  std::uintmax_t bytes = 0;  // their total size
  double seconds = 0;
};

// Copies the data folder data_dir to dest, which must not exist. The catalog store is
// copied with SQLite's online backup (one committed state; writers are not blocked),
// then every other file: the model, the vector index, keys.json, uploads/ and the
// images in imports/ (images are written before the store rows that name them, so
// every image the copied store names is there), but not temp files or the bodies of
// bulk imports waiting in imports/. The copy is assembled in a temp folder beside dest, opened as a
// data folder to verify it (an index older or newer than the copied store is rebuilt
// from it there), synced, and renamed to dest: dest is complete or absent, never half
// written. Messages (index rebuilt) go to on_message, which may be empty.
// Throws Error(kNotFound) when data_dir holds no catalog store, Error(kInvalidInput)
// when dest exists, Error(kIO) and the open errors of Engine::open otherwise; on any
// failure the temp folder is removed.
SnapshotReport snapshot_data_folder(const std::filesystem::path& data_dir, const std::filesystem::path& dest,
                                    const std::function<void(const std::string&)>& on_message);

// Brings data_dir back from a snapshot. data_dir must not exist or be empty, unless
// force, when its whole content is replaced. The snapshot is copied beside data_dir and
// verified by opening it before anything in data_dir changes; the copy then takes
// data_dir's place in one atomic rename (an exchange when data_dir exists), so a crash
// leaves either the old folder or the restored one. No server may be running on
// data_dir. Throws Error(kInvalidInput) for a non-empty data_dir without force or a
// folder that is not a snapshot, and the errors of Engine::open for a damaged one.
SnapshotReport restore_data_folder(const std::filesystem::path& snapshot,
                                   const std::filesystem::path& data_dir, bool force,
                                   const std::function<void(const std::string&)>& on_message);

}  // namespace lookalike::search
