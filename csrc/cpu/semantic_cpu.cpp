// CPU backend of the semantic stage: one loop per patch over csrc/shared/semantic_params.h.
#include "semantic_cpu.h"

#include "../shared/semantic_params.h"
#include "parallel.h"

namespace arrcoc::cpu {

Status encode_semantic(const SemanticParams& p) noexcept {
  const int n = p.w4 * p.h4;
  if (p.dtype == DType::kFloat16)
    parallel_for(n, p.num_threads, [&](int q) { encode_patch<uint16_t>(p, q); });
  else
    parallel_for(n, p.num_threads, [&](int q) { encode_patch<float>(p, q); });
  return Status::Ok();
}

Status write_semantic_channels(const SemanticParams& p) noexcept {
  const int n = p.w4 * p.h4;
  if (p.dtype == DType::kFloat16)
    parallel_for(n, p.num_threads, [&](int q) { semantic_channels_patch<uint16_t>(p, q); });
  else
    parallel_for(n, p.num_threads, [&](int q) { semantic_channels_patch<float>(p, q); });
  return Status::Ok();
}

}  // namespace arrcoc::cpu
