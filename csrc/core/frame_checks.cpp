#include "frame_checks.h"

#include "cuda_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

namespace arrcoc {

int pixel_format_planes(PixelFormat f) noexcept {
  switch (f) {
    case PixelFormat::kNV12: return 2;
    case PixelFormat::kYUV420P:
    case PixelFormat::kRGBP: return 3;
    case PixelFormat::kRGB24:
    case PixelFormat::kBGR24:
    case PixelFormat::kRGBA32:
    case PixelFormat::kBGRA32:
    case PixelFormat::kGRAY8: return 1;
  }
  return 0;  // not a PixelFormat
}

int pixel_format_bytes_per_pixel(PixelFormat f) noexcept {
  switch (f) {
    case PixelFormat::kRGB24:
    case PixelFormat::kBGR24: return 3;
    case PixelFormat::kRGBA32:
    case PixelFormat::kBGRA32: return 4;
    case PixelFormat::kGRAY8:
    case PixelFormat::kNV12:
    case PixelFormat::kYUV420P:
    case PixelFormat::kRGBP: return 1;
  }
  return 0;  // not a PixelFormat
}

const char* pixel_format_name(PixelFormat f) noexcept {
  switch (f) {
    case PixelFormat::kRGB24: return "rgb24";
    case PixelFormat::kBGR24: return "bgr24";
    case PixelFormat::kRGBA32: return "rgba32";
    case PixelFormat::kBGRA32: return "bgra32";
    case PixelFormat::kGRAY8: return "gray8";
    case PixelFormat::kNV12: return "nv12";
    case PixelFormat::kYUV420P: return "yuv420p";
    case PixelFormat::kRGBP: return "rgbp";
  }
  return nullptr;
}

int64_t plane_row_bytes(PixelFormat f, int plane, int32_t width) noexcept {
  const int64_t cw = (static_cast<int64_t>(width) + 1) / 2;
  if (plane == 0 || f == PixelFormat::kRGBP) return static_cast<int64_t>(width) * pixel_format_bytes_per_pixel(f);
  return f == PixelFormat::kNV12 ? 2 * cw : cw;
}

int64_t plane_rows(PixelFormat f, int plane, int32_t height) noexcept {
  return plane == 0 || f == PixelFormat::kRGBP ? height : (static_cast<int64_t>(height) + 1) / 2;
}

Status check_host_readable(const void* ptr, const std::string& what) noexcept {
  const int on = cuda::device_only_memory(ptr);
  if (on < 0) return Status::Ok();
  return Status(StatusCode::kInvalidArgument, what + " is CUDA device memory (cuda:" + std::to_string(on) +
                                                  ") given as host memory: mark it Device::kCUDA for a CUDA object, "
                                                  "or copy it to the host");
}

Status validate_frame(const FrameView& f, int32_t max_width, int32_t max_height, const char* what) noexcept {
  const std::string w = what;
  if (pixel_format_name(f.format) == nullptr)
    return Status(StatusCode::kInvalidArgument,
                  w + ": unknown pixel format " + std::to_string(static_cast<int>(f.format)) +
                      "; expected rgb24, bgr24, rgba32, bgra32, gray8, nv12, yuv420p or rgbp");
  if (f.device != Device::kCPU && f.device != Device::kCUDA)
    return Status(StatusCode::kInvalidArgument, w + ": unknown device " + std::to_string(static_cast<int>(f.device)));
  if (f.width < 1 || f.height < 1)
    return Status(StatusCode::kInvalidArgument, w + ": size " + std::to_string(f.width) + "x" +
                                                    std::to_string(f.height) + " is empty; expected at least 1x1");
  if (f.width > max_width || f.height > max_height)
    return Status(StatusCode::kOutOfRange, w + ": size " + std::to_string(f.width) + "x" + std::to_string(f.height) +
                                               " exceeds the maximum " + std::to_string(max_width) + "x" +
                                               std::to_string(max_height) + " this object was created for");
  const int np = pixel_format_planes(f.format);
  for (int k = 0; k < np; ++k) {
    if (f.planes[k] == nullptr)
      return Status(StatusCode::kInvalidArgument, w + ": plane " + std::to_string(k) + " of " +
                                                      pixel_format_name(f.format) + " is null");
    if (f.device == Device::kCPU) {  // (the FrameView's device left at its default)
      Status s = check_host_readable(f.planes[k], w + ": plane " + std::to_string(k) + ", marked Device::kCPU,");
      if (!s.ok()) return s;
    }
    const int64_t need = plane_row_bytes(f.format, k, f.width);
    if (f.row_stride[k] < need)
      return Status(StatusCode::kInvalidArgument,
                    w + ": plane " + std::to_string(k) + " row stride " + std::to_string(f.row_stride[k]) +
                        " bytes is smaller than one row (" + std::to_string(need) + " bytes for " +
                        std::to_string(f.width) + " " + pixel_format_name(f.format) +
                        " pixels); negative or overlapping strides are not supported");
    // The plane spans (rows - 1) * stride + one row from its start: that must be a size an address
    // space can hold (64-bit user space is at most 2^56 bytes), not one whose index arithmetic
    // overflows or wraps the address.
    const int64_t rows = plane_rows(f.format, k, f.height);
    constexpr int64_t kMaxSpan = int64_t{1} << 56;
    const bool too_far = f.row_stride[k] > (kMaxSpan - need) / std::max<int64_t>(rows - 1, 1) ||
                         reinterpret_cast<uintptr_t>(f.planes[k]) >
                             UINTPTR_MAX - static_cast<uintptr_t>((rows - 1) * f.row_stride[k] + need);
    if (too_far)
      return Status(StatusCode::kInvalidArgument,
                    w + ": plane " + std::to_string(k) + " row stride " + std::to_string(f.row_stride[k]) +
                        " bytes over " + std::to_string(rows) + " rows spans more memory than an address space "
                        "holds; expected the distance in bytes between the starts of two rows");
  }
  return Status::Ok();
}

Status validate_texture_view(const TextureView& t, const char* what) noexcept {
  const std::string w = what;
  if (!t.data) return Status(StatusCode::kInvalidArgument, w + ": data is null (build a texture first)");
  if (t.dtype != DType::kFloat16 && t.dtype != DType::kFloat32)
    return Status(StatusCode::kInvalidArgument, w + ": dtype " + std::to_string(static_cast<int>(t.dtype)) +
                                                    " is not a DType; expected float16 or float32");
  if (reinterpret_cast<uintptr_t>(t.data) % static_cast<uintptr_t>(dtype_size(t.dtype)) != 0)
    return Status(StatusCode::kInvalidArgument, w + ": data is not aligned to its " +
                                                    std::to_string(dtype_size(t.dtype)) +
                                                    "-byte texels (a misaligned load faults on a GPU)");
  if (t.width < 1 || t.height < 1)
    return Status(StatusCode::kInvalidArgument, w + ": size " + std::to_string(t.width) + "x" +
                                                    std::to_string(t.height) + " is empty");
  LevelLayout want[kNumLevels];
  texture_layout(t.width, t.height, want);
  for (int k = 0; k < kNumLevels; ++k)
    if (t.levels[k].width != want[k].width || t.levels[k].height != want[k].height ||
        t.levels[k].offset != want[k].offset || t.levels[k].num_planes != want[k].num_planes)
      return Status(StatusCode::kInvalidArgument,
                    w + ": level " + std::to_string(k) + " is not laid out as texture_layout(" + std::to_string(t.width) +
                        ", " + std::to_string(t.height) + ") gives; pass the view TextureBuilder::build wrote");
  if ((t.level0_kept & kPipelineLevel0Planes) != kPipelineLevel0Planes)
    return Status(StatusCode::kInvalidArgument,
                  w + ": level 0 lacks red, green, blue or motion (level0_kept), which the later stages read");
  return Status::Ok();
}

Status validate_patch_values(const float* values, int64_t n, const char* what) noexcept {
  if (!values) return Status(StatusCode::kInvalidArgument, std::string(what) + " is null");
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(values[i]))
      return Status(StatusCode::kInvalidArgument,
                    std::string(what) + " contains NaN or inf (at " + std::to_string(i) + ")");
    if (std::fabs(values[i]) > kMaxPatchValue)
      return Status(StatusCode::kOutOfRange, std::string(what) + ": value " + std::to_string(values[i]) + " (at " +
                                                 std::to_string(i) + ") is out of range; expected at most " +
                                                 std::to_string(static_cast<int>(kMaxPatchValue)) + " in magnitude");
  }
  return Status::Ok();
}

}  // namespace arrcoc
