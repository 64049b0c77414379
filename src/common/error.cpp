#include "common/error.h"

namespace lookalike {

const char* to_string(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::kInvalidInput: return "invalid_input";
    case ErrorKind::kUnsupported: return "unsupported";
    case ErrorKind::kTooLarge: return "too_large";
    case ErrorKind::kUndecodable: return "undecodable";
    case ErrorKind::kNotFound: return "not_found";
    case ErrorKind::kModelMismatch: return "model_mismatch";
    case ErrorKind::kIO: return "io";
    case ErrorKind::kInternal: return "internal";
  }
  return "internal";
}

}  // namespace lookalike
