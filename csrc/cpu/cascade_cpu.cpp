// CPU backend of the cluster-first cascade (stage 2). Per-element work calls the shared
// functions of csrc/shared/cascade_params.h; reductions are sequential integer sums (exact, so
// their order does not matter). Compiled with -ffp-contract=off (see CMakeLists.txt).
#include "cascade_cpu.h"

#include <algorithm>
#include <cstring>

#include "parallel.h"
#include "../shared/cascade_params.h"

namespace arrcoc::cpu {
namespace {

template <typename T>
void run_typed(const CascadeParams& p) {
  const int nt = p.num_threads, w2 = p.w2, h2 = p.h2, nseeds = p.gx * p.gy;
  parallel_for(h2, nt, [&](int i) {
    for (int j = 0; j < w2; ++j) cascade_features<T>(p, static_cast<int64_t>(i) * w2 + j);
  });
  for (int k = 0; k < nseeds; ++k) init_seed(p, k);

  auto assign_all = [&] {
    parallel_for(h2, nt, [&](int i) {
      for (int j = 0; j < w2; ++j) p.labels[static_cast<int64_t>(i) * w2 + j] = assign_texel(p, i, j);
    });
  };
  for (int it = 0; it < p.iterations; ++it) {
    assign_all();
    std::memset(p.seed_sums, 0, sizeof(unsigned long long) * kSeedSums * nseeds);
    for (int i = 0; i < h2; ++i)
      for (int j = 0; j < w2; ++j) {
        unsigned long long t[kSeedSums];
        seed_terms(p, i, j, t);
        unsigned long long* s = p.seed_sums + static_cast<int64_t>(p.labels[static_cast<int64_t>(i) * w2 + j]) * kSeedSums;
        for (int c = 0; c < kSeedSums; ++c) s[c] += t[c];
      }
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
  std::memset(p.stat_sums, 0, sizeof(unsigned long long) * kStatSums * nseeds);
  for (int i = 0; i < h2; ++i)
    for (int j = 0; j < w2; ++j) {
      unsigned long long t[kStatSums];
      stat_terms<T>(p, i, j, t);
      unsigned long long* s = p.stat_sums + static_cast<int64_t>(p.labels[static_cast<int64_t>(i) * w2 + j]) * kStatSums;
      for (int c = 0; c < kStatSums; ++c) s[c] += t[c];
    }
  for (int k = 0; k < nseeds; ++k) p.scores[k] = score_cluster(p, k);
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
