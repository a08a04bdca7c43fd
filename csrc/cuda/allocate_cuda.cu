// CUDA backend of stages 3-6. The balance/temporal/allocation step is one fused kernel: a single
// block of up to 1024 threads, one per candidate; percentiles and rankings by rank counting
// (same values and order as the CPU's nth_element / partial_sort), sums by block reductions, the
// candidate list by block-wide scans: no step runs on one thread over a whole list.
// Per-patch and per-token work runs in small grid kernels. Everything is on the caller's stream.
#include <cuda_runtime.h>

#include "../core/cuda_backend.h"
#include "../shared/allocate_params.h"
#include "block_algorithms.cuh"
#include "cuda_check.h"
#include "graph_cache.h"
#include "launch.cuh"

namespace arrcoc::cuda {
namespace {

constexpr int kFused = 1024;  // threads of the fused kernel (>= max_candidates)
// Balancer sums live per thread (balance_mlp): 64 would spill under kFused's 64-register limit; 32
// spills on no architecture of CMakeLists.txt's list (16 spills 4 bytes on sm_75; ptxas_report.py).
constexpr int kMlpChunk = 32;
constexpr int kBlock = 256;
inline int blocks_for(int64_t n) { return static_cast<int>((n + kBlock - 1) / kBlock); }

// Counts and sums over the frame: each block adds its threads' terms first, then sends one atomic
// per sum (one per moving pixel or patch into the same address serialized them).
template <typename T>
__global__ void motion_count_kernel(AllocateParams p) {
  __shared__ int part[kBlock];
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const bool moving =
      p.motion_valid && i < static_cast<int64_t>(p.width) * p.height && plane_value<T>(p.motion0, i) > p.cfg.cut_motion;
  const int count = block_sum(moving ? 1 : 0, part);
  if (threadIdx.x == 0 && count) atomicAdd(p.counters + 3, count);
}

// The scene cut's structure test in two passes (integers: atomics in any order give the same sums).
template <typename T>
__global__ void motion_sum_kernel(AllocateParams p) {
  __shared__ unsigned long long part[kBlock];
  const int q = blockIdx.x * blockDim.x + threadIdx.x;
  unsigned long long t[kMotionSums] = {};
  if (q < p.w4 * p.h4) motion_terms<T>(p, q, t);
  for (int k = 0; k < kMotionSums; ++k) {
    const unsigned long long sum = block_sum(t[k], part);
    if (threadIdx.x == 0) atomicAdd(p.structure_sums + k, sum);
  }
}

template <typename T>
__global__ void structure_kernel(AllocateParams p) {
  __shared__ unsigned long long part[kBlock];
  const int q = blockIdx.x * blockDim.x + threadIdx.x;
  unsigned long long t[kStructureSums - kMotionSums] = {};
  if (q < p.w4 * p.h4) structure_terms<T>(p, q, t);
  for (int k = 0; k < kStructureSums - kMotionSums; ++k) {
    const unsigned long long sum = block_sum(t[k], part);
    if (threadIdx.x == 0) atomicAdd(p.structure_sums + kMotionSums + k, sum);
  }
}

// The context network's gestalt sums: a block's exact integer sums, then one atomic per channel.
template <typename T>
__global__ void gestalt_kernel(AllocateParams p) {
  __shared__ unsigned long long part[kBlock];
  const int q = blockIdx.x * blockDim.x + threadIdx.x;
  for (int k = 0; k < kGestaltChannels; ++k) {
    const unsigned long long sum = block_sum(q < p.w4 * p.h4 ? gestalt_term<T>(p, q, k) : 0ull, part);
    if (threadIdx.x == 0) atomicAdd(p.structure_sums + kStructureSums + k, sum);
  }
}

template <typename T>
__global__ void carry_kernel(AllocateParams p) {
  const int q = blockIdx.x * blockDim.x + threadIdx.x;
  if (q < p.w4 * p.h4) carry_patch<T>(p, q, is_scene_cut(p, p.counters[3]));
}

// Rank of element i by value (desc, then index) among the first n, counting only `mask`ed ones.
__device__ int rank_of(const float* value, const int32_t* mask, int n, int i) {
  int r = 0;
  for (int j = 0; j < n; ++j)
    if ((!mask || mask[j]) && ranks_before(value[j], j, value[i], i)) ++r;
  return r;
}

// compact_candidates() (allocate_params.h) as a block-wide algorithm with the same result: the
// same candidates in the same order. Each list is cut into tiles of blockDim.x entries; a tile's
// entries are placed by an exclusive scan of their flags. One thread walked the slots and twice
// every patch (16,000 dependent reads at 1080p). `scan` holds blockDim.x ints.
__device__ int compact_candidates_block(const AllocateParams& p, int* scan) {
  const int t = threadIdx.x, step = blockDim.x;
  // The cascade's slots: a patch in several slots is the candidate of the first; that slot wins
  // the atomicMax of capacity - s (is_candidate starts at 0: carry_kernel).
  for (int s = t; s < p.capacity; s += step)
    if (slot_in_grid(p, s)) atomicMax(p.is_candidate + p.slots[s], p.capacity - s);
  __syncthreads();
  int n = 0;
  for (int base = 0; base < p.capacity; base += step) {
    const int s = base + t;
    const bool first = s < p.capacity && slot_in_grid(p, s) && p.is_candidate[p.slots[s]] == p.capacity - s;
    int total;
    const int at = n + block_exclusive_scan(first ? 1 : 0, scan, &total);
    if (first) {
      p.cand[at] = p.slots[s];
      p.slot_of[at] = s;
    }
    n += total;
  }
  __syncthreads();
  for (int k = t; k < n; k += step) p.is_candidate[p.cand[k]] = 1;  // as the CPU leaves it
  __syncthreads();
  if (p.cfg.strategy == SaccadeStrategy::kRandom) return n;
  // Then the patches that pass `extra`, in patch order, up to max_candidates. A thread reads and
  // writes only its own patches' is_candidate, here and in the next call (the same tiling).
  auto append = [&](auto extra) {
    const int npatch = p.w4 * p.h4;
    for (int base = 0; base < npatch && n < p.cfg.max_candidates; base += step) {
      const int q = base + t;
      const bool add = q < npatch && extra(q) && !p.is_candidate[q];
      int total;
      const int at = n + block_exclusive_scan(add ? 1 : 0, scan, &total);
      if (add && at < p.cfg.max_candidates) {
        p.cand[at] = q;
        p.slot_of[at] = -1;
        p.is_candidate[q] = 1;
      }
      n = min(n + total, p.cfg.max_candidates);
    }
  };
  append([&](int q) { return held_a_saccade(p, q); });
  append([&](int q) { return looks_like_text(p, q); });
  __syncthreads();
  return n;
}

template <typename T>
__global__ void __launch_bounds__(kFused) fused_allocate_kernel(AllocateParams p) {
  __shared__ double dred[kFused];
  __shared__ float fred[kFused];
  __shared__ int ired[kFused];
  __shared__ unsigned long long ured[kFused];
  const int i = threadIdx.x;
  const bool cut = is_scene_cut(p, p.counters[3]);
  const int n = compact_candidates_block(p, ired);
  const bool mine = i < n;
  if (mine) load_features<T>(p, i);
  __syncthreads();

  // robust bounds: the elements whose ascending rank is low_index / high_index
  for (int c = 0; c < kNumComp; ++c) {
    const float* v = p.feat[component_feature(c)];
    if (!component_needed(p.cfg, c)) {
      if (i == 0) p.lohi[2 * c] = p.lohi[2 * c + 1] = 0.0f;
    } else if (mine) {
      int r = 0;
      for (int j = 0; j < n; ++j) r += (v[j] < v[i] || (v[j] == v[i] && j < i)) ? 1 : 0;
      if (r == component_low_rank(c, n)) p.lohi[2 * c] = v[i];
      if (r == component_high_rank(c, n)) p.lohi[2 * c + 1] = v[i];
    }
  }
  __syncthreads();
  if (mine) three_scores(p, i);
  __syncthreads();
  // the information scores' repetition gain: an exact sum (the CPU's bits in any order)
  const float info_gain = block_repetition_gain(p.info, n, ured, fred);
  if (p.context_on) {  // context_step (allocate_params.h) on the block: exact sums, a thread per unit
    __shared__ float ctx_x[kContextInputs], ctx_hidden[kContextHidden], ctx_z[3];
    unsigned long long terms[3] = {0, 0, 0}, sums[3];
    if (mine) context_score_terms(p, i, info_gain, terms);
    for (int c = 0; c < 3; ++c) sums[c] = block_sum(terms[c], ured);
    if (i == 0) context_inputs(p, n, sums, ctx_x);
    __syncthreads();
    for (int j = i; j < kContextHidden; j += blockDim.x) ctx_hidden[j] = math::context_hidden(p.weights->w, ctx_x, j);
    __syncthreads();
    if (i < 3) ctx_z[i] = math::context_logit(p.weights->w, ctx_hidden, i);
    __syncthreads();
    if (i == 0) math::context_softmax(ctx_z, p.context);
  } else if (i < 3) {
    p.context[i] = 1.0f / 3.0f;
  }
  __syncthreads();
  if (mine) info_gain_and_raw<kMlpChunk>(p, i, info_gain);
  __syncthreads();

  const int k = min(math::diversity_k(n), n);
  if (mine) {
    const int r = rank_of(p.raw, nullptr, n, i);
    if (r < k) p.kbest[r] = i;
  }
  __syncthreads();
  if (mine) p.div[i] = nearest_best_distance(p, i, k);
  const float dmax = block_reduce(mine ? p.div[i] : 0.0f, fred, [](float a, float b) { return fmaxf(a, b); });
  if (mine) {
    p.div[i] = dmax > 0.0f ? p.div[i] / dmax : 0.0f;
    p.bal[i] = math::opponent_mix(p.weights->w, p.info[i], p.sal[i], p.query[i], p.raw[i], p.div[i]);
  }
  const float bmin = block_reduce(mine ? p.bal[i] : 3.0e38f, fred, [](float a, float b) { return fminf(a, b); });
  const float bmax = block_reduce(mine ? p.bal[i] : -3.0e38f, fred, [](float a, float b) { return fmaxf(a, b); });
  if (mine) {
    p.bal[i] = bmax > bmin ? (p.bal[i] - bmin) / (bmax - bmin) : 0.5f;
    relevance_and_key<T>(p, i, cut);
  }
  __syncthreads();

  const int ne = static_cast<int>(block_reduce(static_cast<double>(mine && p.eligible[i]), dred,
                                               [](double a, double b) { return a + b; }));
  const int take = min(p.cfg.saccades, ne);
  if (mine && p.eligible[i]) {
    const int r = rank_of(p.rank_key, p.eligible, n, i);
    if (r < take) p.order[r] = i;
  }
  __syncthreads();
  double b = 0.0;
  if (i < take) {
    p.budget[i] = saccade_raw_budget(p, i);
    b = p.budget[i];
  }
  const double total = block_reduce(b, dred, [](double x, double y) { return x + y; });
  const float scale = total > p.room ? static_cast<float>(p.room / total) : 1.0f;
  double lod = 0.0;
  if (i < take) {
    p.budget[i] = saccade_scaled_budget(p, i, scale);
    p.lod[i] = saccade_lod(p, i);
    lod = p.lod[i];
  }
  const double lods = block_reduce(lod, dred, [](double x, double y) { return x + y; });
  if (i == 0) {
    int kept = take;
    int64_t sum = static_cast<int64_t>(lods);
    while (kept > 0 && sum > p.room) sum -= p.lod[--kept];  // drop the lowest-scoring saccades
    p.counters[0] = n;
    p.counters[1] = cut ? 1 : 0;
    p.counters[2] = kept;
  }
  for (int s = i; s < p.capacity; s += blockDim.x) clear_slot(p, s);
  __syncthreads();
  if (mine) publish_candidate<T>(p, i);
  for (int t = i; t < p.num_tokens; t += blockDim.x) write_token<T>(p, t, p.counters[2], p.has_history && !cut);
}

template <typename T>
__global__ void finish_patches_kernel(AllocateParams p) {
  const int q = blockIdx.x * blockDim.x + threadIdx.x;
  if (q < p.w4 * p.h4) math::store_texel(static_cast<T*>(p.out_rel4) + q, p.new_rel[q]);
}

__global__ void homunculus_kernel(AllocateParams p) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t < p.num_tokens && p.patches[t] >= 0) atomicAdd(p.homunculus + p.patches[t], static_cast<float>(p.budgets[t]));
}

