// CPU backend of the cluster-first cascade (stage 2). Per-element work calls the shared
// functions of csrc/shared/cascade_params.h; reductions are sequential integer sums (exact, so
// their order does not matter). Compiled with -ffp-contract=off (see CMakeLists.txt).
#include "cascade_cpu.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "parallel.h"
#include "../shared/cascade_params.h"

namespace arrcoc::cpu {
namespace {

// Labels of level-2 row i; the same labels as assign_texel() for every texel. Texels of one
// grid cell share their 3x3 candidate seeds, so each run of texels is scored seed by seed (seeds
// in increasing index, strictly smaller distance wins: ties keep the lower index, as in
// slic_assign), an inner loop over texels that the compiler vectorizes.
// Distance is math::slic_distance (any texture) or math::slic_distance_narrow (the same values
// where math::slic_narrow_ok holds: 1.5x faster here).
template <typename Distance>
void assign_row(const CascadeParams& p, int i, Distance distance) {
  constexpr int kRun = 128;
  const int w2 = p.w2, h2 = p.h2, gx = p.gx, gy = p.gy;
  const int64_t n = static_cast<int64_t>(w2) * h2, row = static_cast<int64_t>(i) * w2;
  const int32_t* c0 = p.colour + row;
  const int32_t* c1 = p.colour + n + row;
  const int32_t* c2 = p.colour + 2 * n + row;
  const int cy = math::cell_y(i, h2, gy);
  int a0, a1;
  math::neighbour_cells(cy, gy, &a0, &a1);
  const int y16 = i * math::kPosScale + math::kPosScale / 2;
  decltype(distance(math::Seed{}, nullptr, 0, 0)) best_d[kRun];
  int32_t best_k[kRun];
  for (int js = 0; js < w2;) {
    const int cx = math::cell_x(js, w2, gx);
    // The cell's last column + 1: cell_x(j) = j * gx / w2 <= cx exactly for j < ceil((cx + 1) * w2 / gx)
    // (one division per run; a division per texel took a tenth of the cascade).
    const int cell_end = static_cast<int>((static_cast<int64_t>(cx + 1) * w2 + gx - 1) / gx);
    const int je = std::min({w2, js + kRun, cell_end});
    int b0, b1;
    math::neighbour_cells(cx, gx, &b0, &b1);
    const int len = je - js;
    bool first = true;
    for (int a = a0; a <= a1; ++a)
      for (int b = b0; b <= b1; ++b) {
        const int k = a * gx + b;
        const math::Seed s = p.seeds[k];
        for (int t = 0; t < len; ++t) {
          const int j = js + t;
          const int c[3] = {c0[j], c1[j], c2[j]};
          const auto d = distance(s, c, j * math::kPosScale + math::kPosScale / 2, y16);
          const bool take = first || d < best_d[t];
          best_d[t] = take ? d : best_d[t];
          best_k[t] = take ? k : best_k[t];
        }
        first = false;
      }
    std::memcpy(p.labels + row + js, best_k, sizeof(int32_t) * len);
    js = je;
  }
}

// sums[k][0..ns) = sum over the level-2 texels labelled k of terms(i, j, out[ns]). Rows are split
// into one band per thread, each summing into its own slice of p.partial_sums; the slices are then
// added. Integer sums: the same result in any order (and the same as the CUDA atomics).
template <int ns, typename Terms>
void sum_by_label(const CascadeParams& p, unsigned long long* sums, Terms terms) {
  const int nseeds = p.gx * p.gy, h2 = p.h2, w2 = p.w2;
  const int bands = std::max(1, std::min(p.num_threads, h2));
  parallel_for(bands, p.num_threads, [&](int b) {
    unsigned long long* part = p.partial_sums + static_cast<int64_t>(b) * math::kMaxSeeds * ns;
    std::memset(part, 0, sizeof(unsigned long long) * ns * nseeds);
    const int i0 = static_cast<int>(static_cast<int64_t>(h2) * b / bands);
    const int i1 = static_cast<int>(static_cast<int64_t>(h2) * (b + 1) / bands);
    for (int i = i0; i < i1; ++i)
      for (int j = 0; j < w2; ++j) {
        unsigned long long t[ns];
        terms(i, j, t);
        unsigned long long* s = part + static_cast<int64_t>(p.labels[static_cast<int64_t>(i) * w2 + j]) * ns;
        for (int c = 0; c < ns; ++c) s[c] += t[c];
      }
  }, /*min_parallel=*/2);
  std::memset(sums, 0, sizeof(unsigned long long) * ns * nseeds);
  for (int b = 0; b < bands; ++b) {
    const unsigned long long* part = p.partial_sums + static_cast<int64_t>(b) * math::kMaxSeeds * ns;
    for (int k = 0; k < ns * nseeds; ++k) sums[k] += part[k];
  }
}

template <typename T>
void run_typed(const CascadeParams& p) {
  const int nt = p.num_threads, w2 = p.w2, h2 = p.h2, nseeds = p.gx * p.gy;
  std::atomic<bool> narrow{true};  // slic_narrow_ok for every row's colours (and the level's size)
  parallel_for(h2, nt, [&](int i) {
    for (int j = 0; j < w2; ++j) cascade_features<T>(p, static_cast<int64_t>(i) * w2 + j);
    const int64_t n = static_cast<int64_t>(w2) * h2;
    int lo = 0, hi = 0;
    for (int c = 0; c < 3; ++c) {
      const int32_t* row = p.colour + c * n + static_cast<int64_t>(i) * w2;
      for (int j = 0; j < w2; ++j) {
        lo = std::min(lo, row[j]);
        hi = std::max(hi, row[j]);
      }
    }
    if (!math::slic_narrow_ok(w2, h2, p.s16_sq, p.m_sq, lo, hi)) narrow.store(false, std::memory_order_relaxed);
  });
  for (int k = 0; k < nseeds; ++k) init_seed(p, k);

  const bool use_narrow = narrow.load();  // after the loop: every row has checked its colours
  const uint32_t s16_sq = static_cast<uint32_t>(p.s16_sq), m_sq = static_cast<uint32_t>(p.m_sq);
  auto assign_all = [&] {
    if (use_narrow)
      parallel_for(h2, nt, [&](int i) {
        assign_row(p, i, [=](const math::Seed& s, const int c[3], int x16, int y16) {
          return math::slic_distance_narrow(s, c, x16, y16, s16_sq, m_sq);
        });
      });
    else
      parallel_for(h2, nt, [&](int i) {
        assign_row(p, i, [&](const math::Seed& s, const int c[3], int x16, int y16) {
          return math::slic_distance(s, c, x16, y16, p.s16_sq, p.m_sq);
        });
      });
  };
  for (int it = 0; it < p.iterations; ++it) {
    assign_all();
    sum_by_label<kSeedSums>(p, p.seed_sums, [&](int i, int j, unsigned long long* t) { seed_terms(p, i, j, t); });
    for (int k = 0; k < nseeds; ++k) update_seed(p, k);
  }
  assign_all();

  // Channel 13 at levels 2, 3, 4.
  const int ws[3] = {p.w2, p.w3, p.w4}, hs[3] = {p.h2, p.h3, p.h4};
  for (int step = 0; step < 3; ++step)
    parallel_for(hs[step], nt, [&](int i) {
      T* row = static_cast<T*>(p.cluster_out[step]) + static_cast<int64_t>(i) * ws[step];
      for (int j = 0; j < ws[step]; ++j)
        math::store_texel(row + j, static_cast<float>(cluster_at_level(p, step, i, j)));
    });

  // Cluster statistics, scores, the kept clusters.
  sum_by_label<kStatSums>(p, p.stat_sums, [&](int i, int j, unsigned long long* t) { stat_terms<T>(p, i, j, t); });
  for (int k = 0; k < nseeds; ++k) cluster_means(p, k);
  for (int k = 0; k < nseeds; ++k) cluster_saliency_and_rarity(p, k);
  for (int k = 0; k < nseeds; ++k) cluster_contrast_and_score(p, k);
  rank_clusters(p);

  // Candidates: the best patches of each kept cluster (keys are unique: no ties).
  parallel_for(p.h4, nt, [&](int bi) {
    for (int bj = 0; bj < p.w4; ++bj) patch_cluster_and_key<T>(p, bi, bj);
  });
  std::fill(p.candidates, p.candidates + static_cast<int64_t>(p.top_k) * p.per_cluster, -1);
  const int npatch = p.w4 * p.h4;
  for (int r = 0; r < p.top_k && p.kept[r] >= 0; ++r) {
    int n = 0;
    for (int q = 0; q < npatch; ++q)
      if (p.patch_cluster[q] == p.kept[r]) p.members[n++] = q;
    const int take = std::min(p.per_cluster, n);
    std::partial_sort(p.members, p.members + take, p.members + n,
                      [&](int a, int b) { return p.patch_keys[a] > p.patch_keys[b]; });
    std::copy(p.members, p.members + take, p.candidates + static_cast<int64_t>(r) * p.per_cluster);
  }
}

}  // namespace

Status run_cascade(const CascadeParams& p) noexcept {
  try {
    if (p.dtype == DType::kFloat16)
      run_typed<uint16_t>(p);
    else
      run_typed<float>(p);
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "cascade: out of host memory");
  }
  return Status::Ok();
}

}  // namespace arrcoc::cpu
