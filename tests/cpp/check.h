// The C++ tests' one assertion helper: counts checks, reports each failure, never stops early
// (main() returns non-zero when any failed; see finish()).
#pragma once

#include <cstdio>
#include <string>

namespace arrcoc_test {

inline int g_checks = 0, g_failures = 0;

inline void check(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    std::fprintf(stderr, "FAILED: %s\n", what.c_str());
  }
}

// "N checks, M failed" and the exit code for main().
inline int finish() {
  std::printf("%d checks, %d failed\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}

}  // namespace arrcoc_test
