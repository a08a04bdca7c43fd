// CPU backend of the semantic stage: one loop per patch over csrc/shared/semantic_params.h.
#include "semantic_cpu.h"

#include "../shared/semantic_params.h"
#include "parallel.h"

namespace arrcoc::cpu {
namespace {

constexpr int kCellSpan = 64;   // cells described at once (vectorized along a row)
constexpr int kAnchorSpan = 16;  // anchors matched at once (their sums stay in vector registers)

// NCC along anchor row y of template t: spans of kAnchorSpan, the last one moved back to end at the
// row's end (its overlap is computed twice, the same way); rows narrower than a span one by one.
void layout_ncc_row(const LayoutTemplateParams& t, int y) {
  if (t.wa < kAnchorSpan) {
    for (int x = 0; x < t.wa; ++x) layout_ncc_span<1>(t, y, x);
    return;
  }
  for (int x = 0; x < t.wa; x += kAnchorSpan)
    layout_ncc_span<kAnchorSpan>(t, y, x + kAnchorSpan <= t.wa ? x : t.wa - kAnchorSpan);
}

}  // namespace

Status encode_semantic(const SemanticParams& p) noexcept {
  const int n = p.w4 * p.h4;
  if (p.raw16 && !p.carry) {  // an exemplar layout read the texels: normalize its 16-px cells
    parallel_for((n + kCellSpan - 1) / kCellSpan, p.num_threads, [&](int r) {
      const int q0 = r * kCellSpan;
      describe_cells<kCellSpan>(p.raw16, n, q0, n - q0 < kCellSpan ? n - q0 : kCellSpan, p.features, false);
    }, 2);
    return Status::Ok();
  }
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

// The phases in order, each a loop over the shared pool (whose workers are already running: a
// loop costs a wake-up, not a thread start).
template <typename T>
void match_layout_typed(const LayoutParams& p) {
  const int nt = p.num_threads;
  if (!p.histograms_ready) {
    const int spans = (p.wc[0] + kCellSpan - 1) / kCellSpan;
    parallel_for(p.hc[0] * spans, nt, [&](int r) {
      const int i = r / spans, j = (r % spans) * kCellSpan;
      layout_histogram_8px<T, kCellSpan>(p, i, j, p.wc[0] - j < kCellSpan ? p.wc[0] - j : kCellSpan);
    }, 2);
  }
  for (int z = p.histograms_ready ? 2 : 1; z < kLayoutCellSizes; ++z)
    if (p.raw[z]) parallel_for(p.hc[z], nt, [&](int i) { layout_add_up_cells(p, z, i, 0, p.wc[z]); }, 2);
  for (int z = 0; z < kLayoutCellSizes; ++z) {
    if (!p.cell_maps[z]) continue;
    const int cells = p.hc[z] * p.wc[z];
    parallel_for((cells + kCellSpan - 1) / kCellSpan, nt, [&](int r) {
      const int q0 = r * kCellSpan;
      layout_describe_cells<kCellSpan>(p, z, q0, cells - q0 < kCellSpan ? cells - q0 : kCellSpan);
    }, 2);
  }
  // The anchor rows of all templates, as one loop: row r of template k is r - first_row[k]. The
  // pool's chunks are claimed as threads free up, which balances rows of different widths.
  int first_row[kMaxLayoutTemplates + 1] = {0};
  for (int k = 0; k < p.num_templates; ++k) first_row[k + 1] = first_row[k] + p.t[k].ha;
  parallel_for(first_row[p.num_templates], nt, [&](int r) {
    int k = 0;
    while (r >= first_row[k + 1]) ++k;
    layout_ncc_row(p.t[k], r - first_row[k]);
  }, 2);
  if (p.layout) parallel_for(p.w4 * p.h4, nt, [&](int q) { layout_patch(p, q); }, 2);
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
