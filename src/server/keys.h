// API keys: where they come from, where generated ones are kept, how they are compared.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>

namespace lookalike::server {

struct ApiKeys {
  std::string admin;   // writes (and everything else)
  std::string search;  // search and reads
};

// Each key is taken from the first of: the explicit value, the environment
// (LOOKALIKE_ADMIN_KEY, LOOKALIKE_SEARCH_KEY), data_dir/keys.json. A key found in
// none of them is generated (32 bytes from /dev/urandom, hex) and stored in
// data_dir/keys.json, created with mode 0600 and written atomically; on_message
// (if set) gets the newly generated keys, once. Keys from flags or the environment
// are never written to disk. Throws Error(kInvalidInput) for a keys.json that
// is not what this function writes, Error(kIO) when it cannot be read or written.
ApiKeys resolve_keys(const std::filesystem::path& data_dir, const std::string& admin,
                     const std::string& search, const std::function<void(const std::string&)>& on_message);

// True when given equals expected, in time that depends on neither key's
// contents nor on where they differ (both are hashed first).
bool same_key(const std::string& given, const std::string& expected);

// n random bytes from /dev/urandom as 2n lower-case hex digits. Throws Error(kIO).
std::string random_hex(std::size_t n);

}  // namespace lookalike::server
