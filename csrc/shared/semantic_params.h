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
  const float* in_features;           // [dims, h4, w4] features for write_channels
  int32_t dims;
  const float* query;                 // [num_queries, dims] on the device, or nullptr
  int32_t num_queries;
  const float* mean;                  // [dims] on the device, or nullptr
  const float* components;            // [16, dims] on the device, or nullptr
  void* out_semantic[kSemanticComponents];  // ch 17..32 at level 4
  void* out_query;                    // ch 33 at level 4
  int32_t num_threads;
};

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
  math::DescriptorPlanes<T> P;
  P.rg = static_cast<const T*>(p.l1[0]);
  P.by = static_cast<const T*>(p.l1[1]);
  P.gx = static_cast<const T*>(p.l1[2]);
  P.gy = static_cast<const T*>(p.l1[3]);
  P.mag = static_cast<const T*>(p.l1[4]);
  P.lum = static_cast<const T*>(p.l1[5]);
  P.w1 = p.w1;
  P.h1 = p.h1;
  float d[math::kDescriptorDims];
  math::patch_descriptor(P, q / p.w4, q % p.w4, d);
  for (int k = 0; k < math::kDescriptorDims; ++k) p.features[k * n4 + q] = d[k];
}

template <typename T>
ARRCOC_HD void semantic_channels_patch(const SemanticParams& p, int q) {
  const int64_t n4 = static_cast<int64_t>(p.w4) * p.h4;
  const float* f = p.in_features + q;
  math::store_texel(static_cast<T*>(p.out_query) + q,
                    p.query ? math::max_cosine_similarity(f, n4, p.query, p.num_queries, p.dims) : 0.0f);
  for (int c = 0; c < kSemanticComponents; ++c) {
    float v = 0.0f;
    if (p.components && p.mean)
      for (int k = 0; k < p.dims; ++k) v += p.components[c * p.dims + k] * (f[k * n4] - p.mean[k]);
    math::store_texel(static_cast<T*>(p.out_semantic[c]) + q, v);
  }
}

}  // namespace arrcoc
