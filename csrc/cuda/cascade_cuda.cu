// CUDA backend of the cluster-first cascade (stage 2): one thread per texel or patch calling
// the shared functions of csrc/shared/cascade_params.h. Sums are integer atomics (exact, so the
// order of the atomics does not change the result), one per run of a cluster's texels; ranking is
// one block, a thread per cluster (<= 256) counting its rank; candidates are placed by rank
// counting (unique keys, so every patch has a distinct rank).
#include <cuda_runtime.h>

#include "../core/cuda_backend.h"
#include "../shared/cascade_params.h"
#include "block_algorithms.cuh"
#include "cuda_check.h"
#include "graph_cache.h"
#include "launch.cuh"

namespace arrcoc::cuda {
namespace {

constexpr int kBlock = 256;
inline int blocks_for(int64_t n) { return static_cast<int>((n + kBlock - 1) / kBlock); }

template <typename T>
__global__ void features_kernel(CascadeParams p) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < static_cast<int64_t>(p.w2) * p.h2) cascade_features<T>(p, i);
}

__global__ void init_seeds_kernel(CascadeParams p) {
  const int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k < p.gx * p.gy) init_seed(p, k);
}

__global__ void assign_kernel(CascadeParams p) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= static_cast<int64_t>(p.w2) * p.h2) return;
  const int i = static_cast<int>(t / p.w2), j = static_cast<int>(t % p.w2);
  p.labels[t] = assign_texel(p, i, j);
}

// Per-cluster sums over the texels: a block's texels are consecutive in a row, where a cluster
// spans runs of texels, so each run sends one atomic per sum (block_add_runs), not each texel.
// (The sums are stored as [cluster][kSeedSums] and [cluster][kStatSums].)
__global__ void seed_sums_kernel(CascadeParams p) {
  __shared__ int keys[kBlock], heads[kBlock];
  __shared__ unsigned long long prefix[kSeedSums * kBlock];
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const bool in = t < static_cast<int64_t>(p.w2) * p.h2;
  unsigned long long terms[kSeedSums] = {};
  if (in) seed_terms(p, static_cast<int>(t / p.w2), static_cast<int>(t % p.w2), terms);
  block_add_runs<kSeedSums>(in ? p.labels[t] : -1, terms, p.seed_sums, keys, heads, prefix);
}

__global__ void update_seeds_kernel(CascadeParams p) {
  const int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k < p.gx * p.gy) update_seed(p, k);
}

template <typename T>
__global__ void cluster_channel_kernel(CascadeParams p, int step, int w, int h) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= static_cast<int64_t>(w) * h) return;
  math::store_texel(static_cast<T*>(p.cluster_out[step]) + t,
                    static_cast<float>(cluster_at_level(p, step, static_cast<int>(t / w), static_cast<int>(t % w))));
}

template <typename T>
__global__ void stat_sums_kernel(CascadeParams p) {
  __shared__ int keys[kBlock], heads[kBlock];
  __shared__ unsigned long long prefix[kStatSums * kBlock];
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const bool in = t < static_cast<int64_t>(p.w2) * p.h2;
  unsigned long long terms[kStatSums] = {};
  if (in) stat_terms<T>(p, static_cast<int>(t / p.w2), static_cast<int>(t % p.w2), terms);
  block_add_runs<kStatSums>(in ? p.labels[t] : -1, terms, p.stat_sums, keys, heads, prefix);
}

// One block, one thread per cluster (<= kMaxSeeds): the two phases of the scores, then each
// cluster's rank at once.
__global__ void score_and_rank_kernel(CascadeParams p) {
  const int k = threadIdx.x, n = p.gx * p.gy;
  if (k < p.top_k) p.kept[k] = -1;
  if (k < n) cluster_means(p, k);
  __syncthreads();
  if (k < n) cluster_saliency_and_rarity(p, k);
  __syncthreads();
  if (k < n) cluster_contrast_and_score(p, k);
  __syncthreads();
  const int r = k < n ? cluster_rank(p, k) : -1;
  if (r >= 0 && r < p.top_k) p.kept[r] = k;
}

template <typename T>
__global__ void patch_kernel(CascadeParams p) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t < static_cast<int64_t>(p.w4) * p.h4) patch_cluster_and_key<T>(p, static_cast<int>(t / p.w4), static_cast<int>(t % p.w4));
}

// Block r places the patches of the r-th kept cluster: rank = patches of that cluster with a
// larger key (keys are unique, so the ranks are too); ranks below per_cluster go to their slot.
// The members are first listed in shared memory (one pass over the patches), so ranking costs
// O(members^2) instead of O(members * patches); a cluster too large for the list is ranked by
// scanning every patch, as before.
constexpr int kSharedMembers = 2048;

