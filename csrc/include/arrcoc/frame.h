// A non-owning view of one video frame, as decoders and cameras hand it over.
// Plain data only (no CUDA types), so it can be copied by value into a CUDA kernel.
#pragma once

#include <cstdint>

#include "arrcoc/export.h"

namespace arrcoc {

enum class Device : int32_t {
  kCPU = 0,
  kCUDA = 1,
};

enum class PixelFormat : int32_t {
  kRGB24 = 0,    // 1 plane, R G B interleaved, 8 bit
  kBGR24 = 1,    // 1 plane, B G R interleaved (OpenCV order)
  kRGBA32 = 2,   // 1 plane, R G B A interleaved; alpha ignored
  kBGRA32 = 3,   // 1 plane, B G R A interleaved; alpha ignored
  kGRAY8 = 4,    // 1 plane, luma only; R = G = B = gray
  kNV12 = 5,     // 2 planes: Y (w x h), interleaved UV (ceil(w/2) pairs x ceil(h/2) rows)
  kYUV420P = 6,  // 3 planes: Y (w x h), U and V (ceil(w/2) x ceil(h/2) each)
  kRGBP = 7,     // 3 planes: R, G, B (w x h each; a [3, H, W] tensor, as torchcodec and torchvision give)
};

// Number of planes a pixel format uses (1, 2 or 3; 0 for a value that is not a PixelFormat).
ARRCOC_API int pixel_format_planes(PixelFormat f) noexcept;
// Bytes per pixel of plane 0 for packed formats (3 or 4; 1 for gray, the Y plane of YUV and each
// plane of RGBP; 0 for a value that is not a PixelFormat).
ARRCOC_API int pixel_format_bytes_per_pixel(PixelFormat f) noexcept;
// "rgb24", "bgr24", ...; nullptr for an unknown value.
ARRCOC_API const char* pixel_format_name(PixelFormat f) noexcept;

// YUV formats are interpreted as BT.601 limited range (what swscale assumes by default)
// and converted to 8-bit RGB with integer arithmetic, identically on every backend.
struct FrameView {
  const uint8_t* planes[3] = {nullptr, nullptr, nullptr};  // base pointer of each plane
  int64_t row_stride[3] = {0, 0, 0};  // bytes from one row to the next, per plane (> 0)
  int32_t width = 0;                  // pixels
  int32_t height = 0;                 // pixels
  PixelFormat format = PixelFormat::kRGB24;
  Device device = Device::kCPU;       // where the planes live
  int32_t cuda_device = 0;            // device ordinal of the planes when device == kCUDA
  void* cuda_stream = nullptr;        // cudaStream_t the producer used; nullptr = legacy default
};

}  // namespace arrcoc
