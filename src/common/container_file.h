// The one on-disk envelope for every binary file lookalike writes (model files,
// vector indexes): magic bytes naming the kind, a format version, a JSON header,
// a payload, and a SHA-256 over all of it. Readers bound every length and verify
// the checksum before anything else parses the payload, so a truncated or
// corrupted file is reported as such instead of reaching a third-party parser.
//
// Layout: magic (8 bytes) | u32 version | u32 header length | header (JSON text)
//         | u64 payload length | payload | SHA-256 of everything before it (32 bytes)
// Integers are little-endian.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace lookalike {

struct ContainerFile {
  std::string header;                 // JSON text
  std::vector<std::uint8_t> payload;
};

// Writes atomically (see write_file_atomic). magic must be 8 characters.
void write_container_file(const std::filesystem::path& path, const std::string& magic,
                          std::uint32_t version, const std::string& header, const std::string& payload);

// Reads and verifies a file. `what` names the kind in messages ("model file").
// Throws Error(kNotFound) if missing, Error(kInvalidInput) naming the path and
// the defect when the magic, version, lengths or checksum are wrong.
ContainerFile read_container_file(const std::filesystem::path& path, const std::string& magic,
                                  std::uint32_t version, std::size_t max_bytes, const std::string& what);

// The same checks on a file already in memory (e.g. one part of a fused model);
// messages read "<what> <name> <defect>".
ContainerFile parse_container_file(const std::vector<std::uint8_t>& bytes, const std::string& magic,
                                   std::uint32_t version, const std::string& what, const std::string& name);

}  // namespace lookalike
