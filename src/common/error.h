// Typed errors shared by every module. Each module throws lookalike::Error with the
// kind that says whose fault it was; the CLI (and later the HTTP server) turn the
// kind into an exit code or status at exactly one boundary.
#pragma once

#include <stdexcept>
#include <string>

namespace lookalike {

enum class ErrorKind {
  kInvalidInput,     // the caller's data is malformed (bad JSON, bad field, bad path)
  kUnsupported,      // well-formed but not accepted (image format not allow-listed)
  kTooLarge,         // over a documented limit (bytes, pixels, results)
  kUndecodable,      // an allowed format whose content cannot be decoded
  kNotFound,         // a named thing does not exist
  kModelMismatch,    // vectors or index made by another model
  kIO,               // the file system or database failed
  kInternal,         // a bug: an invariant did not hold
};

const char* to_string(ErrorKind kind) noexcept;

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message)
      : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace lookalike
