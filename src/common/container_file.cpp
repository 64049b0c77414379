#include "common/container_file.h"

#include <cstring>

#include "common/error.h"
#include "common/files.h"

namespace lookalike {
namespace fs = std::filesystem;

namespace {

constexpr std::size_t kMagicBytes = 8;
constexpr std::size_t kDigestBytes = 32;
constexpr std::size_t kMaxHeaderBytes = 1u << 20;

template <typename T>
void append_le(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // lookalike targets little-endian hosts only
  out.append(bytes, sizeof(T));
}

std::string digest_bytes(const void* data, std::size_t size) {
  std::string hex = sha256_hex(data, size);
  std::string out(kDigestBytes, '\0');
  for (std::size_t i = 0; i < kDigestBytes; ++i) {
    out[i] = static_cast<char>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  }
  return out;
}

}  // namespace

void write_container_file(const fs::path& path, const std::string& magic, std::uint32_t version,
                          const std::string& header, const std::string& payload) {
  if (magic.size() != kMagicBytes) throw Error(ErrorKind::kInternal, "container magic must be 8 bytes");
  std::string file = magic;
  file.reserve(magic.size() + 16 + header.size() + payload.size() + kDigestBytes);
  append_le<std::uint32_t>(file, version);
  append_le<std::uint32_t>(file, static_cast<std::uint32_t>(header.size()));
  file += header;
  append_le<std::uint64_t>(file, payload.size());
  file += payload;
  file += digest_bytes(file.data(), file.size());
  write_file_atomic(path, file.data(), file.size());
}

ContainerFile read_container_file(const fs::path& path, const std::string& magic, std::uint32_t version,
                                  std::size_t max_bytes, const std::string& what) {
  return parse_container_file(read_file(path, max_bytes), magic, version, what, path.string());
}

ContainerFile parse_container_file(const std::vector<std::uint8_t>& bytes, const std::string& magic,
                                   std::uint32_t version, const std::string& what, const std::string& name) {
  auto corrupt = [&](const std::string& why) {
    return Error(ErrorKind::kInvalidInput, what + " " + name + " " + why);
  };
  if (bytes.size() < kMagicBytes + 16 + kDigestBytes || std::memcmp(bytes.data(), magic.data(), kMagicBytes) != 0) {
    throw corrupt("is not a lookalike " + what + " (bad magic bytes or too short)");
  }
  const std::size_t body = bytes.size() - kDigestBytes;
  if (digest_bytes(bytes.data(), body) != std::string(reinterpret_cast<const char*>(bytes.data() + body), kDigestBytes)) {
    throw corrupt("is corrupt (checksum mismatch)");
  }
  std::size_t pos = kMagicBytes;
  auto read_u32 = [&] {
    std::uint32_t v;
    std::memcpy(&v, bytes.data() + pos, sizeof v);
    pos += sizeof v;
    return v;
  };
  std::uint32_t file_version = read_u32();
  if (file_version != version) {
    throw corrupt("has format version " + std::to_string(file_version) + "; this build reads version " +
                  std::to_string(version));
  }
  std::uint32_t header_len = read_u32();
  if (header_len > kMaxHeaderBytes || header_len + sizeof(std::uint64_t) > body - pos) {
    throw corrupt("has a bad header length");
  }
  ContainerFile out;
  out.header.assign(reinterpret_cast<const char*>(bytes.data() + pos), header_len);
  pos += header_len;
  std::uint64_t payload_len;
  std::memcpy(&payload_len, bytes.data() + pos, sizeof payload_len);
  pos += sizeof payload_len;
  if (payload_len != body - pos) throw corrupt("has a bad payload length");
  out.payload.assign(bytes.begin() + static_cast<long>(pos), bytes.begin() + static_cast<long>(body));
  return out;
}

}  // namespace lookalike
