// Block-wide reductions and scans in shared memory, used by kernels that would otherwise leave
// work to one thread or send every thread's term to one global address. blockDim.x must be a power
// of two; `shared` holds blockDim.x elements; every thread of the block calls them (they synchronize).
#pragma once

#include <cuda_runtime.h>

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

// sums[key * stride] += every thread's v (key < 0: nothing), with one atomicAdd per run of equal
// keys in thread order instead of one per thread: for keys that repeat along a row, as cluster
// labels do (a cluster spans ~20 level-2 texels of a row at 1080p). Integers: the same sums in any
// order. `keys` and `values` hold blockDim.x elements each.
__device__ inline void block_add_runs(int key, unsigned long long v, unsigned long long* sums, int stride, int* keys,
                                      unsigned long long* values) {
  const int t = threadIdx.x;
  keys[t] = key;
  values[t] = v;
  __syncthreads();
  if (key >= 0 && (t == 0 || keys[t - 1] != key)) {  // the first thread of its run adds the run
    unsigned long long run = 0;
    for (int u = t; u < static_cast<int>(blockDim.x) && keys[u] == key; ++u) run += values[u];
    atomicAdd(sums + static_cast<long long>(key) * stride, run);
  }
  __syncthreads();
}

}  // namespace arrcoc::cuda
