// libFuzzer entry: one binary per target, LOOKALIKE_FUZZ_ENTRY names it (CMake).
#include "fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  lookalike::fuzz::LOOKALIKE_FUZZ_ENTRY(data, size);
  return 0;
}
