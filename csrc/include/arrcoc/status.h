// Error reporting for the public API: every call that can fail returns a Status.
// No exception ever leaves a public function (they are all noexcept), so a C++ host
// that embeds arrcoc is never taken down by bad input. A failed call leaves its outputs as they
// were: `create(config, &out)` that fails does not touch `out` (an object it held stays usable).
#pragma once

#include <string>
#include <utility>

#include "arrcoc/export.h"

// The API passes std::string (in Status) and std::unique_ptr across its boundary: a program must
// use the C++ standard library and ABI the library was built with (GCC's libstdc++, C++11 ABI).
// The old ABI links (the function names do not carry it) and then crashes, so it is refused here.
#if defined(_GLIBCXX_USE_CXX11_ABI) && !_GLIBCXX_USE_CXX11_ABI
#error "arrcoc is built with libstdc++'s C++11 ABI; do not define _GLIBCXX_USE_CXX11_ABI=0 when including it"
#endif

namespace arrcoc {

enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument = 1,  // wrong format, dtype, shape, stride or value
  kOutOfRange = 2,       // a size or coordinate outside what the object was created for
  kNotBuiltWithCuda = 3, // CUDA requested but this build has no CUDA backend
  kNoCudaDevice = 4,     // CUDA backend built, but no usable GPU / driver at run time
  kCudaError = 5,        // a CUDA runtime call or kernel launch failed
  kOutOfMemory = 6,      // an allocation at creation time failed
  kInternal = 7,         // a bug in arrcoc: please report it
};

// [[nodiscard]]: a call whose Status is dropped is a compiler warning (the API never throws, so an
// ignored Status is an ignored error).
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return Status(); }

  bool ok() const noexcept { return code_ == StatusCode::kOk; }
  StatusCode code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Name of a status code ("InvalidArgument", ...), for logs.
ARRCOC_API const char* status_code_name(StatusCode code) noexcept;

}  // namespace arrcoc
