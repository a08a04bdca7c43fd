// Parameter block of the cluster-first cascade, filled by csrc/core/cascade.cpp and read by
// both backends. Scratch is allocated once at creation for the maximum frame size.
#pragma once

#include "arrcoc/cascade.h"
#include "cascade_math.h"

namespace arrcoc {

struct CascadeParams {
  DType dtype;                       // element type of the texture planes below
  // texture planes read (level 2: 4x4 pixels per texel; level 4: 16x16-pixel patches)
  const void* lum2;                  // ch 3 at level 2
  const void* rg2;                   // ch 15 at level 2
  const void* by2;                   // ch 16 at level 2
  const void* sal2;                  // ch 11 at level 2
  const void* ecc2;                  // ch 5 at level 2
  const void* mot2;                  // ch 10 at level 2
  const void* tex2;                  // ch 4 at level 2 (local contrast: texture rarity)
  const void* sal4;                  // ch 11 at level 4
  const void* mot4;                  // ch 10 at level 4
  const void* qry4;                  // ch 33 at level 4
  void* cluster_out[3];              // ch 13 at levels 2, 3, 4 (written)
  int32_t w2, h2, w3, h3, w4, h4;    // level sizes
  int32_t gx, gy;                    // seed grid
  int64_t s16_sq;                    // (grid spacing in 1/16 texel)^2
  int64_t m_sq;                      // (compactness in colour units)^2
  int32_t iterations;
  int32_t top_k;                     // clusters kept
  int32_t per_cluster;               // candidates per kept cluster
  float w_motion, w_query, w_contrast;
  int32_t num_threads;               // CPU backend

