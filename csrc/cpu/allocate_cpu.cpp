// CPU backend of stages 3-6: per-candidate and per-token steps call csrc/shared/allocate_params.h;
// ordering statistics use nth_element / partial_sort (the CUDA backend ranks by counting, which
// gives the same values and the same order).
#include "allocate_cpu.h"

#include <algorithm>
#include <cstring>

#include "parallel.h"
#include "texel_rows.h"
#include "../shared/allocate_params.h"

namespace arrcoc::cpu {
namespace {

// Value at sorted index k of values[0..n), using `tmp` (n floats) as scratch.
float sorted_at(const float* values, int n, int k, float* tmp) {
  std::copy(values, values + n, tmp);
  std::nth_element(tmp, tmp + k, tmp + n);
  return tmp[k];
}

// Token t's glimpse (3 planes of P x P) from its level's R, G, B planes. The taps are separable
// (2P per token) and every sample is sample_taps' lerp(lerp(a, b, tx), lerp(c, d, tx), ty): the
// window of texels the samples read (about (P + 1)^2) is converted to float once, each of its rows
// is interpolated along x at the P columns, and each glimpse row mixes two of those along y. Away
// from the plane's edges the taps step by one texel, and both steps run in vector lanes.
template <typename T>
void gather_glimpse(const AllocateParams& p, int t, float* g) {
  constexpr int kMaxSide = 64, kMaxWindow = kMaxSide + 2;  // glimpse_size <= 64, checked at creation
  const int P = p.cfg.glimpse_size, level = p.levels[t];
  if (P < 1 || P > kMaxSide) return;  // refused at creation
  if (level < 0) {
    std::fill(g, g + 3 * P * P, 0.0f);
    return;
  }
  math::BilinearTap tx[kMaxSide], ty[kMaxSide];
  for (int u = 0; u < P; ++u) {
    tx[u] = glimpse_tap(p, t, 0, u);
    ty[u] = glimpse_tap(p, t, 1, u);
  }
  // Taps are non-decreasing in u (clamped at the edges): the window spans the first to the last.
  const int c0 = tx[0].i0, r0 = ty[0].i0;
  const int ww = tx[P - 1].i1 - c0 + 1, wh = ty[P - 1].i1 - r0 + 1;
  const int w = p.lw[level];
  if (ww > kMaxWindow || wh > kMaxWindow) {  // not expected (taps one texel apart); stay exact anyway
    for (int c = 0; c < 3; ++c)
      for (int v = 0; v < P; ++v)
        for (int u = 0; u < P; ++u)
          g[(c * P + v) * P + u] = math::sample_taps(static_cast<const T*>(p.rgb[level][c]), w, tx[u], ty[v]);
    return;
  }
  bool unit_steps = true;  // column taps c0 + u and c0 + u + 1: contiguous loads
  float fx[kMaxSide];
  for (int u = 0; u < P; ++u) {
    unit_steps &= tx[u].i0 == c0 + u && tx[u].i1 == c0 + u + 1;
    fx[u] = tx[u].t;
  }
  float window[kMaxWindow * kMaxWindow], along_x[kMaxWindow * kMaxSide];
  for (int c = 0; c < 3; ++c) {
    const T* plane = static_cast<const T*>(p.rgb[level][c]);
    for (int r = 0; r < wh; ++r) load_row(plane + static_cast<int64_t>(r0 + r) * w + c0, window + r * ww, ww);
    for (int r = 0; r < wh; ++r) {
      const float* in = window + r * ww;
      float* out = along_x + r * P;
      if (unit_steps)
        for (int u = 0; u < P; ++u) out[u] = math::lerp(in[u], in[u + 1], fx[u]);
      else
        for (int u = 0; u < P; ++u) out[u] = math::lerp(in[tx[u].i0 - c0], in[tx[u].i1 - c0], fx[u]);
    }
    for (int v = 0; v < P; ++v) {
      const float* a = along_x + (ty[v].i0 - r0) * P;
      const float* b = along_x + (ty[v].i1 - r0) * P;
      const float fy = ty[v].t;
      float* out = g + (c * P + v) * P;
      for (int u = 0; u < P; ++u) out[u] = math::lerp(a[u], b[u], fy);
    }
  }
}

// The first `take` of indices[0..n) ranked by value (desc, then index).
void rank_first(int32_t* indices, int n, int take, const float* value) {
  std::partial_sort(indices, indices + take, indices + n,
                    [&](int a, int b) { return ranks_before(value[a], a, value[b], b); });
}

template <typename T>
void run_typed(const AllocateParams& p) {
  const int nt = p.num_threads, npatch = p.w4 * p.h4;
  // Scene cut: the share of level-0 pixels with strong motion.
  int64_t moving = 0;
  if (p.motion_valid) {
    // Per-row counts summed afterwards (integers: exact in any order); rows in parallel.
    const int w = p.width;
    const T* motion0 = static_cast<const T*>(p.motion0);
    const float cut_motion = p.cfg.cut_motion;
    int32_t* row_counts = p.row_counts;
    parallel_for(p.height, nt, [&](int y) {
      const T* row = motion0 + static_cast<int64_t>(y) * w;
      int32_t c = 0;
      for (int x0 = 0; x0 < w; x0 += 256) {  // float chunks: the count vectorizes
        const int n = std::min(256, w - x0);
        float values[256];
        load_row(row + x0, values, n);
        for (int x = 0; x < n; ++x) c += values[x] > cut_motion ? 1 : 0;
      }
      row_counts[y] = c;
    });
    for (int y = 0; y < p.height; ++y) moving += row_counts[y];
  }
  // Structure sums (integers: exact; a few thousand patches, one pass).
  for (int k = 0; k < kAllSums; ++k) p.structure_sums[k] = 0;
  for (int q = 0; q < npatch; ++q) {
    unsigned long long t[kMotionSums];
    motion_terms<T>(p, q, t);
    for (int k = 0; k < kMotionSums; ++k) p.structure_sums[k] += t[k];
    if (p.context_on)  // the context network's gestalt, in the same pass (only when it runs)
      for (int k = 0; k < kGestaltChannels; ++k) p.structure_sums[kStructureSums + k] += gestalt_term<T>(p, q, k);
  }
  for (int q = 0; q < npatch; ++q) {
    unsigned long long t[kStructureSums - kMotionSums];
    structure_terms<T>(p, q, t);
    for (int k = 0; k < kStructureSums - kMotionSums; ++k) p.structure_sums[kMotionSums + k] += t[k];
  }
  const bool cut = is_scene_cut(p, moving);
  parallel_for(npatch, nt, [&](int q) { carry_patch<T>(p, q, cut); });

  const int n = compact_candidates(p);
  for (int i = 0; i < n; ++i) load_features<T>(p, i);

  // Stage 3: robust bounds per component, then the three scores and the MLP.
  for (int c = 0; c < kNumComp; ++c) {
    const float* v = p.feat[component_feature(c)];
    const bool rank = n && component_needed(p.cfg, c);
    p.lohi[2 * c] = rank ? sorted_at(v, n, component_low_rank(c, n), p.div) : 0.0f;  // div: scratch until below
    p.lohi[2 * c + 1] = rank ? sorted_at(v, n, component_high_rank(c, n), p.div) : 0.0f;
  }
  parallel_for(n, nt, [&](int i) { three_scores(p, i); });
  const float info_gain = math::repetition_gain(p.info, n);
  context_step(p, n, info_gain);
  parallel_for(n, nt, [&](int i) { info_gain_and_raw(p, i, info_gain); });

  // Stage 4 (fused): diversity, opponent mix, normalization, temporal blend, selection, budgets.
  const int k = std::min(math::diversity_k(n), n);
  for (int i = 0; i < n; ++i) p.ranked[i] = i;
  rank_first(p.ranked, n, k, p.raw);
  std::copy(p.ranked, p.ranked + k, p.kbest);
  float dmax = 0.0f;
  for (int i = 0; i < n; ++i) {
    p.div[i] = nearest_best_distance(p, i, k);
    dmax = std::max(dmax, p.div[i]);
  }
  float bmin = 3.0e38f, bmax = -3.0e38f;
  for (int i = 0; i < n; ++i) {
    p.div[i] = dmax > 0.0f ? p.div[i] / dmax : 0.0f;
    p.bal[i] = math::opponent_mix(p.weights->w, p.info[i], p.sal[i], p.query[i], p.raw[i], p.div[i]);
    bmin = std::min(bmin, p.bal[i]);
    bmax = std::max(bmax, p.bal[i]);
  }
  for (int i = 0; i < n; ++i) {
    p.bal[i] = bmax > bmin ? (p.bal[i] - bmin) / (bmax - bmin) : 0.5f;
    relevance_and_key<T>(p, i, cut);
  }
  int ne = 0;
  for (int i = 0; i < n; ++i)
    if (p.eligible[i]) p.ranked[ne++] = i;
  const int take = std::min(p.cfg.saccades, ne);
  rank_first(p.ranked, ne, take, p.rank_key);
  std::copy(p.ranked, p.ranked + take, p.order);
  double total = 0.0;
  for (int s = 0; s < take; ++s) {
    p.budget[s] = saccade_raw_budget(p, s);
    total += p.budget[s];
  }
  const float scale = total > p.room ? static_cast<float>(p.room / total) : 1.0f;
  int64_t lods = 0;
  for (int s = 0; s < take; ++s) {
    p.budget[s] = saccade_scaled_budget(p, s, scale);
    p.lod[s] = saccade_lod(p, s);
    lods += p.lod[s];
  }
  int kept = take;
  while (kept > 0 && lods > p.room) lods -= p.lod[--kept];  // drop the lowest-scoring saccades

  // Outputs: counters, per-slot scores, relevance carried on, texture channels 37-39.
  p.counters[0] = n;
  p.counters[1] = cut ? 1 : 0;
  p.counters[2] = kept;
  p.counters[3] = static_cast<int32_t>(std::min<int64_t>(moving, 0x7fffffff));
  for (int s = 0; s < p.capacity; ++s) clear_slot(p, s);
  for (int i = 0; i < n; ++i) publish_candidate<T>(p, i);
  for (int q = 0; q < npatch; ++q) math::store_texel(static_cast<T*>(p.out_rel4) + q, p.new_rel[q]);

  // Stage 6: tokens, homunculus, glimpses.
  for (int t = 0; t < p.num_tokens; ++t) write_token<T>(p, t, kept, p.has_history && !cut);
  for (int t = 0; t < p.num_tokens; ++t)
    if (p.patches[t] >= 0) p.homunculus[p.patches[t]] += static_cast<float>(p.budgets[t]);
  const int P = p.cfg.glimpse_size;
  parallel_for(p.num_tokens, nt, [&](int t) { gather_glimpse<T>(p, t, p.glimpses + static_cast<int64_t>(t) * 3 * P * P); });
}

}  // namespace

Status run_allocation(const AllocateParams& p) noexcept {
  if (p.dtype == DType::kFloat16)
    run_typed<uint16_t>(p);
  else
    run_typed<float>(p);
  return Status::Ok();
}

}  // namespace arrcoc::cpu
