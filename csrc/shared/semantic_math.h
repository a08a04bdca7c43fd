// Per-element formulas of the built-in, weight-free semantic encoder and of query similarity,
// called by csrc/cpu/semantic_cpu.cpp and csrc/cuda/semantic_cuda.cu; the float64 reference is
// arrcoc_rt.reference.patch_descriptors / similarity_map.
//
// Descriptor of a 16x16-pixel patch (one level-4 texel), from its 8x8 texels at level 1:
//   16 bins: joint histogram of the colour opponents (R-G, B-Y), 4 x 4 bins, edges -0.5, 0, 0.5
//    8 bins: gradient orientation (unsigned, [0, pi)) weighted by gradient magnitude
//    8 bins: luminance, 8 equal bins over [0, 1]
// Each histogram is normalized to sum 1 (orientation: by total magnitude + 1e-6), square-rooted
// (Hellinger: the dot product of two descriptors is then a Bhattacharyya coefficient) and scaled by
// 1/sqrt(3), so a descriptor has unit length and cosine similarity is a dot product.
#pragma once

#include <math.h>

#include "half.h"
#include "hd.h"

namespace arrcoc::math {

constexpr int kDescriptorDims = 32;
constexpr int kColourBins = 4;
constexpr int kOrientBins = 8;
constexpr int kLumBins = 8;

ARRCOC_HD int opponent_bin(float v) { return v < -0.5f ? 0 : v < 0.0f ? 1 : v < 0.5f ? 2 : 3; }

ARRCOC_HD int orientation_bin(float gx, float gy) {
  float a = atan2f(gy, gx);                   // (-pi, pi]
  if (a < 0.0f) a += 3.14159265358979f;        // unsigned orientation: [0, pi)
  const int b = static_cast<int>(a * (static_cast<float>(kOrientBins) / 3.14159265358979f));
  return b < 0 ? 0 : (b >= kOrientBins ? kOrientBins - 1 : b);
}

ARRCOC_HD int luminance_bin(float l) {
  const int b = static_cast<int>(l * static_cast<float>(kLumBins));
  return b < 0 ? 0 : (b >= kLumBins ? kLumBins - 1 : b);
}

// Level-1 planes the descriptor reads (typed by T: float or float16 bits).
template <typename T>
struct DescriptorPlanes {
  const T* rg;   // ch 15
  const T* by;   // ch 16
  const T* gx;   // ch 6
  const T* gy;   // ch 7
  const T* mag;  // ch 8
  const T* lum;  // ch 3
  int w1, h1;    // level-1 size
};

template <typename T>
ARRCOC_HD void patch_descriptor(const DescriptorPlanes<T>& P, int bi, int bj, float* out) {
  float hist[kDescriptorDims];
  for (int k = 0; k < kDescriptorDims; ++k) hist[k] = 0.0f;
  float n = 0.0f, msum = 0.0f;
  const int i1 = 8 * bi + 8 < P.h1 ? 8 * bi + 8 : P.h1, j1 = 8 * bj + 8 < P.w1 ? 8 * bj + 8 : P.w1;
  for (int i = 8 * bi; i < i1; ++i)
    for (int j = 8 * bj; j < j1; ++j) {
      const int64_t t = static_cast<int64_t>(i) * P.w1 + j;
      hist[opponent_bin(load_texel(P.rg + t)) * kColourBins + opponent_bin(load_texel(P.by + t))] += 1.0f;
      const float m = load_texel(P.mag + t);
      hist[16 + orientation_bin(load_texel(P.gx + t), load_texel(P.gy + t))] += m;
      hist[24 + luminance_bin(load_texel(P.lum + t))] += 1.0f;
      n += 1.0f;
      msum += m;
    }
  const float scale = 0.57735026919f;  // 1/sqrt(3)
  for (int k = 0; k < 16; ++k) out[k] = scale * sqrtf(hist[k] / n);
  for (int k = 16; k < 24; ++k) out[k] = scale * sqrtf(hist[k] / (msum + 1e-6f));
  for (int k = 24; k < 32; ++k) out[k] = scale * sqrtf(hist[k] / n);
}

// Cosine similarity of a patch's features (stride `stride` between dims) with a unit query.
ARRCOC_HD float cosine_similarity(const float* f, int64_t stride, const float* query, int dims) {
  float dot = 0.0f, nf = 0.0f, nq = 0.0f;
  for (int k = 0; k < dims; ++k) {
    const float a = f[k * stride], b = query[k];
    dot += a * b;
    nf += a * a;
    nq += b * b;
  }
  const float d = sqrtf(nf) * sqrtf(nq);
  return d > 0.0f ? dot / d : 0.0f;
}

// Largest cosine similarity of a patch's features with any of `count` query vectors
// ([count, dims]): an exemplar is a set of patch descriptors, and a patch of the object matches
// one of its parts rather than their average.
ARRCOC_HD float max_cosine_similarity(const float* f, int64_t stride, const float* queries, int count, int dims) {
  float best = -1.0f;
  for (int k = 0; k < count; ++k) best = maxf(best, cosine_similarity(f, stride, queries + static_cast<int64_t>(k) * dims, dims));
  return count > 0 ? best : 0.0f;
}

}  // namespace arrcoc::math