  // scratch / outputs
  int32_t* colour;                   // [3][w2*h2] fixed-point colour features
  int32_t* labels;                   // [w2*h2] cluster id per level-2 texel
  math::Seed* seeds;                 // [kMaxSeeds]
  unsigned long long* seed_sums;     // [kMaxSeeds][6] count, c0, c1, c2, x16, y16 (int64 bits)
  unsigned long long* stat_sums;     // [kMaxSeeds][9] count, saliency, eccentricity, motion, query, colour x3,
                                     // local contrast
  float* saliency;                   // [kMaxSeeds] cluster_saliency
  int64_t* means;                    // [kMaxSeeds][kRarityMeans] rounded mean colour x3 and local contrast
  int64_t* rarity;                   // [kMaxSeeds][2] colour and texture rarity (see math::rarity_contrast)
  float* contrast;                   // [kMaxSeeds] contrast in [0, 1]: the larger of colour's and texture's
  float* scores;                     // [kMaxSeeds]
  int32_t* kept;                     // [top_k] best clusters, -1 padding
  uint64_t* patch_keys;              // [w4*h4]
  int32_t* patch_cluster;            // [w4*h4]
  float* patch_contrast;             // [w4*h4] the contrast of the patch's cluster
  int32_t* candidates;               // [top_k*per_cluster], -1 padding
  int32_t* members;                  // [w4*h4] CPU: patches of one cluster, for partial_sort
  unsigned long long* partial_sums;  // CPU: [num_threads][kMaxSeeds][max(kSeedSums, kStatSums)]
};

constexpr int kSeedSums = 6;
constexpr int kStatSums = 9;
constexpr int kRarityMeans = 4;  // the stat sums 5..8 as means: colour x3, local contrast

// Typed texel read of a plane given as const void*.
template <typename T>
ARRCOC_HD float texel_at(const void* plane, int64_t i) {
  return math::load_texel(static_cast<const T*>(plane) + i);
}

template <typename T>
ARRCOC_HD void cascade_features(const CascadeParams& p, int64_t i) {
  const int64_t n = static_cast<int64_t>(p.w2) * p.h2;
  p.colour[i] = math::colour_fixed(texel_at<T>(p.lum2, i));
  p.colour[n + i] = math::colour_fixed(texel_at<T>(p.rg2, i));
  p.colour[2 * n + i] = math::colour_fixed(texel_at<T>(p.by2, i));
}

ARRCOC_HD void init_seed(const CascadeParams& p, int k) {
  const int a = k / p.gx, b = k % p.gx;
  math::Seed s;
  s.x16 = math::seed_x16(b, p.w2, p.gx);
  s.y16 = math::seed_y16(a, p.h2, p.gy);
  const int64_t n = static_cast<int64_t>(p.w2) * p.h2;
  const int64_t i = static_cast<int64_t>(s.y16 / math::kPosScale) * p.w2 + s.x16 / math::kPosScale;
  for (int c = 0; c < 3; ++c) s.c[c] = p.colour[c * n + i];
  p.seeds[k] = s;
}

ARRCOC_HD int assign_texel(const CascadeParams& p, int i, int j) {
  const int64_t n = static_cast<int64_t>(p.w2) * p.h2;
  const int64_t idx = static_cast<int64_t>(i) * p.w2 + j;
  const int c[3] = {p.colour[idx], p.colour[n + idx], p.colour[2 * n + idx]};
  return math::slic_assign(p.seeds, p.gx, p.gy, p.w2, p.h2, c, i, j, p.s16_sq, p.m_sq);
}

// Seed k from its sums (unchanged when no texel chose it).
ARRCOC_HD void update_seed(const CascadeParams& p, int k) {
  const unsigned long long* s = p.seed_sums + static_cast<int64_t>(k) * kSeedSums;
  const int64_t count = static_cast<int64_t>(s[0]);
  if (count == 0) return;
  math::Seed& seed = p.seeds[k];
  for (int c = 0; c < 3; ++c) seed.c[c] = math::mean_round(static_cast<int64_t>(s[1 + c]), count);
  seed.x16 = math::mean_round(static_cast<int64_t>(s[4]), count);
  seed.y16 = math::mean_round(static_cast<int64_t>(s[5]), count);
}

// Terms one texel adds to its seed's sums (texel centre in 1/16 texel).
ARRCOC_HD void seed_terms(const CascadeParams& p, int i, int j, unsigned long long out[kSeedSums]) {
  const int64_t n = static_cast<int64_t>(p.w2) * p.h2;
  const int64_t idx = static_cast<int64_t>(i) * p.w2 + j;
  out[0] = 1;
  for (int c = 0; c < 3; ++c) out[1 + c] = static_cast<unsigned long long>(p.colour[c * n + idx]);
  out[4] = static_cast<unsigned long long>(j * math::kPosScale + math::kPosScale / 2);
  out[5] = static_cast<unsigned long long>(i * math::kPosScale + math::kPosScale / 2);
}

// Terms one level-2 texel adds to its cluster's statistics (fixed point, two's complement).
template <typename T>
ARRCOC_HD void stat_terms(const CascadeParams& p, int i, int j, unsigned long long out[kStatSums]) {
  const int64_t idx = static_cast<int64_t>(i) * p.w2 + j;
  const int64_t q = static_cast<int64_t>(math::clampi(i >> 2, 0, p.h4 - 1)) * p.w4 + math::clampi(j >> 2, 0, p.w4 - 1);
  out[0] = 1;
  out[1] = static_cast<unsigned long long>(math::stat_texel_fixed(texel_at<T>(p.sal2, idx)));
  out[2] = static_cast<unsigned long long>(math::stat_texel_fixed(texel_at<T>(p.ecc2, idx)));
  out[3] = static_cast<unsigned long long>(math::stat_texel_fixed(texel_at<T>(p.mot2, idx)));
  out[4] = static_cast<unsigned long long>(math::stat_texel_fixed(texel_at<T>(p.qry4, q)));
  const int64_t n = static_cast<int64_t>(p.w2) * p.h2;
  for (int c = 0; c < 3; ++c) out[5 + c] = static_cast<unsigned long long>(p.colour[c * n + idx]);
  out[8] = static_cast<unsigned long long>(math::texture_fixed(texel_at<T>(p.tex2, idx)));
}

ARRCOC_HD int64_t stat_sum(const CascadeParams& p, int k, int which) {
  return static_cast<int64_t>(p.stat_sums[static_cast<int64_t>(k) * kStatSums + which]);
}

// Cluster scores in three phases (every cluster's phase before any cluster's next one).
// Phase 0: the cluster's rounded means (as SLIC's) of colour and local contrast, once per cluster.
ARRCOC_HD void cluster_means(const CascadeParams& p, int k) {
  const int64_t count = stat_sum(p, k, 0);
  for (int c = 0; c < kRarityMeans; ++c)
    p.means[static_cast<int64_t>(k) * kRarityMeans + c] = count > 0 ? math::mean_round(stat_sum(p, k, 5 + c), count) : 0;
}

// Phase 1: the cluster's saliency, colour rarity = sum over clusters o of
// count_o * |mean colour_k - mean colour_o|_1, and texture rarity = the same of the mean local
// contrast (exact integers).
ARRCOC_HD void cluster_saliency_and_rarity(const CascadeParams& p, int k) {
  const int64_t count = stat_sum(p, k, 0);
  p.saliency[k] = math::cluster_saliency(stat_sum(p, k, 1), stat_sum(p, k, 2), count);
  int64_t colour_rarity = 0, texture_rarity = 0;
  if (count > 0) {
    const int64_t* mean = p.means + static_cast<int64_t>(k) * kRarityMeans;
    for (int o = 0; o < p.gx * p.gy; ++o) {
      const int64_t n = stat_sum(p, o, 0);
      if (n == 0 || o == k) continue;
      const int64_t* other = p.means + static_cast<int64_t>(o) * kRarityMeans;
      int64_t d[kRarityMeans];
      for (int c = 0; c < kRarityMeans; ++c) {
        const int64_t v = mean[c] - other[c];
        d[c] = v < 0 ? -v : v;
      }
      colour_rarity += n * (d[0] + d[1] + d[2]);
      texture_rarity += n * d[3];
    }
  }
  p.rarity[2 * k] = colour_rarity;
  p.rarity[2 * k + 1] = texture_rarity;
}

// Phase 2: contrast (the larger of colour's and texture's rarity, each over the frame's range) and
// the score.
ARRCOC_HD void cluster_contrast_and_score(const CascadeParams& p, int k) {
  float max_saliency = 0.0f;
  int64_t min_rarity[2] = {-1, -1}, max_rarity[2] = {0, 0};
  for (int o = 0; o < p.gx * p.gy; ++o) {
    if (stat_sum(p, o, 0) == 0) continue;
    max_saliency = math::maxf(max_saliency, p.saliency[o]);
    for (int r = 0; r < 2; ++r) {
      const int64_t v = p.rarity[2 * o + r];
      max_rarity[r] = v > max_rarity[r] ? v : max_rarity[r];
      min_rarity[r] = min_rarity[r] < 0 || v < min_rarity[r] ? v : min_rarity[r];
    }
  }
  const int64_t count = stat_sum(p, k, 0);
  p.contrast[k] = count > 0 ? math::maxf(math::rarity_contrast(p.rarity[2 * k], min_rarity[0], max_rarity[0]),
                                         math::rarity_contrast(p.rarity[2 * k + 1], min_rarity[1], max_rarity[1]))
                            : 0.0f;
  p.scores[k] = math::cluster_score(p.saliency[k], p.contrast[k], max_saliency, stat_sum(p, k, 3), stat_sum(p, k, 4),
                                    count, p.w_contrast, p.w_motion, p.w_query);
}

// The top_k non-empty clusters by (score desc, id asc); -1 padding: one host loop on the CPU; on
// CUDA a thread per cluster computes cluster_rank (below).
// Rank of cluster k among the non-empty clusters by (score desc, id asc), or -1 if k is empty.
// Independent per cluster, so the GPU ranks every cluster at once (O(n) each, not the O(top_k^2 n)
// of a sequential selection); kept[rank] = k for ranks below top_k (see rank_clusters).
ARRCOC_HD bool cluster_empty(const CascadeParams& p, int k) {
  return p.stat_sums[static_cast<int64_t>(k) * kStatSums] == 0;
}
ARRCOC_HD int cluster_rank(const CascadeParams& p, int k) {
  if (cluster_empty(p, k)) return -1;
  const int n = p.gx * p.gy;
  int r = 0;
  for (int o = 0; o < n; ++o)
    if (!cluster_empty(p, o) && (p.scores[o] > p.scores[k] || (p.scores[o] == p.scores[k] && o < k))) ++r;
  return r;
}

// kept[0..top_k): the best non-empty clusters, best first; -1 where there are fewer.
ARRCOC_HD void rank_clusters(const CascadeParams& p) {
  for (int r = 0; r < p.top_k; ++r) p.kept[r] = -1;
  for (int k = 0; k < p.gx * p.gy; ++k) {
    const int r = cluster_rank(p, k);
    if (r >= 0 && r < p.top_k) p.kept[r] = k;
  }
}

// Cluster and sort key of patch (bi, bj): the cluster at the patch's centre texel of level 2.
template <typename T>
ARRCOC_HD void patch_cluster_and_key(const CascadeParams& p, int bi, int bj) {
  const int64_t q = static_cast<int64_t>(bi) * p.w4 + bj;
  const int i = math::clampi(4 * bi + 2, 0, p.h2 - 1), j = math::clampi(4 * bj + 2, 0, p.w2 - 1);
  p.patch_cluster[q] = p.labels[static_cast<int64_t>(i) * p.w2 + j];
  p.patch_contrast[q] = p.contrast[p.patch_cluster[q]];
  p.patch_keys[q] = math::patch_key(texel_at<T>(p.sal4, q), texel_at<T>(p.mot4, q), texel_at<T>(p.qry4, q),
                                    p.w_motion, p.w_query, static_cast<int>(q));
}

// Cluster id (as a float texel) of texel (i, j) at level 2 + `step` (0, 1, 2): the id of its
// top-left level-2 texel (ids are labels, so they are not averaged).
ARRCOC_HD int cluster_at_level(const CascadeParams& p, int step, int i, int j) {
  return p.labels[static_cast<int64_t>(i << step) * p.w2 + (j << step)];
}

}  // namespace arrcoc
