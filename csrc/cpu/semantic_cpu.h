// CPU backend entry points of the semantic stage (internal).
#pragma once

#include "arrcoc/status.h"

namespace arrcoc {
struct SemanticParams;
struct LayoutParams;
namespace cpu {

Status encode_semantic(const SemanticParams& p) noexcept;
Status write_semantic_channels(const SemanticParams& p) noexcept;
Status match_layout(const LayoutParams& p) noexcept;

}  // namespace cpu
}  // namespace arrcoc
