// Replays the fuzz regression corpus (tests/fuzz/corpus/<target>/*) through the
// same entry points the fuzzers run: an input that once crashed, hung or leaked
// must now be handled (an entry point aborts on anything unexpected). Runs in the
// normal build, with gcc, and under the sanitizers in CI.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "fuzz/targets.h"

namespace lookalike::fuzz {
namespace {

namespace fs = std::filesystem;

std::vector<std::uint8_t> read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), {});
}

class FuzzCorpus : public ::testing::TestWithParam<Target> {};

TEST_P(FuzzCorpus, EveryInputIsHandled) {
  const fs::path dir = fs::path(LOOKALIKE_FUZZ_CORPUS) / GetParam().name;
  ASSERT_TRUE(fs::is_directory(dir)) << dir << " is missing: every target keeps a corpus";
  std::size_t inputs = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    const auto bytes = read_all(entry.path());
    SCOPED_TRACE(entry.path().string());
    const auto start = std::chrono::steady_clock::now();
    GetParam().run(bytes.data(), bytes.size());
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10))
        << entry.path() << " took too long (a hang the fuzzer found?)";
    ++inputs;
  }
  EXPECT_GT(inputs, 0u) << dir << " is empty";
}

INSTANTIATE_TEST_SUITE_P(Targets, FuzzCorpus, ::testing::ValuesIn(targets()),
                         [](const ::testing::TestParamInfo<Target>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace lookalike::fuzz
