// CPU backend entry point of stages 3-6 (internal).
#pragma once

#include "arrcoc/status.h"

namespace arrcoc {
struct AllocateParams;
namespace cpu {

Status run_allocation(const AllocateParams& p) noexcept;

}  // namespace cpu
}  // namespace arrcoc
