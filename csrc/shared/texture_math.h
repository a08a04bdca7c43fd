// Per-element formulas of the texture stage, written once and called by the CPU loops
// (csrc/cpu/texture_cpu.cpp) and the CUDA kernels (csrc/cuda/texture_cuda.cu). The float64
// reference (python/arrcoc_rt/reference.py) implements the same formulas; docs/CHANNELS.md
// states them. Only launch, tiling and looping code is backend-specific.
#pragma once

#include <math.h>

#include "arrcoc/frame.h"
#include "half.h"
#include "hd.h"

namespace arrcoc::math {

// ---------------------------------------------------------------- input pixels

struct Rgb8 {
  int r, g, b;
};

// BT.601 limited range, integer fixed point (the classic 8-bit formulation), so every
// backend and the NumPy reference produce the same bytes.
ARRCOC_HD Rgb8 yuv_to_rgb8(int y, int u, int v) {
  const int c = y - 16, d = u - 128, e = v - 128;
  Rgb8 o;
  o.r = clampi((298 * c + 409 * e + 128) >> 8, 0, 255);
  o.g = clampi((298 * c - 100 * d - 208 * e + 128) >> 8, 0, 255);
  o.b = clampi((298 * c + 516 * d + 128) >> 8, 0, 255);
  return o;
}

// Pixel (x, y) of a frame whose format is known at compile time (the CPU instantiates one
// loop per format, which then vectorizes); load_rgb8 below dispatches at run time.
template <PixelFormat F>
ARRCOC_HD Rgb8 load_rgb8_as(const FrameView& f, int x, int y) {
  const uint8_t* row = f.planes[0] + static_cast<int64_t>(y) * f.row_stride[0];
  Rgb8 o;
  if constexpr (F == PixelFormat::kRGB24) {
    o.r = row[3 * x]; o.g = row[3 * x + 1]; o.b = row[3 * x + 2];
  } else if constexpr (F == PixelFormat::kBGR24) {
    o.b = row[3 * x]; o.g = row[3 * x + 1]; o.r = row[3 * x + 2];
  } else if constexpr (F == PixelFormat::kRGBA32) {
    o.r = row[4 * x]; o.g = row[4 * x + 1]; o.b = row[4 * x + 2];
  } else if constexpr (F == PixelFormat::kBGRA32) {
    o.b = row[4 * x]; o.g = row[4 * x + 1]; o.r = row[4 * x + 2];
  } else if constexpr (F == PixelFormat::kGRAY8) {
    o.r = o.g = o.b = row[x];
  } else if constexpr (F == PixelFormat::kRGBP) {
    const int64_t off = static_cast<int64_t>(y);
    o.r = row[x];
    o.g = f.planes[1][off * f.row_stride[1] + x];
    o.b = f.planes[2][off * f.row_stride[2] + x];
  } else if constexpr (F == PixelFormat::kNV12) {
    const uint8_t* uv = f.planes[1] + static_cast<int64_t>(y >> 1) * f.row_stride[1] + 2 * (x >> 1);
    o = yuv_to_rgb8(row[x], uv[0], uv[1]);
  } else {
    static_assert(F == PixelFormat::kYUV420P, "unhandled pixel format");
    const int64_t co = static_cast<int64_t>(y >> 1);
    o = yuv_to_rgb8(row[x], f.planes[1][co * f.row_stride[1] + (x >> 1)], f.planes[2][co * f.row_stride[2] + (x >> 1)]);
  }
  return o;
}

// Calls fn(PixelFormatTag<F>{}) for the run-time format f, so the callee is compiled per format.
// Formats are validated when a frame comes in (frame_checks.cpp); anything else reads as RGB24.
template <PixelFormat F>
struct PixelFormatTag {
  static constexpr PixelFormat value = F;
};
template <typename Fn>
ARRCOC_HD auto dispatch_pixel_format(PixelFormat f, Fn&& fn) {
  switch (f) {
    case PixelFormat::kBGR24: return fn(PixelFormatTag<PixelFormat::kBGR24>{});
    case PixelFormat::kRGBA32: return fn(PixelFormatTag<PixelFormat::kRGBA32>{});
    case PixelFormat::kBGRA32: return fn(PixelFormatTag<PixelFormat::kBGRA32>{});
    case PixelFormat::kGRAY8: return fn(PixelFormatTag<PixelFormat::kGRAY8>{});
    case PixelFormat::kNV12: return fn(PixelFormatTag<PixelFormat::kNV12>{});
    case PixelFormat::kYUV420P: return fn(PixelFormatTag<PixelFormat::kYUV420P>{});
    case PixelFormat::kRGBP: return fn(PixelFormatTag<PixelFormat::kRGBP>{});
    default: return fn(PixelFormatTag<PixelFormat::kRGB24>{});
  }
}

ARRCOC_HD Rgb8 load_rgb8(const FrameView& f, int x, int y) {
  return dispatch_pixel_format(f.format, [&](auto tag) { return load_rgb8_as<decltype(tag)::value>(f, x, y); });
}

// Integer luma (BT.601 weights in 8.8 fixed point); used where exactness matters:
// the entropy histogram and block matching.
ARRCOC_HD int luma8(Rgb8 c) { return (77 * c.r + 150 * c.g + 29 * c.b + 128) >> 8; }

constexpr int kEntropyBins = 8;                   // luma8 >> 5
ARRCOC_HD int entropy_bin(int y8) { return y8 >> 5; }

// ---------------------------------------------------------------- point channels

struct PointChannels {
  float r, g, b;  // ch 0..2, in [0,1]
  float lum;      // ch 3
  float rg, by;   // ch 15, 16: opponent colours
};

ARRCOC_HD PointChannels point_channels(Rgb8 c) {
  PointChannels p;
  p.r = static_cast<float>(c.r) / 255.0f;
  p.g = static_cast<float>(c.g) / 255.0f;
  p.b = static_cast<float>(c.b) / 255.0f;
  p.lum = 0.299f * p.r + 0.587f * p.g + 0.114f * p.b;
  p.rg = p.r - p.g;
  p.by = p.b - 0.5f * (p.r + p.g);
  return p;
}

// ch 5: distance of the pixel centre from the fixation point in frame-normalized
// coordinates, divided by the centre-to-corner distance sqrt(0.5), clamped to 1.
ARRCOC_HD float eccentricity(int x, int y, int w, int h, float fx, float fy) {
  const float du = (static_cast<float>(x) + 0.5f) / static_cast<float>(w) - fx;
  const float dv = (static_cast<float>(y) + 0.5f) / static_cast<float>(h) - fy;
  return minf(1.0f, sqrtf(du * du + dv * dv) * 1.41421356237f);
}

// ---------------------------------------------------------------- 3x3 neighbourhood

// Reads with edge replication (clamped coordinates), as the reference's np.pad(mode="edge").
template <typename T>
ARRCOC_HD float at_clamped(const T* p, int w, int h, int x, int y) {
  return load_texel(p + static_cast<int64_t>(clampi(y, 0, h - 1)) * w + clampi(x, 0, w - 1));
}

struct Gradient {
  float gx, gy;   // ch 6, 7: Sobel / 8, in [-0.5, 0.5] (magnitude at most sqrt(5) / 4)
  float mag;      // ch 8
  float highpass; // ch 9: |4-neighbour Laplacian| / 4, in [0, 1]
};

// The 3x3 stencil on three (already edge-clamped) rows and columns xm <= x <= xp.
ARRCOC_HD Gradient gradient_3x3_rows(const float* up, const float* mid, const float* down, int xm, int x, int xp) {
  const float a = up[xm], b = up[x], c = up[xp];
  const float d = mid[xm], e = mid[x], f = mid[xp];
  const float g = down[xm], k = down[x], l = down[xp];
  Gradient o;
  o.gx = ((c + 2.0f * f + l) - (a + 2.0f * d + g)) * 0.125f;
  o.gy = ((g + 2.0f * k + l) - (a + 2.0f * b + c)) * 0.125f;
  o.mag = sqrtf(o.gx * o.gx + o.gy * o.gy);
  o.highpass = absf(b + d + f + k - 4.0f * e) * 0.25f;
  return o;
}

ARRCOC_HD Gradient gradient_3x3(const float* L, int w, int h, int x, int y) {
  const float* mid = L + static_cast<int64_t>(y) * w;
  const float* up = L + static_cast<int64_t>(clampi(y - 1, 0, h - 1)) * w;
  const float* down = L + static_cast<int64_t>(clampi(y + 1, 0, h - 1)) * w;
  return gradient_3x3_rows(up, mid, down, clampi(x - 1, 0, w - 1), x, clampi(x + 1, 0, w - 1));
}

// ---------------------------------------------------------------- 5x5 box statistics
// The 5x5 windows (edge-replicated) are computed separably: a horizontal 5-tap sum, then a
// vertical one. The terms summed per pixel:
constexpr int kBoxRadius = 2;
constexpr int kBoxTaps = 2 * kBoxRadius + 1;
constexpr float kBoxArea = 25.0f;
// Summed per pixel: integer luma8 and its square (exact in int32: <= 25 * 255^2), gradient
// magnitude and |L - L_prev| (float), and the packed luma-bin one-hot (uint32).

// The luma-bin histogram as packed counters summed with plain integer adds, exactly, in 32-bit
// words (8 vector lanes on the CPU, where 64-bit words gave 4): a horizontal sum of 5 one-hots has
// counts <= 5, 4 bits per bin (bin b at bits 4b); the vertical sum of 5 of those, counts <= 25, is
// split into the even bins and the odd bins, 8 bits each (bin b at bits 8 * (b / 2) of its word).
ARRCOC_HD uint32_t bin_one_hot(int bin) { return 1u << (4 * bin); }
constexpr uint32_t kNibbles = 0x0F0F0F0Fu;
ARRCOC_HD uint32_t even_bins(uint32_t horizontal) { return horizontal & kNibbles; }
ARRCOC_HD uint32_t odd_bins(uint32_t horizontal) { return (horizontal >> 4) & kNibbles; }

// ch 4: standard deviation of luma8 over the 5x5 window, / 255. From exact integer moments:
// 625 * variance = 25 * sum(y^2) - sum(y)^2, so only the final square root rounds (float
// moments of float luminance lose ~1e-4 to cancellation in flat regions).
ARRCOC_HD float local_contrast(int sum_y, int sum_y2) {
  const int n = 25 * sum_y2 - sum_y * sum_y;  // both terms <= 25^2 * 255^2 < 2^31: exact in int32
  return sqrtf(static_cast<float>(n)) * (1.0f / (25.0f * 255.0f));
}

// c * log2(c) for the counts 0..25 a 5x5 window can hold (a table: no log per pixel).
ARRCOC_HD float count_log2_count(int c) {
  switch (c) {
    case 2: return 2.0f;
    case 3: return 4.7548875f;
    case 4: return 8.0f;
    case 5: return 11.6096405f;
    case 6: return 15.509775f;
    case 7: return 19.6514845f;
    case 8: return 24.0f;
    case 9: return 28.529325f;
    case 10: return 33.2192809f;
    case 11: return 38.0537478f;
    case 12: return 43.01955f;
    case 13: return 48.1057163f;
    case 14: return 53.3029689f;
    case 15: return 58.6033589f;
    case 16: return 64.0f;
    case 17: return 69.4868683f;
    case 18: return 75.05865f;
    case 19: return 80.7106228f;
    case 20: return 86.4385619f;
    case 21: return 92.2386659f;
    case 22: return 98.1074956f;
    case 23: return 104.041925f;
    case 24: return 110.0391f;
    case 25: return 116.096405f;
    default: return 0.0f;  // 0 and 1
  }
}

// ch 14: Shannon entropy of the 8-bin histogram of a 5x5 window, divided by log2(8).
// From s = sum over the bins of c log2 c (added in bin order 0..7):
constexpr float kLog2BoxArea = 4.64385618977f;  // log2(25)
ARRCOC_HD float entropy_from_sum(float s) {
  const float h = kLog2BoxArea - s / kBoxArea;  // log2(25) - sum(c log2 c)/25
  return maxf(0.0f, h) * (1.0f / 3.0f);
}
ARRCOC_HD uint32_t packed_bin_count(uint32_t even, uint32_t odd, int bin) {
  return ((bin & 1 ? odd : even) >> (8 * (bin >> 1))) & 0xFFu;
}
ARRCOC_HD float entropy_from_packed(uint32_t even, uint32_t odd) {
  float s = 0.0f;
  for (int b = 0; b < kEntropyBins; ++b) s += count_log2_count(static_cast<int>(packed_bin_count(even, odd, b)));
  return entropy_from_sum(s);
}

// ---------------------------------------------------------------- mip pyramid

// Level k+1 texel (i, j) = mean of the 2x2 block (2i..2i+1, 2j..2j+1) of level k; rows and
// columns past the edge of an odd-sized level replicate the last one, which equals the
// mean of the texels that exist.
ARRCOC_HD float box2(float top_left, float top_right, float bottom_left, float bottom_right) {
  return ((top_left + top_right) + (bottom_left + bottom_right)) * 0.25f;
}

template <typename T>
ARRCOC_HD float mip_box2(const T* src, int sw, int sh, int i, int j) {
  const int x0 = 2 * j, x1 = x0 + 1 < sw ? x0 + 1 : sw - 1;
  const int y0 = 2 * i, y1 = y0 + 1 < sh ? y0 + 1 : sh - 1;
  const T* r0 = src + static_cast<int64_t>(y0) * sw;
  const T* r1 = src + static_cast<int64_t>(y1) * sw;
  return box2(load_texel(r0 + x0), load_texel(r0 + x1), load_texel(r1 + x0), load_texel(r1 + x1));
}

// One axis of a bilinear sample at texel coordinate x (texel centres at integers) on an axis of n
// texels: the two edge-replicated texel indices around x and the weight of the second.
struct BilinearTap {
  int i0, i1;
  float t;
};
ARRCOC_HD BilinearTap bilinear_tap(float x, int n) {
  const float xf = floorf(x);
  const int x0 = static_cast<int>(xf);
  return BilinearTap{clampi(x0, 0, n - 1), clampi(x0 + 1, 0, n - 1), x - xf};
}

// Linear interpolation from a (t = 0) to b (t = 1): one axis of a bilinear sample.
ARRCOC_HD float lerp(float a, float b, float t) { return a + (b - a) * t; }

// Bilinear mix of the four corners a (x0, y0), b (x1, y0), c (x0, y1), d (x1, y1): along x, then
// y (the CPU's separable saliency sampling does the x step once per source row, the same way).
ARRCOC_HD float bilinear_mix(float a, float b, float c, float d, float tx, float ty) {
  return lerp(lerp(a, b, tx), lerp(c, d, tx), ty);
}

// Bilinear sample of a plane of row pitch w (float or float16 bits) at precomputed taps.
template <typename T>
ARRCOC_HD float sample_taps(const T* p, int w, const BilinearTap& tx, const BilinearTap& ty) {
  const T* r0 = p + static_cast<int64_t>(ty.i0) * w;
  const T* r1 = p + static_cast<int64_t>(ty.i1) * w;
  return bilinear_mix(load_texel(r0 + tx.i0), load_texel(r0 + tx.i1), load_texel(r1 + tx.i0), load_texel(r1 + tx.i1),
                      tx.t, ty.t);
}

// Bilinear sample of a w x h plane at texel coordinates (x, y) (texel centres at integers),
// edge-replicated.
template <typename T>
ARRCOC_HD float sample_bilinear(const T* p, int w, int h, float x, float y) {
  return sample_taps(p, w, bilinear_tap(x, w), bilinear_tap(y, h));
}

// Where the centre of texel (i, j) of level `from` falls in texel coordinates of level `to`.
ARRCOC_HD float level_coord(int index, int from, int to) {
  return (static_cast<float>(index) + 0.5f) * ldexpf(1.0f, from - to) - 0.5f;
}

// ---------------------------------------------------------------- saliency (ch 11, level 1)

// Float32 pyramids of the three saliency features: luminance, R-G, B-Y.
struct FeaturePyramids {
  const float* level[3][5];  // [feature][level]
  int width[5];
  int height[5];
};

// Where level-1 texel index `index` samples levels 2, 3, 4 along one axis of n[2..4] texels.
// Separable: a row's taps along x are shared by every row (the CPU computes them once).
struct SaliencyTaps {
  BilinearTap at[3];  // levels 2, 3, 4
};
ARRCOC_HD SaliencyTaps saliency_taps(int index, const int n[5]) {
  SaliencyTaps t;
  for (int k = 2; k < 5; ++k) t.at[k - 2] = bilinear_tap(level_coord(index, 1, k), n[k]);
  return t;
}

// One feature's centre-surround from its level-1 value c1 and its samples s2, s3, s4 of levels 2-4.
ARRCOC_HD float centre_surround_of(float c1, float s2, float s3, float s4) {
  return 0.5f * (absf(c1 - s3) + absf(s2 - s4));
}

// Centre-surround (Itti-Koch style) of each feature at level-1 texel (i, j) given its taps:
// centres at levels 1 and 2, surrounds two levels coarser (3 and 4).
ARRCOC_HD void centre_surround(const FeaturePyramids& P, int i, int j, const SaliencyTaps& tx, const SaliencyTaps& ty,
                               float cs[3]) {
  for (int f = 0; f < 3; ++f) {
    float s[3];  // levels 2, 3, 4
    for (int k = 0; k < 3; ++k) s[k] = sample_taps(P.level[f][k + 2], P.width[k + 2], tx.at[k], ty.at[k]);
    cs[f] = centre_surround_of(P.level[f][1][static_cast<int64_t>(i) * P.width[1] + j], s[0], s[1], s[2]);
  }
}

// Peaks are counted on a grid of blocks of kSaliencyBlock x kSaliencyBlock level-1 texels (16 px).
constexpr int kSaliencyBlock = 8;
ARRCOC_HD int saliency_blocks(int n1) { return (n1 + kSaliencyBlock - 1) / kSaliencyBlock; }

// Largest value of block (bi, bj) of a level-1 map (partial blocks at the edges).
ARRCOC_HD float block_max(const float* map, int w, int h, int bi, int bj) {
  float m = 0.0f;
  for (int i = bi * kSaliencyBlock; i < h && i < (bi + 1) * kSaliencyBlock; ++i)
    for (int j = bj * kSaliencyBlock; j < w && j < (bj + 1) * kSaliencyBlock; ++j)
      m = maxf(m, map[static_cast<int64_t>(i) * w + j]);
  return m;
}

// Exact sums of non-negative values, the same bits in any order: each value is clamped to
// [0, kExactSumMax] (exact_sum_value; NaN as 0, so a largest value is order-free too: a NaN met
// midway would reset a running max) and counted in integer units of 2^-40 (exact_sum_term; what
// lies below a unit is dropped, less than one unit per value). n <= 2^20 values (the saliency block
// maxima of a 16384-pixel-square frame) cannot overflow 64 bits. Used by the repetition gain
// (centre-surround maxima are <= 2, scores <= 1) and the context network's score means.
constexpr double kExactSumUnit = 1099511627776.0;  // 2^40
constexpr float kExactSumMax = 4.0f;
ARRCOC_HD float exact_sum_value(float v) { return v > 0.0f ? (v < kExactSumMax ? v : kExactSumMax) : 0.0f; }
ARRCOC_HD unsigned long long exact_sum_term(float value) {  // of an exact_sum_value (exact scaling, truncated)
  return static_cast<unsigned long long>(static_cast<double>(value) * kExactSumUnit);
}
// The mean of n values from their exact sum (0 for none).
ARRCOC_HD float exact_sum_mean(unsigned long long sum, int64_t n) {
  return n > 0 ? static_cast<float>(static_cast<double>(sum) / kExactSumUnit / static_cast<double>(n)) : 0.0f;
}

// Repetition gain of n non-negative values (after Itti-Koch's map normalization N): (1 - mbar/M)^2,
// with M the largest value and mbar the mean of the others. Values whose peaks repeat everywhere
// (texture: grass, foliage) get little weight, a few distinct peaks (an object) a lot. Used on a
// centre-surround map's block maxima (saliency) and on the candidates' information scores. Unlike
// N, nothing is rescaled by 1/M: a map with almost no contrast (an opponent channel of a grey
// scene) would turn its noise into full-range peaks. 0 when all are 0.
// Its sum is exact (above), so one thread's loop and a block's reduction give the same bits.
// From the values' exact sum, their largest exact_sum_value and n:
ARRCOC_HD float repetition_gain_from(unsigned long long sum, float peak, int64_t n) {
  if (!(peak > 0.0f)) return 0.0f;
  const double others = static_cast<double>(sum - exact_sum_term(peak)) / kExactSumUnit;
  const double mean_others = n > 1 ? others / static_cast<double>(n - 1) : 0.0;
  const double r = 1.0 - mean_others / static_cast<double>(peak);
  return static_cast<float>(r * r);
}
ARRCOC_HD float repetition_gain(const float* values, int n) {
  unsigned long long sum = 0;
  float peak = 0.0f;
  for (int b = 0; b < n; ++b) {
    const float v = exact_sum_value(values[b]);
    sum += exact_sum_term(v);
    peak = maxf(peak, v);
  }
  return repetition_gain_from(sum, peak, n);
}

// Saliency (ch 11) at one texel from the three maps and their gains; features weighted (1, 1/2,
// 1/2) (opponent features span [-1, 1]) and averaged, so it lies in [0, 1].
ARRCOC_HD float saliency_combine(const float cs[3], const float gain[3]) {
  return (gain[0] * cs[0] + 0.5f * gain[1] * cs[1] + 0.5f * gain[2] * cs[2]) * (1.0f / 3.0f);
}

// ---------------------------------------------------------------- motion vectors (ch 35, 36)

constexpr int kMotionSearchRadius = 4;  // level-2 texels = +-16 pixels at level 0
constexpr int kMotionBlock = 4;         // level-2 texels per block side = one 16-pixel patch

// Level-2 luma for block matching: integer sum of luma8 over the 4x4 pixel block,
// edge-replicated (0..4080, exact).
ARRCOC_HD int luma_sum_4x4(const uint8_t* y8, int w, int h, int i, int j) {
  int s = 0;
  for (int dy = 0; dy < 4; ++dy) {
    const uint8_t* row = y8 + static_cast<int64_t>(clampi(4 * i + dy, 0, h - 1)) * w;
    for (int dx = 0; dx < 4; ++dx) s += row[clampi(4 * j + dx, 0, w - 1)];
  }
  return s;
}

// The best displacement so far of a block-matching search. Tie rule: a lower SAD wins; equal
// SADs go to the shorter displacement (dx^2 + dy^2); still equal, the candidate offered first
// (scan order: dy outer, dx inner) stays.
struct MotionMatch {
  int sad = 0x7fffffff, d2 = 0x7fffffff, dx = 0, dy = 0;
  ARRCOC_HD void offer(int candidate_sad, int cdx, int cdy) {
    const int cd2 = cdx * cdx + cdy * cdy;
    if (candidate_sad < sad || (candidate_sad == sad && cd2 < d2)) {
      sad = candidate_sad;
      d2 = cd2;
      dx = cdx;
      dy = cdy;
    }
  }
  // The motion in level-0 pixels (level-2 texels are 4 pixels): content at p now was at
  // p - motion in the previous frame.
  ARRCOC_HD void write(float* mx, float* my) const {
    *mx = static_cast<float>(-4 * dx);
    *my = static_cast<float>(-4 * dy);
  }
};

// Full search of block (bi, bj) of the current level-2 luma in the previous one.
// Exact integer SAD; ties go to the shorter displacement, then to the first in scan order,
// so every backend picks the same vector. Returns the motion in level-0 pixels: content at
// p now was at p - motion in the previous frame.
ARRCOC_HD void block_match(const uint16_t* cur, const uint16_t* prev, int w2, int h2, int bi,
                           int bj, float* mx, float* my) {
  const int i0 = bi * kMotionBlock, j0 = bj * kMotionBlock;
  const int i1 = i0 + kMotionBlock < h2 ? i0 + kMotionBlock : h2;
  const int j1 = j0 + kMotionBlock < w2 ? j0 + kMotionBlock : w2;
  MotionMatch best;
  for (int dy = -kMotionSearchRadius; dy <= kMotionSearchRadius; ++dy) {
    for (int dx = -kMotionSearchRadius; dx <= kMotionSearchRadius; ++dx) {
      int sad = 0;
      for (int i = i0; i < i1; ++i) {
        const uint16_t* pr = prev + static_cast<int64_t>(clampi(i + dy, 0, h2 - 1)) * w2;
        const uint16_t* cr = cur + static_cast<int64_t>(i) * w2;
        for (int j = j0; j < j1; ++j) {
          const int d = static_cast<int>(cr[j]) - static_cast<int>(pr[clampi(j + dx, 0, w2 - 1)]);
          sad += d < 0 ? -d : d;
        }
      }
      best.offer(sad, dx, dy);
    }
  }
  best.write(mx, my);
}

}  // namespace arrcoc::math
