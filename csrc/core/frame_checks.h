// Validation of FrameView and plane geometry per pixel format (internal).
#pragma once

#include <cstdint>
#include <string>

#include "arrcoc/frame.h"
#include "arrcoc/status.h"
#include "arrcoc/texture.h"

namespace arrcoc {

// Bytes of one row of plane `plane` of a `width`-pixel frame.
int64_t plane_row_bytes(PixelFormat f, int plane, int32_t width) noexcept;
// Rows of plane `plane` of a `height`-pixel frame (chroma of 4:2:0 rounds up).
int64_t plane_rows(PixelFormat f, int plane, int32_t height) noexcept;

// Checks format, size (1..max), plane pointers and row strides. `what` names the argument
// in messages ("frame").
Status validate_frame(const FrameView& f, int32_t max_width, int32_t max_height, const char* what) noexcept;

// Checks a TextureView a caller hands a later stage (the C++ API takes any): data, dtype and its
// alignment, a size of at least 1x1, the level layout texture_layout() gives for that size (the
// stages index planes by it), and the level-0 planes every stage may read (kPipelineLevel0Planes).
Status validate_texture_view(const TextureView& t, const char* what) noexcept;

// kInvalidArgument when `ptr` is memory only a CUDA device can read (the host code of a CPU object
// would crash on it): `what` names it, and the message says how to pass it instead.
Status check_host_readable(const void* ptr, const std::string& what) noexcept;

// Checks the n values of a patch-grid channel (a query map): finite, at most kMaxPatchValue in
// magnitude. `what` names them in messages ("query_map", "set_patch_channel: values").
Status validate_patch_values(const float* values, int64_t n, const char* what) noexcept;

}  // namespace arrcoc
