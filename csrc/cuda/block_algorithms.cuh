// Block-wide reductions and scans in shared memory, used by kernels that would otherwise leave
// work to one thread or send every thread's term to one global address. blockDim.x must be a power
// of two; `shared` holds blockDim.x elements; every thread of the block calls them (they synchronize).
#pragma once

#include <cuda_runtime.h>

#include "../shared/texture_math.h"

namespace arrcoc::cuda {

// op over every thread's v, returned to all of them.
template <typename V, typename Op>
__device__ V block_reduce(V v, V* shared, Op op) {
  const int t = threadIdx.x;
  shared[t] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (t < s) shared[t] = op(shared[t], shared[t + s]);
    __syncthreads();
  }
  const V out = shared[0];
  __syncthreads();
  return out;
}

template <typename V>
__device__ V block_sum(V v, V* shared) {
  return block_reduce(v, shared, [](V a, V b) { return a + b; });
}

// math::repetition_gain of values[0..n) by the block (the threads take every blockDim.x-th value):
// its exact sum and largest value give the loop's bits in any order. Returned to every thread.
__device__ inline float block_repetition_gain(const float* values, int n, unsigned long long* sums, float* peaks) {
  unsigned long long sum = 0;
  float peak = 0.0f;
  for (int b = threadIdx.x; b < n; b += blockDim.x) {
    const float v = math::exact_sum_value(values[b]);
    sum += math::exact_sum_term(v);
    peak = math::maxf(peak, v);
  }
  sum = block_sum(sum, sums);
  peak = block_reduce(peak, peaks, [](float a, float b) { return math::maxf(a, b); });
  return math::repetition_gain_from(sum, peak, n);
}

// Exclusive prefix sum of v over the block's threads in thread order (Hillis-Steele); *total
// gets the sum of all of them. Used to compact a list in order: thread t writes at its prefix.
__device__ inline int block_exclusive_scan(int v, int* shared, int* total) {
  const int t = threadIdx.x;
  shared[t] = v;
  __syncthreads();
  for (int offset = 1; offset < static_cast<int>(blockDim.x); offset <<= 1) {
    const int before = t >= offset ? shared[t - offset] : 0;
    __syncthreads();
    shared[t] += before;
    __syncthreads();
  }
  *total = shared[blockDim.x - 1];
  const int out = shared[t] - v;
  __syncthreads();
  return out;
}

// sums[key * kSums + c] += every thread's v[c] (key < 0: nothing), with one atomicAdd per run of
// equal keys in thread order instead of one per thread: for keys that repeat along a row, as
// cluster labels do. No thread walks a run: block-wide prefix sums of the values and a max-scan of
// the run heads give each run's total to its last thread (integers, so prefix differences are
// exact, wrapping included). `keys`, `heads`: blockDim.x ints; `prefix`: kSums * blockDim.x.
template <int kSums>
__device__ void block_add_runs(int key, const unsigned long long (&v)[kSums], unsigned long long* sums, int* keys,
                               int* heads, unsigned long long* prefix) {
  const int t = threadIdx.x, n = blockDim.x;
  keys[t] = key;
  __syncthreads();
  heads[t] = t == 0 || keys[t - 1] != key ? t : 0;  // after the max-scan: the first thread of t's run
  for (int c = 0; c < kSums; ++c) prefix[c * n + t] = v[c];
  __syncthreads();
  for (int offset = 1; offset < n; offset <<= 1) {
    int head = heads[t];
    unsigned long long before[kSums];
    if (t >= offset) {
      head = max(head, heads[t - offset]);
      for (int c = 0; c < kSums; ++c) before[c] = prefix[c * n + t - offset];
    }
    __syncthreads();
    if (t >= offset) {
      heads[t] = head;
      for (int c = 0; c < kSums; ++c) prefix[c * n + t] += before[c];
    }
    __syncthreads();
  }
  if (key >= 0 && (t == n - 1 || keys[t + 1] != key)) {  // the last thread of its run
    const int h = heads[t];
    for (int c = 0; c < kSums; ++c)
      atomicAdd(sums + static_cast<long long>(key) * kSums + c, prefix[c * n + t] - (h > 0 ? prefix[c * n + h - 1] : 0ull));
  }
  __syncthreads();
}

}  // namespace arrcoc::cuda
