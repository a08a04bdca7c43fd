// Portability macros for code compiled both by the host compiler and by nvcc.
#pragma once

#include <math.h>

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define ARRCOC_HD __host__ __device__ __forceinline__
#define ARRCOC_HD_ALWAYS_INLINE __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define ARRCOC_HD inline
// For a per-element function that a CPU loop must inline to vectorize, even where the compiler's
// size heuristics would call it (one call per element, then no vector loop at all).
#define ARRCOC_HD_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ARRCOC_HD inline
#define ARRCOC_HD_ALWAYS_INLINE inline
#endif

// Before a loop along a CPU span (of anchors or cells) that must vectorize with its accumulators
// in registers: GCC would otherwise unroll it completely first and vectorize the copies poorly.
#if defined(__CUDACC__) || !defined(__GNUC__)
#define ARRCOC_SPAN_LOOP
#else
#define ARRCOC_SPAN_LOOP _Pragma("GCC unroll 1")
#endif

// Unroll a loop on the device: arrays indexed by constants stay in registers, not local memory.
#if defined(__CUDA_ARCH__)
#define ARRCOC_DEVICE_UNROLL _Pragma("unroll")
#else
#define ARRCOC_DEVICE_UNROLL
#endif

namespace arrcoc::math {

ARRCOC_HD int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }
ARRCOC_HD float minf(float a, float b) { return a < b ? a : b; }
ARRCOC_HD float maxf(float a, float b) { return a > b ? a : b; }
ARRCOC_HD float absf(float a) { return a < 0.0f ? -a : a; }

// v clamped to [lo, hi], NaN read as 0 (lo <= 0 <= hi): how every stage reads a texel of a texture
// the caller wrote (the C++ API takes any TextureView), so that no float -> int conversion is
// undefined, no integer sum overflows and no NaN reaches an ordering, on any backend. The builder's
// own values lie inside every range used, so its results do not change (docs/RELIABILITY.md).
// Comparisons and selects only: no fminf/fmaxf calls, so per-texel loops stay vectorized.
ARRCOC_HD float clamp_or_zero(float v, float lo, float hi) {
  return v >= lo ? (v <= hi ? v : hi) : (v < lo ? lo : 0.0f);  // NaN fails both tests
}
// The range of a texel read as a statistic (saliency, motion, query similarity, ...): the query's
// own limit (kMaxPatchValue); the builder's statistics lie far inside.
constexpr float kMaxStatTexel = 1.0e4f;
ARRCOC_HD float stat_texel(float v) { return clamp_or_zero(v, -kMaxStatTexel, kMaxStatTexel); }

// Multiply / add that are never fused into an FMA (device intrinsics; host code using them is
// compiled with -ffp-contract=off), for results that must be bit-identical on every backend.
ARRCOC_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
ARRCOC_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

ARRCOC_HD uint32_t float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  return u;
}
ARRCOC_HD float bits_float(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}

}  // namespace arrcoc::math
