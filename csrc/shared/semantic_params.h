// Parameter block of the semantic stage (internal), read by both backends.
#pragma once

#include "allocate_math.h"
#include "arrcoc/semantic.h"
#include "semantic_math.h"

namespace arrcoc {

struct SemanticParams {
  DType dtype;                        // texture element type
  const void* l1[6];                  // level-1 planes: rg, by, gx, gy, mag, lum (descriptor inputs)
  int32_t w1, h1, w4, h4;
  const void* mvx4;                   // ch 35 at level 4
  const void* mvy4;                   // ch 36 at level 4
  float* features;                    // [32, h4, w4] descriptors written (encode)
  const float* previous;              // [32, h4, w4] previous descriptors (carry)
  bool carry;
  const float* raw16;                 // or nullptr: [kRawHistogram, h4, w4] raw histograms of this frame's
                                      // patches (the layout's 16-px cells), to normalize instead of reading the texels
  const float* in_features;           // [dims, h4, w4] features for write_channels
  int32_t dims;
  const float* query;                 // [num_queries, dims] on the device, or nullptr
  int32_t num_queries;
  const float* mean;                  // [dims] on the device, or nullptr
  const float* components;            // [16, dims] on the device, or nullptr
  void* out_semantic[kSemanticComponents];  // ch 17..32 at level 4
  void* out_query;                    // ch 33 at level 4
  const float* layout;                // [h4, w4] exemplar layout similarity (mixed into ch 33), or nullptr
  int32_t num_threads;
};

// Exemplar layout matching (math::layout_*): one template matched against the frame's cell map.
struct LayoutTemplateParams {
  const float* tz;    // [32, th, tw] zero-mean template (device)
  float norm;         // |tz|
  int32_t th, tw, cell_px;
  const float* cells;  // [kCellStats, hc, wc] the frame's cells of this size
  int32_t hc, wc;
  int32_t ha, wa;      // anchors (hc - th + 1) x (wc - tw + 1); 0 when the template does not fit
  float* ncc;          // [ha, wa]
};

constexpr int kLayoutCellSizes = 3;  // 8, 16, 32 px
ARRCOC_HD int layout_cell_px(int size_index) { return 8 << size_index; }

struct LayoutParams {
  DType dtype;
  const void* l1[6];  // as SemanticParams::l1
  int32_t w1, h1, w4, h4;
  float* raw[kLayoutCellSizes];        // [kRawHistogram, hc, wc] raw histograms per cell size (raw[2]: nullptr
                                       // unless cell_maps[2] is computed)
  bool histograms_ready;               // raw[0] and raw[1] already hold this frame's (made by encode)
  float* cell_maps[kLayoutCellSizes];  // [kCellStats, hc, wc] per cell size (nullptr: unused)
  int32_t hc[kLayoutCellSizes], wc[kLayoutCellSizes];
  int32_t num_templates;
  LayoutTemplateParams t[kMaxLayoutTemplates];  // arrcoc/semantic.h
  float* layout;  // [h4, w4] out
  int32_t num_threads;
};

template <typename T>
ARRCOC_HD math::DescriptorPlanes<T> descriptor_planes(const void* const* l1, int w1, int h1) {
  math::DescriptorPlanes<T> P;
  P.rg = static_cast<const T*>(l1[0]);
  P.by = static_cast<const T*>(l1[1]);
  P.gx = static_cast<const T*>(l1[2]);
  P.gy = static_cast<const T*>(l1[3]);
  P.mag = static_cast<const T*>(l1[4]);
  P.lum = static_cast<const T*>(l1[5]);
  P.w1 = w1;
  P.h1 = h1;
  return P;
}

// The frame's texels are read once, into the raw histograms of the 8-px cells; each larger cell
// size adds up 2 x 2 cells of the size below (raw histograms of adjacent cells add up to their
// union's). Here the `count` (<= N) 8-px cells (ci, cj0 ..), 4 x 4 level-1 texels each: texels row
// by row across the cells (each cell's in row-major order, as cell_histogram adds them).
template <typename T, int N>
ARRCOC_HD void layout_histogram_8px(const LayoutParams& p, int ci, int cj0, int count) {
  const math::DescriptorPlanes<T> P = descriptor_planes<T>(p.l1, p.w1, p.h1);
  float hist[N][math::kRawHistogram];  // on the device (N = 1) in registers: constant indices only
  for (int x = 0; x < count; ++x) {
    ARRCOC_DEVICE_UNROLL
    for (int k = 0; k < math::kRawHistogram; ++k) hist[x][k] = 0.0f;
  }
  const int i0 = 4 * ci, i1 = i0 + 4 < p.h1 ? i0 + 4 : p.h1;
  const int j0 = 4 * cj0, j1 = 4 * (cj0 + count) < p.w1 ? 4 * (cj0 + count) : p.w1;
  for (int i = i0; i < i1; ++i)
    for (int j = j0; j < j1; ++j) {
      float* h = hist[N == 1 ? 0 : (j - j0) >> 2];
      h[math::kDescriptorDims + 1] += math::add_texel(P, static_cast<int64_t>(i) * p.w1 + j, h);
      h[math::kDescriptorDims] += 1.0f;
    }
  const int64_t plane = static_cast<int64_t>(p.hc[0]) * p.wc[0], q0 = static_cast<int64_t>(ci) * p.wc[0] + cj0;
  ARRCOC_DEVICE_UNROLL
  for (int k = 0; k < math::kRawHistogram; ++k)
    for (int x = 0; x < count; ++x) p.raw[0][k * plane + q0 + x] = hist[x][k];
}

// Raw histograms of the `count` cells (ci, cj0 ..) of size index z >= 1: the sums of their
// 2 x 2 children of size z - 1 (those inside the frame).
ARRCOC_HD void layout_add_up_cells(const LayoutParams& p, int z, int ci, int cj0, int count) {
  const int hcc = p.hc[z - 1], wcc = p.wc[z - 1];
  const int64_t plane = static_cast<int64_t>(p.hc[z]) * p.wc[z], child_plane = static_cast<int64_t>(hcc) * wcc;
  const bool lower = 2 * ci + 1 < hcc;
  for (int k = 0; k < math::kRawHistogram; ++k) {
    const float* __restrict__ c0 = p.raw[z - 1] + k * child_plane + static_cast<int64_t>(2 * ci) * wcc;
    const float* __restrict__ c1 = c0 + wcc;
    float* __restrict__ o = p.raw[z] + k * plane + static_cast<int64_t>(ci) * p.wc[z] + cj0;
    for (int x = 0; x < count; ++x) {
      const int j = 2 * (cj0 + x);
      const bool right = j + 1 < wcc;
      float s = c0[j];
      if (right) s += c0[j + 1];
      if (lower) s += c1[j];
      if (lower && right) s += c1[j + 1];
      o[x] = s;
    }
  }
}

// Descriptors of the `count` (<= N) cells q0 .. q0 + count - 1 of a raw histogram map `raw`
// ([kRawHistogram, plane]): dim k of cell q goes to out[k * plane + q], then, with `energy`, |d|^2
// to plane 32. The loops run along the cells, so the CPU's divisions and square roots vectorize;
// a CUDA thread takes N = count = 1.
template <int N>
ARRCOC_HD void describe_cells(const float* __restrict__ raw, int64_t plane, int64_t q0, int count,
                              float* __restrict__ out, bool energy) {
  float e[N];
  const float* __restrict__ n = raw + math::kDescriptorDims * plane + q0;
  const float* __restrict__ msum = n + plane;
  ARRCOC_SPAN_LOOP
  for (int x = 0; x < count; ++x) e[x] = 0.0f;
  for (int k = 0; k < math::kDescriptorDims; ++k) {
    const float* __restrict__ r = raw + k * plane + q0;
    float* __restrict__ o = out + k * plane + q0;
    ARRCOC_SPAN_LOOP
    for (int x = 0; x < count; ++x) {
      const float d = math::histogram_value(r[x], math::histogram_total(k, n[x], msum[x]));
      o[x] = d;
      e[x] += d * d;
    }
  }
  if (energy) {
    float* __restrict__ o = out + math::kDescriptorDims * plane + q0;
    ARRCOC_SPAN_LOOP
    for (int x = 0; x < count; ++x) o[x] = e[x];
  }
}

// Cells q0 .. q0 + count - 1 (count <= N) of the frame's cell map of size index `z`: 32 descriptor
// dims, then |d|^2.
template <int N>
ARRCOC_HD void layout_describe_cells(const LayoutParams& p, int z, int64_t q0, int count) {
  describe_cells<N>(p.raw[z], static_cast<int64_t>(p.hc[z]) * p.wc[z], q0, count, p.cell_maps[z], true);
}

// NCC at the N anchors (y, x0 .. x0 + N - 1).
template <int N>
ARRCOC_HD void layout_ncc_span(const LayoutTemplateParams& t, int y, int x0) {
  math::layout_ncc_n<N>(t.cells, t.hc, t.wc, t.tz, t.norm, t.th, t.tw, y, x0,
                        t.ncc + static_cast<int64_t>(y) * t.wa + x0);
}

// Patch q: the best layout match over the templates (-1 when none fits the frame).
ARRCOC_HD void layout_patch(const LayoutParams& p, int q) {
  float best = -1.0f;
  for (int k = 0; k < p.num_templates; ++k) {
    const LayoutTemplateParams& t = p.t[k];
    if (t.ha > 0)
      best = math::maxf(best, math::layout_patch_value(t.ncc, t.ha, t.wa, t.th, t.tw, t.cell_px, q / p.w4, q % p.w4));
  }
  p.layout[q] = best;
}

template <typename T>
ARRCOC_HD void encode_patch(const SemanticParams& p, int q) {
  const int64_t n4 = static_cast<int64_t>(p.w4) * p.h4;
  if (p.carry) {
    const float mx = math::load_texel(static_cast<const T*>(p.mvx4) + q);
    const float my = math::load_texel(static_cast<const T*>(p.mvy4) + q);
    const int src = math::warp_source(q / p.w4, q % p.w4, mx, my, p.w4, p.h4);
    for (int k = 0; k < math::kDescriptorDims; ++k) p.features[k * n4 + q] = p.previous[k * n4 + src];
    return;
  }
  if (p.raw16) {  // an exemplar layout read the texels already
    describe_cells<1>(p.raw16, n4, q, 1, p.features, false);
    return;
  }
  float d[math::kDescriptorDims];
  math::patch_descriptor(descriptor_planes<T>(p.l1, p.w1, p.h1), q / p.w4, q % p.w4, d);
  for (int k = 0; k < math::kDescriptorDims; ++k) p.features[k * n4 + q] = d[k];
}

template <typename T>
ARRCOC_HD void semantic_channels_patch(const SemanticParams& p, int q) {
  const int64_t n4 = static_cast<int64_t>(p.w4) * p.h4;
  const float* f = p.in_features + q;
  float similarity = p.query ? math::max_cosine_similarity(f, n4, p.query, p.num_queries, p.dims) : 0.0f;
  if (p.query && p.layout) similarity = math::exemplar_similarity(similarity, p.layout[q]);
  math::store_texel(static_cast<T*>(p.out_query) + q, similarity);
  for (int c = 0; c < kSemanticComponents; ++c) {
    float v = 0.0f;
    if (p.components && p.mean)
      for (int k = 0; k < p.dims; ++k) v += p.components[c * p.dims + k] * (f[k * n4] - p.mean[k]);
    math::store_texel(static_cast<T*>(p.out_semantic[c]) + q, v);
  }
}

}  // namespace arrcoc
