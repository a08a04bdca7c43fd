// CPU backend entry points of the semantic stage (internal).
#pragma once

#include "arrcoc/status.h"

namespace arrcoc {
struct SemanticParams;
namespace cpu {

Status encode_semantic(const SemanticParams& p) noexcept;
Status write_semantic_channels(const SemanticParams& p) noexcept;

}  // namespace cpu
}  // namespace arrcoc
