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

namespace {

// One parallel region for all the phases (a fork and join per phase cost more than the small
// phases themselves); every thread meets the same worksharing loops, with implicit barriers.
template <typename T>
void match_layout_typed(const LayoutParams& p) {
  const int n8 = p.hc[0] * p.wc[0];
#if defined(_OPENMP)
#pragma omp parallel num_threads(p.num_threads)
#endif
  {
    if (!p.histograms_ready) {
#if defined(_OPENMP)
#pragma omp for schedule(static)
#endif
      for (int q = 0; q < n8; ++q) layout_histogram_8px<T>(p, q);
    }
    for (int z = 0; z < kLayoutCellSizes; ++z) {
      if (!p.cell_maps[z]) continue;
#if defined(_OPENMP)
#pragma omp for schedule(static)
#endif
      for (int q = 0; q < p.hc[z] * p.wc[z]; ++q) layout_describe_cell(p, z, q);
    }
    for (int k = 0; k < p.num_templates; ++k) {
      const LayoutTemplateParams& t = p.t[k];
      if (t.ha == 0) continue;
      // Row by row: the window sums and the NCC dots run along contiguous rows.
#if defined(_OPENMP)
#pragma omp for schedule(static)
#endif
      for (int r = 0; r < math::kCellStats * t.hc; ++r)
        for (int x = 0; x < t.wa; ++x) layout_row_sum(t, static_cast<int64_t>(r) * t.wa + x);
#if defined(_OPENMP)
#pragma omp for schedule(static)
#endif
      for (int r = 0; r < math::kCellStats * t.ha; ++r)
        for (int x = 0; x < t.wa; ++x) layout_col_sum(t, static_cast<int64_t>(r) * t.wa + x);
#if defined(_OPENMP)
#pragma omp for schedule(static)
#endif
      for (int y = 0; y < t.ha; ++y) layout_ncc_span(t, y, 0, t.wa);
    }
    if (p.layout) {
#if defined(_OPENMP)
#pragma omp for schedule(static)
#endif
      for (int q = 0; q < p.w4 * p.h4; ++q) layout_patch(p, q);
    }
  }
}

}  // namespace

Status match_layout(const LayoutParams& p) noexcept {
  if (p.dtype == DType::kFloat16)
    match_layout_typed<uint16_t>(p);
  else
    match_layout_typed<float>(p);
  return Status::Ok();
}

}  // namespace arrcoc::cpu