template <typename T>
__global__ void glimpse_kernel(AllocateParams p) {
  const int P = p.cfg.glimpse_size;
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= static_cast<int64_t>(p.num_tokens) * 3 * P * P) return;
  const int u = static_cast<int>(e % P), v = static_cast<int>((e / P) % P), c = static_cast<int>((e / (P * P)) % 3);
  const int t = static_cast<int>(e / (3 * P * P));
  p.glimpses[e] = glimpse_sample<T>(p, t, c, v, u);
}

template <typename T>
Status run_typed(const AllocateParams& p, cudaStream_t st) {
  Status s = check(cudaMemsetAsync(p.counters, 0, 4 * sizeof(int32_t), st), "cudaMemsetAsync");
  if (!s.ok()) return s;
  if (!(s = check(cudaMemsetAsync(p.structure_sums, 0, kAllSums * sizeof(unsigned long long), st), "cudaMemsetAsync")).ok())
    return s;
  const int npatch = p.w4 * p.h4;
  const int P = p.cfg.glimpse_size;
  launch(motion_count_kernel<T>, blocks_for(static_cast<int64_t>(p.width) * p.height), kBlock, 0, st)(p);
  if (!(s = check(cudaGetLastError(), "motion_count_kernel launch")).ok()) return s;
  launch(motion_sum_kernel<T>, blocks_for(npatch), kBlock, 0, st)(p);
  launch(structure_kernel<T>, blocks_for(npatch), kBlock, 0, st)(p);
  if (!(s = check(cudaGetLastError(), "structure_kernel launch")).ok()) return s;
  if (p.context_on) {
    launch(gestalt_kernel<T>, blocks_for(npatch), kBlock, 0, st)(p);
    if (!(s = check(cudaGetLastError(), "gestalt_kernel launch")).ok()) return s;
  }
  launch(carry_kernel<T>, blocks_for(npatch), kBlock, 0, st)(p);
  if (!(s = check(cudaGetLastError(), "carry_kernel launch")).ok()) return s;
  launch(fused_allocate_kernel<T>, 1, kFused, 0, st)(p);
  if (!(s = check(cudaGetLastError(), "fused_allocate_kernel launch")).ok()) return s;
  launch(finish_patches_kernel<T>, blocks_for(npatch), kBlock, 0, st)(p);
  if (!(s = check(cudaGetLastError(), "finish_patches_kernel launch")).ok()) return s;
  launch(homunculus_kernel, blocks_for(p.num_tokens), kBlock, 0, st)(p);
  if (!(s = check(cudaGetLastError(), "homunculus_kernel launch")).ok()) return s;
  launch(glimpse_kernel<T>, blocks_for(static_cast<int64_t>(p.num_tokens) * 3 * P * P), kBlock, 0, st)(p);
  return check(cudaGetLastError(), "glimpse_kernel launch");
}

