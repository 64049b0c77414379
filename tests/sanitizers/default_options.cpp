// Built into every executable of a LOOKALIKE_SANITIZE build (CMakeLists.txt): the
// sanitizer runtimes call these before main, so the options and the committed
// suppression files apply however a binary is started (ctest, gtest discovery at
// build time, by hand), with no environment to remember.
// LOOKALIKE_SANITIZER_DIR is tests/sanitizers in the source tree.

extern "C" {

const char* __asan_default_options() {
  // Leaks are reported by LeakSanitizer at exit; a finding fails the test.
  return "detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0:strict_string_checks=1";
}

const char* __lsan_default_options() {
  return "suppressions=" LOOKALIKE_SANITIZER_DIR "/lsan.supp:print_suppressions=0";
}

const char* __ubsan_default_options() {
  return "print_stacktrace=1:halt_on_error=1:suppressions=" LOOKALIKE_SANITIZER_DIR "/ubsan.supp";
}
}
