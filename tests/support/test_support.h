// Small helpers shared by the tests.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "common/error.h"

namespace lookalike {

// Lets GoogleTest print error kinds by name in assertion messages.
inline void PrintTo(ErrorKind kind, std::ostream* os) { *os << to_string(kind); }

}  // namespace lookalike

namespace lookalike::testing {

// The Error thrown by f, or nothing. Any other exception propagates and fails the test.
template <typename F>
std::optional<Error> error_from(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  return std::nullopt;
}

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A fresh folder under the system temp dir, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

void write_bytes(const std::filesystem::path& path, const std::vector<std::uint8_t>& bytes);
void write_text(const std::filesystem::path& path, const std::string& text);
std::string read_text(const std::filesystem::path& path);

// The id of a process that ran and has ended (a child, waited for): what a process
// killed while it held a file looks like afterwards. -1 if fork fails.
long pid_of_an_ended_process();

// A finished program run.
struct Outcome {
  std::string command;  // for failure messages, shell-quoted
  int status = -1;      // exit status, or 128 + signal number
  std::string out;
  std::string err;
};

// Runs argv[0] with the arguments after it (fork/exec, no shell), stdin from /dev/null,
// and returns its exit status, stdout and stderr, captured separately. in_child, when
// given, runs in the child just before exec (to set limits or signal dispositions).
Outcome run_program(const std::vector<std::string>& argv, const std::function<void()>& in_child = {});

// The command, exit status, stderr and (the start of) stdout, for assertion messages.
std::string describe(const Outcome& r);

}  // namespace lookalike::testing
