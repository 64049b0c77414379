#include "server/keys.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/error.h"
#include "common/files.h"

namespace lookalike::server {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kKeysFile = "keys.json";
constexpr std::size_t kKeyBytes = 32;
constexpr std::size_t kMaxKeysFileBytes = 64 * 1024;

std::string env_or_empty(const char* name) {
  const char* value = std::getenv(name);
  return value ? std::string(value) : std::string();
}

struct StoredKeys {
  bool exists = false;
  std::string admin;
  std::string search;
};

// An empty file is what a crash between creating keys.json and filling it leaves:
// it holds no keys.
StoredKeys read_stored(const fs::path& file) {
  StoredKeys stored;
  std::error_code ec;
  if (!fs::exists(file, ec)) return stored;
  stored.exists = true;
  struct stat st {};
  if (::stat(file.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    // Tighten rather than refuse: the keys in it are only as safe as its mode.
    if (::chmod(file.c_str(), 0600) != 0) {
      throw Error(ErrorKind::kIO, file.string() + " is readable by others and cannot be made private: " +
                                      std::strerror(errno));
    }
  }
  auto bytes = read_file(file, kMaxKeysFileBytes);
  if (bytes.empty()) return stored;
  json doc = json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) {
    throw Error(ErrorKind::kInvalidInput,
                file.string() + " is not a JSON object; remove it to generate new keys");
  }
  for (const auto& [name, target] : {std::pair<const char*, std::string*>{"admin_key", &stored.admin},
                                     std::pair<const char*, std::string*>{"search_key", &stored.search}}) {
    if (!doc.contains(name)) continue;
    if (!doc[name].is_string() || doc[name].get<std::string>().empty()) {
      throw Error(ErrorKind::kInvalidInput, file.string() + ": " + name + " must be a non-empty string");
    }
    *target = doc[name].get<std::string>();
  }
  return stored;
}

// Atomic like write_file_atomic, but the temp file (and so the result) is 0600
// whatever the umask: write_file_atomic lets the umask decide.
void write_private_file_atomic(const fs::path& file, const std::string& text) {
  const fs::path tmp = file.parent_path() / ("." + file.filename().string() + ".tmp-" + random_hex(8));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) throw Error(ErrorKind::kIO, "cannot create " + tmp.string() + ": " + std::strerror(errno));
  auto fail = [&](const char* what) {
    int saved = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    throw Error(ErrorKind::kIO, std::string(what) + " " + tmp.string() + ": " + std::strerror(saved));
  };
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("cannot write");
    done += static_cast<std::size_t>(n);
  }
  if (::fchmod(fd, 0600) != 0 || ::fsync(fd) != 0) fail("cannot sync");
  ::close(fd);
  if (::rename(tmp.c_str(), file.c_str()) != 0) {
    int saved = errno;
    ::unlink(tmp.c_str());
    throw Error(ErrorKind::kIO, "cannot rename " + tmp.string() + ": " + std::strerror(saved));
  }
  int dir = ::open(file.parent_path().empty() ? "." : file.parent_path().c_str(),
                   O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

}  // namespace

std::string random_hex(std::size_t n) {
  std::vector<unsigned char> bytes(n);
  int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(ErrorKind::kIO, std::string("cannot open /dev/urandom: ") + std::strerror(errno));
  std::size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, bytes.data() + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      ::close(fd);
      throw Error(ErrorKind::kIO, "cannot read /dev/urandom");
    }
    got += static_cast<std::size_t>(r);
  }
  ::close(fd);
  static const char* hex = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = hex[bytes[i] >> 4];
    out[2 * i + 1] = hex[bytes[i] & 15];
  }
  return out;
}

bool same_key(const std::string& given, const std::string& expected) {
  // Hashing makes both sides the same length, so the loop below takes the same
  // time whatever the keys are; the hash itself runs in time linear in the input.
  const std::string a = sha256_hex(given.data(), given.size());
  const std::string b = sha256_hex(expected.data(), expected.size());
  volatile unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff = diff | static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0 && !expected.empty();
}

ApiKeys resolve_keys(const fs::path& data_dir, const std::string& admin, const std::string& search,
                     const std::function<void(const std::string&)>& on_message) {
  ApiKeys keys;
  keys.admin = !admin.empty() ? admin : env_or_empty("LOOKALIKE_ADMIN_KEY");
  keys.search = !search.empty() ? search : env_or_empty("LOOKALIKE_SEARCH_KEY");
  if (!keys.admin.empty() && !keys.search.empty()) return keys;

  const fs::path file = data_dir / kKeysFile;
  StoredKeys stored = read_stored(file);
  if (keys.admin.empty()) keys.admin = stored.admin;
  if (keys.search.empty()) keys.search = stored.search;
  if (!keys.admin.empty() && !keys.search.empty()) return keys;

  // Generate what is still missing and keep it with what the file already holds.
  bool new_admin = keys.admin.empty(), new_search = keys.search.empty();
  if (new_admin) keys.admin = stored.admin = random_hex(kKeyBytes);
  if (new_search) keys.search = stored.search = random_hex(kKeyBytes);
  if (!stored.exists) {
    // Claim the name with the final mode first: the file never exists with wider
    // permissions, not even empty.
    int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST) {
      throw Error(ErrorKind::kIO, "cannot create " + file.string() + ": " + std::strerror(errno));
    }
    if (fd < 0) {
      // Another process created it meanwhile: use its keys.
      return resolve_keys(data_dir, admin, search, on_message);
    }
    ::close(fd);
  }
  json doc = json::object();
  if (!stored.admin.empty()) doc["admin_key"] = stored.admin;
  if (!stored.search.empty()) doc["search_key"] = stored.search;
  const std::string text = doc.dump(2) + "\n";
  write_private_file_atomic(file, text);
  if (on_message) {
    // The keys themselves never go to the log (which may be kept by a service manager):
    // only where to read them.
    std::string which = new_admin && new_search ? "admin and search keys" : new_admin ? "admin key" : "search key";
    on_message("generated API keys (" + which + "), stored in " + file.string() + " (mode 0600); read them there");
  }
  return keys;
}

}  // namespace lookalike::server