__global__ void gather_kernel(const float* features, int C, int h, int w, const float* positions,
                              const int32_t* levels, int tokens, int width, int height, float* out) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= static_cast<int64_t>(tokens) * C) return;
  const int t = static_cast<int>(e / C), c = static_cast<int>(e % C);
  out[e] = math::gather_feature(features, c, h, w, positions[2 * t], positions[2 * t + 1], levels[t], width, height);
}

}  // namespace

Status gather_features(const float* features, int channels, int h, int w, const float* positions,
                       const int32_t* levels, int tokens, int width, int height, float* out, void* stream) noexcept {
  launch(gather_kernel, blocks_for(static_cast<int64_t>(tokens) * channels), kBlock, 0, static_cast<cudaStream_t>(stream))(
      features, channels, h, w, positions, levels, tokens, width, height, out);
  return check(cudaGetLastError(), "gather_kernel launch");
}

Status run_allocation(const AllocateParams& p, void* stream) noexcept {
  // The frame index counts up every frame but only the random strategy reads it: elsewhere it
  // must not make every frame's parameters new (the graph would never be replayed).
  AllocateParams key = p;
  if (p.cfg.strategy != SaccadeStrategy::kRandom) key.frame_index = 0;
  return run_as_graph(GraphStage::kAllocation, p.glimpses, &key, sizeof key, static_cast<cudaStream_t>(stream),
                      [&](cudaStream_t st) {
                        return p.dtype == DType::kFloat16 ? run_typed<uint16_t>(p, st) : run_typed<float>(p, st);
                      });
}

}  // namespace arrcoc::cuda
