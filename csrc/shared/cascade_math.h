// Per-element formulas of the cluster-first cascade (stage 2), called by
// csrc/cpu/cascade_cpu.cpp and csrc/cuda/cascade_cuda.cu; the float64/integer reference is
// arrcoc_rt.reference.cluster_cascade. The core is integer arithmetic (fixed-point colour and
// positions, int64 distances, integer means), so every backend and the reference assign the
// same texels to the same clusters and select the same candidates from the same texture.
#pragma once

#include <math.h>

#include "half.h"
#include "hd.h"

namespace arrcoc::math {

constexpr int kClusterLevel = 2;      // SLIC runs on level-2 texels (4x4 pixels)
constexpr int kColourScale = 1024;    // colour features in 1/1024 units ...
constexpr int kColourOffset = 2048;   // ... offset so they are >= 0 (R-G, B-Y are in [-1, 1])
constexpr int kPosScale = 16;         // seed positions in 1/16 texel
constexpr int kMaxSeeds = 256;
constexpr int kStatScale = 1 << 20;   // cluster statistics in 1/2^20 units (exact integer sums)

// Fixed-point colour feature of one texel value (round half to even, as np.rint / lrintf). The
// builder's features lie in [-1, 1]; a texture written by the caller may hold anything, so the value
// is clamped to [-2, 14] first (NaN to 0): the features are then in [0, 2^14], every SLIC distance
// fits int64 on any level (s16_sq <= 2^32: 3 * 2^28 * 2^32 + 2^27 * 2^33 < 2^63), every sum is >= 0
// (so means round alike everywhere), and no float -> int conversion is undefined.
constexpr float kColourMin = -2.0f, kColourMax = 14.0f;
ARRCOC_HD int colour_fixed(float v) {
  return static_cast<int>(rintf(clamp_or_zero(v, kColourMin, kColourMax) * static_cast<float>(kColourScale))) +
         kColourOffset;
}
// Fixed-point texture statistic of one texel: local contrast (channel 4, in [0, 0.5]) in 1/2048
// units, so its range (0..1024) is that of one colour feature's. Clamped to [0, 0.5] first (NaN to
// 0): a texture written by the caller gets the same defined integers on every backend.
constexpr int kTextureScale = 2048;
ARRCOC_HD int texture_fixed(float v) {
  return static_cast<int>(rintf(clamp_or_zero(v, 0.0f, 0.5f) * static_cast<float>(kTextureScale)));
}
// Fixed-point value of a statistic or score; |v| < 2^42 (callers clamp).
ARRCOC_HD int64_t stat_fixed(float v) {
  return static_cast<int64_t>(rintf(v * static_cast<float>(kStatScale)));
}
// A texel of saliency, eccentricity, motion or query similarity, clamped to [-kMaxStatTexel,
// kMaxStatTexel] (NaN to 0) first. The builder's values lie far inside (the query's by its own limit,
// kMaxPatchValue = 1e4); a caller's texture may hold anything, and then a cluster's sum of up to
// 2^24 texels still fits int64 (2^24 * 1e4 * 2^20 < 2^58) with no undefined conversion.
ARRCOC_HD int64_t stat_texel_fixed(float v) {
  return stat_fixed(stat_texel(v));
}

// Seed grid: gx x gy cells over a w2 x h2 level, about `seeds` cells, never more than texels.
ARRCOC_HD void seed_grid(int seeds, int w2, int h2, int* gx, int* gy) {
  int x = static_cast<int>(rintf(sqrtf(static_cast<float>(seeds) * static_cast<float>(w2) / static_cast<float>(h2))));
  x = clampi(x, 1, w2 < kMaxSeeds ? w2 : kMaxSeeds);
  int y = clampi(static_cast<int>(rintf(static_cast<float>(seeds) / static_cast<float>(x))), 1, h2);
  // Rounding can give more cells than seeds asked for (256 on a 25 x 16 level: 20 x 13), and a
  // level one texel high a row of sqrt(seeds * w2) cells: never more than kMaxSeeds, the size of
  // every per-seed buffer.
  if (x * y > kMaxSeeds) y = kMaxSeeds / x;
  *gx = x;
  *gy = y;
}

// Grid cell of texel (i, j). 32-bit: j < w2 <= 4096 and gx <= kMaxSeeds, so j * gx < 2^20 (and a
// 32-bit division is several times cheaper than a 64-bit one on both backends).
ARRCOC_HD int cell_x(int j, int w2, int gx) { return j * gx / w2; }
ARRCOC_HD int cell_y(int i, int h2, int gy) { return i * gy / h2; }

// Initial seed of cell (a, b): its centre, in 1/16 texel.
ARRCOC_HD int seed_x16(int b, int w2, int gx) { return static_cast<int>((static_cast<int64_t>(2 * b + 1) * w2 * kPosScale) / (2 * gx)); }
ARRCOC_HD int seed_y16(int a, int h2, int gy) { return static_cast<int>((static_cast<int64_t>(2 * a + 1) * h2 * kPosScale) / (2 * gy)); }

struct Seed {
  int x16, y16;  // position, 1/16 texel
  int c[3];      // colour (L, R-G, B-Y), fixed point + offset
};

// SLIC distance scaled by S^2 so it stays integral: S16^2 * |dc|^2 + M^2 * |dp16|^2, where S16 is
// the grid spacing in 1/16 texel and M the compactness in colour units.
ARRCOC_HD int64_t slic_distance(const Seed& s, const int c[3], int x16, int y16, int64_t s16_sq, int64_t m_sq) {
  const int64_t d0 = c[0] - s.c[0], d1 = c[1] - s.c[1], d2 = c[2] - s.c[2];
  const int64_t dx = x16 - s.x16, dy = y16 - s.y16;
  return s16_sq * (d0 * d0 + d1 * d1 + d2 * d2) + m_sq * (dx * dx + dy * dy);
}

// slic_distance() in 32-bit parts and two 32 x 32 -> 64-bit products, the same value where
// slic_narrow_ok() holds: colours in [0, 2^13) make |dc| < 2^13 and the colour term < 3 * 2^26,
// positions in [0, 2^15) (levels under 2048 texels) make |dp| < 2^15 and the position term < 2^31,
// so with s16_sq < 2^32 and m_sq < 2^31 the sum < 3 * 2^58 + 2^62 < 2^63 (slic_distance's int64
// holds it too; in practice s16_sq < 2^30 and m_sq < 2^27). AVX2 has no 64-bit multiply:
// each of slic_distance()'s seven is three 32-bit ones, and the CPU's assignment was 1.5x slower.
ARRCOC_HD uint64_t slic_distance_narrow(const Seed& s, const int c[3], int x16, int y16, uint32_t s16_sq,
                                        uint32_t m_sq) {
  const int d0 = c[0] - s.c[0], d1 = c[1] - s.c[1], d2 = c[2] - s.c[2];
  const int dx = x16 - s.x16, dy = y16 - s.y16;
  const uint32_t colour = static_cast<uint32_t>(d0 * d0) + static_cast<uint32_t>(d1 * d1) + static_cast<uint32_t>(d2 * d2);
  const uint32_t position = static_cast<uint32_t>(dx * dx) + static_cast<uint32_t>(dy * dy);
  return static_cast<uint64_t>(colour) * s16_sq + static_cast<uint64_t>(position) * m_sq;
}
constexpr int kNarrowColourLimit = 1 << 13;
constexpr int kNarrowLevelLimit = (1 << 15) / kPosScale;  // texels along each axis of level 2
// Texture colours (their features' range over the frame; seeds are means of them) and the level's
// size for which slic_distance_narrow() is exact.
ARRCOC_HD bool slic_narrow_ok(int w2, int h2, int64_t s16_sq, int64_t m_sq, int colour_min, int colour_max) {
  return w2 < kNarrowLevelLimit && h2 < kNarrowLevelLimit && s16_sq >= 0 && s16_sq < (int64_t{1} << 32) &&
         m_sq >= 0 && m_sq < (int64_t{1} << 31) && colour_min >= 0 && colour_max < kNarrowColourLimit;
}

// Label of texel (i, j): the nearest seed among those of the 3x3 grid cells around its cell;
// ties go to the lower seed index.
// The grid cells a texel of cell `c` (of `g` along one axis) compares against: c-1..c+1, clipped.
ARRCOC_HD void neighbour_cells(int c, int g, int* lo, int* hi) {
  *lo = c > 0 ? c - 1 : 0;
  *hi = c + 1 < g ? c + 1 : g - 1;
}

ARRCOC_HD int slic_assign(const Seed* seeds, int gx, int gy, int w2, int h2, const int c[3], int i, int j,
                          int64_t s16_sq, int64_t m_sq) {
  const int cx = cell_x(j, w2, gx), cy = cell_y(i, h2, gy);
  const int x16 = j * kPosScale + kPosScale / 2, y16 = i * kPosScale + kPosScale / 2;
  int a0, a1, b0, b1;
  neighbour_cells(cy, gy, &a0, &a1);
  neighbour_cells(cx, gx, &b0, &b1);
  int best = -1;
  int64_t best_d = 0;
  for (int a = a0; a <= a1; ++a)
    for (int b = b0; b <= b1; ++b) {
      const int k = a * gx + b;
      const int64_t d = slic_distance(seeds[k], c, x16, y16, s16_sq, m_sq);
      if (best < 0 || d < best_d || (d == best_d && k < best)) {
        best = k;
        best_d = d;
      }
    }
  return best;
}

// Integer mean, rounding half up (all sums are >= 0).
ARRCOC_HD int mean_round(int64_t sum, int64_t count) { return static_cast<int>((sum + count / 2) / count); }

// Cluster scores from exact sums. Means are correctly rounded divisions of exact integers; the
// rest uses unfused float operations, so a score is the same bits on every backend and in the
// reference.
ARRCOC_HD float stat_mean(int64_t sum, int64_t count) {
  return static_cast<float>(static_cast<double>(sum) / (static_cast<double>(count) * kStatScale));
}

// Saliency part: mean saliency x (1 - 0.5 mean eccentricity); -1 for an empty cluster.
ARRCOC_HD float cluster_saliency(int64_t sal_sum, int64_t ecc_sum, int64_t count) {
  if (count == 0) return -1.0f;
  const float foveal = add_rn(1.0f, -mul_rn(0.5f, stat_mean(ecc_sum, count)));
  return mul_rn(stat_mean(sal_sum, count), foveal);
}

// Contrast of a cluster in [0, 1]: its rarity placed between the frame's least and most rare
// clusters. Colour rarity is the pixel-weighted L1 distance of its mean colour to every other
// cluster's; texture rarity the same for its mean local contrast (exact integers both). A region
// whose colour and texture are everywhere -- grass, foliage, gravel -- has a low contrast however
// busy it is; an object unlike its surroundings has a high one, smooth or not: by colour, or, when
// its colours are those of its surroundings, by being smooth where they are busy (or the reverse).
// (Over the range, not the maximum: a very distinct object makes everything else look somewhat
// rare too.)
ARRCOC_HD float rarity_contrast(int64_t rarity, int64_t min_rarity, int64_t max_rarity) {
  return max_rarity > min_rarity ? static_cast<float>(static_cast<double>(rarity - min_rarity) /
                                                      static_cast<double>(max_rarity - min_rarity))
                                 : 0.0f;
}

// score = saliency + w_contrast * contrast^2 * max_saliency + w_motion * mean motion + w_query *
// mean query similarity. The contrast is scaled by the frame's best cluster saliency, so a
// cluster of full contrast counts like the most salient one; squared, so that the clusters of a
// distinct object stand out from the middling contrast of a varied background.
ARRCOC_HD float cluster_score(float saliency, float contrast, float max_saliency, int64_t mot_sum, int64_t qry_sum,
                              int64_t count, float w_contrast, float w_motion, float w_query) {
  if (count == 0) return -1.0f;
  const float s = add_rn(saliency, mul_rn(mul_rn(w_contrast, mul_rn(contrast, contrast)), max_saliency));
  return add_rn(add_rn(s, mul_rn(w_motion, stat_mean(mot_sum, count))), mul_rn(w_query, stat_mean(qry_sum, count)));
}

constexpr float kMaxPatchScore = 2097152.0f;  // 2^21
// Cheap per-patch score (level-4 texel) as a unique sort key: higher score first, then lower
// patch index. score = saliency + w_motion * motion + w_query * query similarity.
ARRCOC_HD uint64_t patch_key(float saliency, float motion, float query, float w_motion, float w_query, int patch) {
  // each texel read as every stage reads a statistic (stat_texel): |s| <= 2.01e6
  const float s = add_rn(add_rn(stat_texel(saliency), mul_rn(w_motion, stat_texel(motion))),
                         mul_rn(w_query, stat_texel(query)));
  // [0, 2^21]: the builder's scores stay below 2^20 (weights <= 100, query <= 1e4), and the key
  // must keep q < 2^42.
  const int64_t q = stat_fixed(clamp_or_zero(s, 0.0f, kMaxPatchScore));
  return (static_cast<uint64_t>(q) << 22) | static_cast<uint64_t>(0x3fffff - patch);
}

}  // namespace arrcoc::math
