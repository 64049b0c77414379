// File helpers with the guarantees the rest of the engine relies on: reads are
// bounded, writes are atomic (a reader sees the old file or the new one, never a
// half-written one) and durable once the call returns.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace lookalike {

// Reads a whole file. Throws Error(kNotFound) if it does not exist, Error(kTooLarge)
// if it holds more than max_bytes, Error(kIO) on any other failure.
std::vector<std::uint8_t> read_file(const std::filesystem::path& path, std::size_t max_bytes);

// Writes bytes to path atomically: temp file in the same folder, fsync, rename over
// path, fsync the folder. Throws Error(kIO) and leaves any old file untouched on failure.
void write_file_atomic(const std::filesystem::path& path, const void* data, std::size_t size);

// fsyncs a file or a folder, so that its content (a file) or its entries (a folder:
// files created, renamed or removed in it) survive a power loss. Throws Error(kIO).
void sync_path(const std::filesystem::path& path);

// True when no process with this id runs: the owner of a temp file named by its pid
// was killed. False for a live process, including one of another user.
bool process_has_ended(long pid) noexcept;

// Removes the temp files write_file_atomic leaves in dir when its process is killed
// (".<name>.tmp-<pid>-..." whose pid no longer runs); never those of a live process.
// Returns how many were removed. Missing folder: 0. Throws nothing.
std::size_t remove_stale_temp_files(const std::filesystem::path& dir) noexcept;

// Creates dir with mode 0700 (whatever the umask; missing parents get the usual
// modes) when it does not exist, so that the data a lookalike folder holds is shut
// off from other users. An existing folder keeps the mode its owner gave it.
// Throws Error(kIO) naming the folder.
void create_private_directory(const std::filesystem::path& dir);

// Lower-case hex SHA-256 of a buffer.
std::string sha256_hex(const void* data, std::size_t size);

// Resolves `relative` against `root` and checks the result stays inside root after
// following symlinks. Throws Error(kInvalidInput) naming the path for absolute paths,
// ".." escapes and symlinks that leave root.
std::filesystem::path resolve_inside(const std::filesystem::path& root, const std::string& relative);

}  // namespace lookalike
