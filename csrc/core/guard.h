// Turns anything thrown inside a public entry point into a Status (internal): no exception
// crosses the public API.
#pragma once

#include <exception>
#include <new>
#include <string>

#include "arrcoc/status.h"

#define ARRCOC_GUARD(...)                                                         \
  try {                                                                            \
    __VA_ARGS__                                                                    \
  } catch (const std::bad_alloc&) {                                                \
    return Status(StatusCode::kOutOfMemory, "out of host memory");                 \
  } catch (const std::exception& e) {                                              \
    return Status(StatusCode::kInternal, std::string("internal error: ") + e.what()); \
  } catch (...) {                                                                  \
    return Status(StatusCode::kInternal, "internal error (unknown exception)");    \
  }