__global__ void candidates_kernel(CascadeParams p) {
  __shared__ int members[kSharedMembers];
  __shared__ int count;
  const int r = blockIdx.x;
  const int cluster = p.kept[r];
  if (cluster < 0) return;  // the whole block: no barrier is skipped by part of it
  const int n = p.w4 * p.h4;
  if (threadIdx.x == 0) count = 0;
  __syncthreads();
  for (int q = threadIdx.x; q < n; q += blockDim.x)
    if (p.patch_cluster[q] == cluster) {
      const int slot = atomicAdd(&count, 1);  // list order varies; the ranks do not
      if (slot < kSharedMembers) members[slot] = q;
    }
  __syncthreads();
  const int m = count;
  if (m <= kSharedMembers) {
    for (int a = threadIdx.x; a < m; a += blockDim.x) {
      const int q = members[a];
      const uint64_t key = p.patch_keys[q];
      int rank = 0;
      for (int b = 0; b < m && rank < p.per_cluster; ++b) rank += p.patch_keys[members[b]] > key ? 1 : 0;
      if (rank < p.per_cluster) p.candidates[static_cast<int64_t>(r) * p.per_cluster + rank] = q;
    }
    return;
  }
  for (int q = threadIdx.x; q < n; q += blockDim.x) {
    if (p.patch_cluster[q] != cluster) continue;
    const uint64_t key = p.patch_keys[q];
    int rank = 0;
    for (int o = 0; o < n && rank < p.per_cluster; ++o)
      rank += (p.patch_cluster[o] == cluster && p.patch_keys[o] > key) ? 1 : 0;
    if (rank < p.per_cluster) p.candidates[static_cast<int64_t>(r) * p.per_cluster + rank] = q;
  }
}

template <typename T>
Status run_typed(const CascadeParams& p, cudaStream_t st) {
  const int64_t n2 = static_cast<int64_t>(p.w2) * p.h2;
  const int nseeds = p.gx * p.gy;
  Status s;
#define ARRCOC_LAUNCH(name, grid, ...)                                         \
  launch(name, (grid), kBlock, 0, st)(__VA_ARGS__);                                \
  if (!(s = check(cudaGetLastError(), #name " launch")).ok()) return s;
  ARRCOC_LAUNCH(features_kernel<T>, blocks_for(n2), p)
  ARRCOC_LAUNCH(init_seeds_kernel, blocks_for(nseeds), p)
  for (int it = 0; it < p.iterations; ++it) {
    ARRCOC_LAUNCH(assign_kernel, blocks_for(n2), p)
    if (!(s = check(cudaMemsetAsync(p.seed_sums, 0, sizeof(unsigned long long) * kSeedSums * nseeds, st),
                    "cudaMemsetAsync")).ok())
      return s;
    ARRCOC_LAUNCH(seed_sums_kernel, blocks_for(n2), p)
    ARRCOC_LAUNCH(update_seeds_kernel, blocks_for(nseeds), p)
  }
  ARRCOC_LAUNCH(assign_kernel, blocks_for(n2), p)
  const int ws[3] = {p.w2, p.w3, p.w4}, hs[3] = {p.h2, p.h3, p.h4};
  for (int step = 0; step < 3; ++step) {
    ARRCOC_LAUNCH(cluster_channel_kernel<T>, blocks_for(static_cast<int64_t>(ws[step]) * hs[step]), p, step, ws[step],
                  hs[step])
  }
  if (!(s = check(cudaMemsetAsync(p.stat_sums, 0, sizeof(unsigned long long) * kStatSums * nseeds, st),
                  "cudaMemsetAsync")).ok())
    return s;
  ARRCOC_LAUNCH(stat_sums_kernel<T>, blocks_for(n2), p)
  static_assert(math::kMaxSeeds <= 256 && kBlock >= math::kMaxSeeds, "one thread per cluster in one block");
  ARRCOC_LAUNCH(score_and_rank_kernel, 1, p)
  ARRCOC_LAUNCH(patch_kernel<T>, blocks_for(static_cast<int64_t>(p.w4) * p.h4), p)
  if (!(s = check(cudaMemsetAsync(p.candidates, 0xFF, sizeof(int32_t) * p.top_k * p.per_cluster, st),
                  "cudaMemsetAsync")).ok())
    return s;
  ARRCOC_LAUNCH(candidates_kernel, p.top_k, p)
#undef ARRCOC_LAUNCH
  return Status::Ok();
}

}  // namespace

Status run_cascade(const CascadeParams& p, void* stream) noexcept {
  return run_as_graph(GraphStage::kCascade, p.labels, &p, sizeof p, static_cast<cudaStream_t>(stream), [&](cudaStream_t st) {
    return p.dtype == DType::kFloat16 ? run_typed<uint16_t>(p, st) : run_typed<float>(p, st);
  });
}

}  // namespace arrcoc::cuda
