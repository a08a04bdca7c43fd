// CPU backend entry point of the cluster-first cascade (internal).
#pragma once

#include "arrcoc/status.h"

namespace arrcoc {
struct CascadeParams;
namespace cpu {

Status run_cascade(const CascadeParams& p) noexcept;

}  // namespace cpu
}  // namespace arrcoc
