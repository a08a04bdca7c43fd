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
  const float* raw8;                  // or nullptr: [kRawHistogram, hc8, wc8] raw histograms of this
  int32_t hc8, wc8;                   // frame's 8-px cells, to add up instead of reading the texels
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
  float* rows;         // [kCellStats, hc, wa] window sums along rows (scratch)
  float* win;          // [kCellStats, ha, wa] window sums
  float* ncc;          // [ha, wa]
};

constexpr int kLayoutCellSizes = 3;  // 8, 16, 32 px
ARRCOC_HD int layout_cell_px(int size_index) { return 8 << size_index; }

struct LayoutParams {
  DType dtype;
  const void* l1[6];  // as SemanticParams::l1
  int32_t w1, h1, w4, h4;
  float* raw8;                         // [kRawHistogram, hc[0], wc[0]] raw histograms of the 8-px cells
  bool histograms_ready;               // raw8 already holds this frame's (made by encode)
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

// The frame's texels are read once, into the raw histograms of the 8-px cells; cells of 16 and
// 32 px add up their 2x2 and 4x4 children's.
template <typename T>
ARRCOC_HD void layout_histogram_8px(const LayoutParams& p, int q) {
  const int64_t plane = static_cast<int64_t>(p.hc[0]) * p.wc[0];
  float raw[math::kRawHistogram];
  math::cell_histogram(descriptor_planes<T>(p.l1, p.w1, p.h1), q / p.wc[0], q % p.wc[0], 4, raw);
  for (int k = 0; k < math::kRawHistogram; ++k) p.raw8[k * plane + q] = raw[k];
}

// Raw histogram of the f x f block of 8-px cells at block (ci, cj): the sum of its children.
ARRCOC_HD void add_up_cells(const float* raw8, int hc8, int wc8, int f, int ci, int cj, float* raw) {
  const int64_t plane8 = static_cast<int64_t>(hc8) * wc8;
  for (int k = 0; k < math::kRawHistogram; ++k) raw[k] = 0.0f;
  for (int a = 0; a < f && ci * f + a < hc8; ++a)
    for (int b = 0; b < f && cj * f + b < wc8; ++b) {
      const int64_t child = static_cast<int64_t>(ci * f + a) * wc8 + cj * f + b;
      for (int k = 0; k < math::kRawHistogram; ++k) raw[k] += raw8[k * plane8 + child];
    }
}

// Cell q of the frame's cell map of size index `z`: 32 descriptor dims, then |d|^2.
ARRCOC_HD void layout_describe_cell(const LayoutParams& p, int z, int q) {
  const int64_t plane = static_cast<int64_t>(p.hc[z]) * p.wc[z];
  float raw[math::kRawHistogram];
  add_up_cells(p.raw8, p.hc[0], p.wc[0], 1 << z, q / p.wc[z], q % p.wc[z], raw);
  float d[math::kDescriptorDims];
  math::normalize_histogram(raw, d);
  float e = 0.0f;
  for (int k = 0; k < math::kDescriptorDims; ++k) {
    p.cell_maps[z][k * plane + q] = d[k];
    e += d[k] * d[k];
  }
  p.cell_maps[z][math::kDescriptorDims * plane + q] = e;
}

// Window sums: along rows (element i of [kCellStats, hc, wa]), then down columns ([kCellStats, ha, wa]).
ARRCOC_HD void layout_row_sum(const LayoutTemplateParams& t, int64_t i) {
  const int64_t x = i % t.wa, yk = i / t.wa, y = yk % t.hc, k = yk / t.hc;
  t.rows[i] = math::window_sum(t.cells, (k * t.hc + y) * t.wc + x, 1, t.tw);
}
ARRCOC_HD void layout_col_sum(const LayoutTemplateParams& t, int64_t i) {
  const int64_t x = i % t.wa, yk = i / t.wa, y = yk % t.ha, k = yk / t.ha;
  t.win[i] = math::window_sum(t.rows, (k * t.hc + y) * t.wa + x, t.wa, t.th);
}

// NCC at anchors (y, x0 .. x0 + count - 1).
ARRCOC_HD void layout_ncc_span(const LayoutTemplateParams& t, int y, int x0, int count) {
  float* out = t.ncc + static_cast<int64_t>(y) * t.wa + x0;
  math::layout_dots(t.cells, t.hc, t.wc, t.tz, t.th, t.tw, y, x0, count, out);
  const int64_t plane = static_cast<int64_t>(t.ha) * t.wa;
  for (int x = 0; x < count; ++x)
    out[x] = math::layout_ncc(out[x], t.norm, t.win + static_cast<int64_t>(y) * t.wa + x0 + x, plane, t.th * t.tw);
}

// Patch q: the best layout match over the templates (-1 when none fits the frame).
ARRCOC_HD void layout_patch(const LayoutParams& p, int q) {
  float best = -1.0f;
  for (int k = 0; k < p.num_templates; ++k) {
    const LayoutTemplateParams& t = p.t[k];
    if (t.ha > 0)
      best = math::maxf(best, math::layout_patch_value(t.ncc, t.ha, t.wa, t.th, t.tw, t.hc, t.wc, t.cell_px,
                                                       q / p.w4, q % p.w4));
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
  float d[math::kDescriptorDims];
  if (p.raw8) {  // an exemplar layout read the texels already: add up its 8-px cells
    float raw[math::kRawHistogram];
    add_up_cells(p.raw8, p.hc8, p.wc8, 2, q / p.w4, q % p.w4, raw);
    math::normalize_histogram(raw, d);
  } else {
    math::patch_descriptor(descriptor_planes<T>(p.l1, p.w1, p.h1), q / p.w4, q % p.w4, d);
  }
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
