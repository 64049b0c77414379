#include "common/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <openssl/evp.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>

#include "common/error.h"

namespace lookalike {
namespace fs = std::filesystem;

namespace {

[[noreturn]] void throw_errno(const std::string& what, const fs::path& path) {
  throw Error(ErrorKind::kIO, what + " " + path.string() + ": " + std::strerror(errno));
}

void fsync_path(const fs::path& path, int flags) {
  int fd = ::open(path.c_str(), flags);
  if (fd < 0) throw_errno("cannot open", path);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw_errno("cannot fsync", path);
}

}  // namespace

void create_private_directory(const fs::path& dir) {
  std::error_code ec;
  if (fs::is_directory(dir, ec)) return;
  // is_directory reports a missing folder in ec too; only create_directories' error counts.
  ec.clear();
  if (dir.has_parent_path()) fs::create_directories(dir.parent_path(), ec);
  if (ec) throw Error(ErrorKind::kIO, "cannot create " + dir.parent_path().string() + ": " + ec.message());
  if (::mkdir(dir.c_str(), 0700) != 0) {
    if (errno == EEXIST && fs::is_directory(dir, ec)) return;  // made meanwhile by another process
    throw Error(ErrorKind::kIO, "cannot create " + dir.string() + ": " + std::strerror(errno));
  }
  // mkdir's mode is masked by the umask, which may remove bits but never adds any.
  if (::chmod(dir.c_str(), 0700) != 0) {
    throw Error(ErrorKind::kIO, "cannot set the mode of " + dir.string() + ": " + std::strerror(errno));
  }
}

std::vector<std::uint8_t> read_file(const fs::path& path, std::size_t max_bytes) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    if (!fs::exists(path, ec)) throw Error(ErrorKind::kNotFound, "no such file: " + path.string());
    throw Error(ErrorKind::kInvalidInput, "not a regular file: " + path.string());
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::kIO, "cannot open " + path.string());
  std::vector<std::uint8_t> bytes;
  // Read in chunks rather than trusting the size from stat: the file may grow.
  constexpr std::size_t kChunk = 64 * 1024;
  while (in) {
    std::size_t old = bytes.size();
    if (old > max_bytes) break;
    bytes.resize(old + kChunk);
    in.read(reinterpret_cast<char*>(bytes.data() + old), kChunk);
    bytes.resize(old + static_cast<std::size_t>(in.gcount()));
  }
  if (in.bad()) throw Error(ErrorKind::kIO, "cannot read " + path.string());
  if (bytes.size() > max_bytes) {
    throw Error(ErrorKind::kTooLarge, path.string() + " is larger than the limit of " +
                                          std::to_string(max_bytes) + " bytes");
  }
  return bytes;
}

void write_file_atomic(const fs::path& path, const void* data, std::size_t size) {
  fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  // Not mkstemp: it creates the file 0600 whatever the umask, so a model written by
  // one user could not be read by the server's. Mode 0666 lets the umask decide.
  static std::atomic<std::uint64_t> counter{0};
  std::random_device random;
  fs::path tmp;
  int fd = -1;
  for (int attempt = 0; fd < 0 && attempt < 100; ++attempt) {
    char suffix[64];
    std::snprintf(suffix, sizeof suffix, ".tmp-%ld-%llu-%08x", static_cast<long>(::getpid()),
                  static_cast<unsigned long long>(counter++), static_cast<unsigned>(random()));
    tmp = dir / ("." + path.filename().string() + suffix);
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) throw_errno("cannot create temp file in", dir);
  auto fail = [&](const std::string& what) {
    int saved = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    errno = saved;
    throw_errno(what, tmp);
  };
  const auto* p = static_cast<const char*>(data);
  std::size_t left = size;
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("cannot write");
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) fail("cannot fsync");
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw_errno("cannot close", tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int saved = errno;
    ::unlink(tmp.c_str());
    errno = saved;
    throw_errno("cannot rename temp file to", path);
  }
  fsync_path(dir, O_RDONLY | O_DIRECTORY);
}

void sync_path(const fs::path& path) {
  std::error_code ec;
  fsync_path(path, fs::is_directory(path, ec) ? O_RDONLY | O_DIRECTORY : O_RDONLY);
}

bool process_has_ended(long pid) noexcept {
  return pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

std::size_t remove_stale_temp_files(const fs::path& dir) noexcept {
  std::size_t removed = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    auto at = name.rfind(".tmp-");
    if (name.empty() || name[0] != '.' || at == std::string::npos) continue;
    // The pid is the number after ".tmp-" (see write_file_atomic).
    long pid = std::strtol(name.c_str() + at + 5, nullptr, 10);
    if (!process_has_ended(pid)) continue;
    std::error_code remove_ec;
    if (fs::remove(it->path(), remove_ec)) ++removed;
  }
  return removed;
}

std::string sha256_hex(const void* data, std::size_t size) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data, size, digest, &len, EVP_sha256(), nullptr) != 1) {
    throw Error(ErrorKind::kInternal, "SHA-256 failed");
  }
  static const char* hex = "0123456789abcdef";
  std::string out(2 * len, '0');
  for (unsigned int i = 0; i < len; ++i) {
    out[2 * i] = hex[digest[i] >> 4];
    out[2 * i + 1] = hex[digest[i] & 15];
  }
  return out;
}

fs::path resolve_inside(const fs::path& root, const std::string& relative) {
  if (relative.empty()) throw Error(ErrorKind::kInvalidInput, "empty image path");
  fs::path rel(relative);
  if (rel.is_absolute()) {
    throw Error(ErrorKind::kInvalidInput, "image path must be relative to the catalog: " + relative);
  }
  std::error_code ec;
  fs::path canonical_root = fs::weakly_canonical(root, ec);
  if (ec) throw Error(ErrorKind::kIO, "cannot resolve " + root.string() + ": " + ec.message());
  if (canonical_root.filename().empty()) canonical_root = canonical_root.parent_path();
  fs::path resolved = fs::weakly_canonical(canonical_root / rel, ec);
  if (ec) throw Error(ErrorKind::kIO, "cannot resolve " + relative + ": " + ec.message());
  auto r = canonical_root.begin();
  auto p = resolved.begin();
  for (; r != canonical_root.end(); ++r, ++p) {
    if (p == resolved.end() || *p != *r) {
      throw Error(ErrorKind::kInvalidInput, "image path escapes the catalog folder: " + relative);
    }
  }
  return resolved;
}

}  // namespace lookalike
