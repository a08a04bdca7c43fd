// CPU backend entry point of the texture stage (internal).
#pragma once

#include "arrcoc/status.h"

namespace arrcoc {
struct TextureParams;
namespace cpu {

// Runs every pass of the texture stage on the host. All pointers in `p` are host memory.
Status build_texture(const TextureParams& p) noexcept;

}  // namespace cpu
}  // namespace arrcoc
