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
  if (!(a == a)) a = 0.0f;                     // NaN (a caller's texture): bin 0, a defined conversion
  if (a < 0.0f) a += 3.14159265358979f;        // unsigned orientation: [0, pi)
  const int b = static_cast<int>(a * (static_cast<float>(kOrientBins) / 3.14159265358979f));
  return b < 0 ? 0 : (b >= kOrientBins ? kOrientBins - 1 : b);
}

ARRCOC_HD int luminance_bin(float l) {
  const int b = static_cast<int>(clamp_or_zero(l, 0.0f, 1.0f) * static_cast<float>(kLumBins));  // NaN: bin 0
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

// Raw histogram of a cell: the 32 bins unnormalized, then the texel count and the magnitude sum.
// Raw histograms of adjacent cells add up to their union's (exemplar layout builds its 16- and
// 32-px cells from the 8-px ones this way).
constexpr int kRawHistogram = kDescriptorDims + 2;

// Descriptor dim from its raw bin and its part's total (histogram_total): normalized,
// square-rooted, scaled by 1/sqrt(3).
ARRCOC_HD float histogram_value(float raw, float total) { return 0.57735026919f * sqrtf(raw / total); }

// The total that dim k is normalized by: the texel count, or for the orientation bins (16..23) the
// magnitude sum.
ARRCOC_HD float histogram_total(int k, float n, float msum) { return k >= 16 && k < 24 ? msum + 1e-6f : n; }

// Descriptor from a raw histogram (one loop per part, so each vectorizes).
ARRCOC_HD void normalize_histogram(const float* raw, float* out) {
  const float n = raw[kDescriptorDims], msum = raw[kDescriptorDims + 1];
  ARRCOC_DEVICE_UNROLL
  for (int k = 0; k < 16; ++k) out[k] = histogram_value(raw[k], histogram_total(k, n, msum));
  ARRCOC_DEVICE_UNROLL
  for (int k = 16; k < 24; ++k) out[k] = histogram_value(raw[k], histogram_total(k, n, msum));
  ARRCOC_DEVICE_UNROLL
  for (int k = 24; k < 32; ++k) out[k] = histogram_value(raw[k], histogram_total(k, n, msum));
}

// hist[bin] += v on the device: every bin is updated at a constant index (adding +0.0 to the
// others: bins are sums from +0.0, so they are unchanged bit for bit), which keeps the histogram in
// registers; a data-dependent index would put it in local memory.
template <int Bins>
ARRCOC_HD void add_to_bin(float* hist, int bin, float v) {
  ARRCOC_DEVICE_UNROLL
  for (int k = 0; k < Bins; ++k) hist[k] += k == bin ? v : 0.0f;
}

// Adds level-1 texel t to a raw histogram's 32 bins; returns its gradient magnitude (for the
// magnitude sum).
template <typename T>
ARRCOC_HD float add_texel(const DescriptorPlanes<T>& P, int64_t t, float* hist) {
#if defined(__CUDA_ARCH__)
  add_to_bin<16>(hist, opponent_bin(load_texel(P.rg + t)) * kColourBins + opponent_bin(load_texel(P.by + t)), 1.0f);
  const float m = clamp_or_zero(load_texel(P.mag + t), 0.0f, kMaxStatTexel);  // finite histograms, any texture
  add_to_bin<kOrientBins>(hist + 16, orientation_bin(load_texel(P.gx + t), load_texel(P.gy + t)), m);
  add_to_bin<kLumBins>(hist + 24, luminance_bin(load_texel(P.lum + t)), 1.0f);
#else  // the CPU indexes its histogram (on the stack) directly
  hist[opponent_bin(load_texel(P.rg + t)) * kColourBins + opponent_bin(load_texel(P.by + t))] += 1.0f;
  const float m = clamp_or_zero(load_texel(P.mag + t), 0.0f, kMaxStatTexel);  // finite histograms, any texture
  hist[16 + orientation_bin(load_texel(P.gx + t), load_texel(P.gy + t))] += m;
  hist[24 + luminance_bin(load_texel(P.lum + t))] += 1.0f;
#endif
  return m;
}

// Raw histogram of a cell of `cell` x `cell` level-1 texels at cell (bi, bj) (cell 8: a 16-px
// patch), its texels in row-major order.
template <typename T>
ARRCOC_HD void cell_histogram(const DescriptorPlanes<T>& P, int bi, int bj, int cell, float* raw) {
  float* hist = raw;
  ARRCOC_DEVICE_UNROLL
  for (int k = 0; k < kDescriptorDims; ++k) hist[k] = 0.0f;
  float n = 0.0f, msum = 0.0f;
  const int i1 = cell * bi + cell < P.h1 ? cell * bi + cell : P.h1;
  const int j1 = cell * bj + cell < P.w1 ? cell * bj + cell : P.w1;
  for (int i = cell * bi; i < i1; ++i)
    for (int j = cell * bj; j < j1; ++j) {
      msum += add_texel(P, static_cast<int64_t>(i) * P.w1 + j, hist);
      n += 1.0f;
    }
  raw[kDescriptorDims] = n;
  raw[kDescriptorDims + 1] = msum;
}

template <typename T>
ARRCOC_HD void cell_descriptor(const DescriptorPlanes<T>& P, int bi, int bj, int cell, float* out) {
  float raw[kRawHistogram];
  cell_histogram(P, bi, bj, cell, raw);
  normalize_histogram(raw, out);
}

template <typename T>
ARRCOC_HD void patch_descriptor(const DescriptorPlanes<T>& P, int bi, int bj, float* out) {
  cell_descriptor(P, bi, bj, 8, out);
}

// Cosine similarity of a patch's features (stride `stride` between dims) with a unit query.
// Features from a caller's encoder may be any finite floats: where a squared norm leaves
// [2^-100, 2^100] (its sums could have overflowed to inf, giving 0 or NaN, or lost the small
// components to underflow), both vectors are divided by their largest magnitude first, which
// leaves the cosine unchanged. Features of ordinary size never take that branch.
ARRCOC_HD float cosine_similarity(const float* f, int64_t stride, const float* query, int dims) {
  float dot = 0.0f, nf = 0.0f, nq = 0.0f;
  for (int k = 0; k < dims; ++k) {
    const float a = f[k * stride], b = query[k];
    dot += a * b;
    nf += a * a;
    nq += b * b;
  }
  constexpr float kLow = 7.8886091e-31f, kHigh = 1.2676506e30f;  // 2^-100, 2^100
  if (!(nf >= kLow && nf <= kHigh && nq >= kLow && nq <= kHigh)) {
    float mf = 0.0f, mq = 0.0f;
    for (int k = 0; k < dims; ++k) {
      mf = maxf(mf, fabsf(f[k * stride]));
      mq = maxf(mq, fabsf(query[k]));
    }
    if (!(mf > 0.0f && mq > 0.0f)) return 0.0f;  // a zero vector (or NaN, which no caller passes)
    dot = nf = nq = 0.0f;
    for (int k = 0; k < dims; ++k) {  // divisions, not a reciprocal: 1 / a subnormal overflows
      const float a = f[k * stride] / mf, b = query[k] / mq;
      dot += a * b;
      nf += a * a;
      nq += b * b;
    }
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


// ---------------------------------------------------------------------------------------------
// Exemplar layout matching. An exemplar is also kept as descriptor maps ("templates": [32, th, tw]
// cells of 8, 16 or 32 px, at several scales), matched against the frame's cell descriptors by
// zero-mean normalized cross-correlation over the whole window (cells x dims). A bag of patch
// histograms cannot tell a thin object from its background when the exemplar's box holds both;
// the layout can. Float64 reference: arrcoc_rt.reference.layout_similarity.

constexpr int kCellStats = kDescriptorDims + 1;  // the cell maps hold the 32 dims, then |d|^2
constexpr float kLayoutWeight = 0.7f;     // ch 33 = (1 - w) * bag + w * max(0, layout)

// NCC at one anchor from its dot with the zero-mean template (norm `tnorm`) and the window's sums
// over its n cells: `sum_sq` = sum_k (sum d_k)^2 over the 32 dims, `energy` = sum |d|^2. The
// window's centred energy is energy - sum_sq / n. A flat window (no energy) or a flat template
// scores 0.
ARRCOC_HD float layout_ncc(float dot, float tnorm, float sum_sq, float energy, int n) {
  const float centred = energy - sum_sq / static_cast<float>(n);
  const float d = tnorm * sqrtf(maxf(centred, 0.0f));
  return d > 1e-6f ? dot / d : 0.0f;
}

// NCC of the zero-mean template `tz` ([32, th, tw], norm `tnorm`) on the frame's cell map `cells`
// ([kCellStats, hc, wc]) at the N anchors (y, x0 .. x0 + N - 1), into out[0 .. N). The window sums
// are taken in the same pass over the window as the dot (no window-sum planes, no extra passes),
// and the innermost loop runs along the N anchors: on the CPU N = 16, whose sums stay in vector
// registers; a CUDA thread takes N = 1.
template <int N>
ARRCOC_HD void layout_ncc_n(const float* __restrict__ cells, int hc, int wc, const float* __restrict__ tz,
                            float tnorm, int th, int tw, int y, int x0, float* __restrict__ out) {
  const int64_t plane = static_cast<int64_t>(hc) * wc;
  float dot[N], sum_sq[N], energy[N];
  ARRCOC_SPAN_LOOP
  for (int x = 0; x < N; ++x) dot[x] = sum_sq[x] = energy[x] = 0.0f;
  for (int k = 0; k < kDescriptorDims; ++k) {
    float sum[N];
    ARRCOC_SPAN_LOOP
    for (int x = 0; x < N; ++x) sum[x] = 0.0f;
    for (int i = 0; i < th; ++i) {
      const float* __restrict__ row = cells + k * plane + static_cast<int64_t>(y + i) * wc + x0;
      const float* __restrict__ trow = tz + (static_cast<int64_t>(k) * th + i) * tw;
      for (int j = 0; j < tw; ++j) {
        const float t = trow[j];
        ARRCOC_SPAN_LOOP
        for (int x = 0; x < N; ++x) {
          dot[x] += t * row[j + x];
          sum[x] += row[j + x];
        }
      }
    }
    ARRCOC_SPAN_LOOP
    for (int x = 0; x < N; ++x) sum_sq[x] += sum[x] * sum[x];
  }
  for (int i = 0; i < th; ++i) {
    const float* __restrict__ row = cells + kDescriptorDims * plane + static_cast<int64_t>(y + i) * wc + x0;
    for (int j = 0; j < tw; ++j) {
      ARRCOC_SPAN_LOOP
      for (int x = 0; x < N; ++x) energy[x] += row[j + x];
    }
  }
  ARRCOC_SPAN_LOOP
  for (int x = 0; x < N; ++x) out[x] = layout_ncc(dot[x], tnorm, sum_sq[x], energy[x], th * tw);
}

// A template's layout similarity on 16-px patch (pi, pj): the best NCC of any placement that covers
// one of the patch's cells (8-px cells: f x f of them) or the cell that holds it (16, 32 px);
// -1 when none. The anchors covering any of f x f cells form one (th + f - 1) x (tw + f - 1)
// rectangle, so the max is taken once over it rather than per cell.
ARRCOC_HD float layout_patch_value(const float* ncc, int ha, int wa, int th, int tw, int cell_px, int pi, int pj) {
  int c0y, c1y, c0x, c1x;  // the cells, inclusive
  if (cell_px >= 16) {
    const int f = cell_px / 16;
    c0y = c1y = pi / f;
    c0x = c1x = pj / f;
  } else {
    const int f = 16 / cell_px;
    c0y = pi * f;
    c1y = c0y + f - 1;
    c0x = pj * f;
    c1x = c0x + f - 1;
  }
  const int y0 = c0y - th + 1 > 0 ? c0y - th + 1 : 0, y1 = c1y < ha - 1 ? c1y : ha - 1;
  const int x0 = c0x - tw + 1 > 0 ? c0x - tw + 1 : 0, x1 = c1x < wa - 1 ? c1x : wa - 1;
  float best = -1.0f;
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x) best = maxf(best, ncc[static_cast<int64_t>(y) * wa + x]);
  return best;
}

// Channel 33 with a layout: the bag-of-patches similarity mixed with the positive layout match.
ARRCOC_HD float exemplar_similarity(float bag, float layout) {
  return (1.0f - kLayoutWeight) * bag + kLayoutWeight * maxf(layout, 0.0f);
}

}  // namespace arrcoc::math
