// CPU backend of the texture stage: row-parallel loops (the shared pool, parallel.h) over the
// shared formulas of csrc/shared/texture_math.h. The same values as csrc/cuda/texture_cuda.cu's
// kernels, with the passes fused per group of rows so rows are reused while in cache.
//
// Rows are processed in chunks: values are computed in float into stack buffers and then
// stored in bulk (8 float16 conversions per F16C instruction when built for x86-64-v3), which
// keeps the per-element code free of storage concerns.
#include "texture_cpu.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>
#include <vector>

#include "parallel.h"
#include "texel_rows.h"
#include "../shared/texture_params.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace arrcoc::cpu {
namespace {

using namespace arrcoc::math;

constexpr int kChunk = 256;  // pixels per row chunk (stack buffers of kChunk floats)

// count_log2_count() for every 5-bit field value, as an array the CPU loops can index.
struct CountLog2CountTable {
  float value[32];
  CountLog2CountTable() {
    for (int c = 0; c < 32; ++c) value[c] = count_log2_count(c);
  }
};
const CountLog2CountTable kCountLog2Count;

#if defined(__AVX2__) && defined(__GNUC__)
// Entropy of n pixels from their packed vertical bin counts, 16 at a time where the CPU has
// AVX-512: the 32-entry count_log2_count table is one two-register permute (vpermt2ps) per bin,
// where AVX2 needs four permutes and three blends. The same table values added in the same bin
// order, then entropy_from_sum's arithmetic: the same bits as the AVX2 and scalar paths. Returns
// how many pixels it did (a multiple of 16); the caller does the rest.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12's own masked-intrinsic wrappers
__attribute__((target("avx512f"))) int entropy_rows_avx512(const uint32_t* even, const uint32_t* odd, float* out,
                                                            int n) {
  const __m512 table_lo = _mm512_loadu_ps(kCountLog2Count.value);
  const __m512 table_hi = _mm512_loadu_ps(kCountLog2Count.value + 16);
  const __m512i byte = _mm512_set1_epi32(0xFF);
  const __m512 log2_25 = _mm512_set1_ps(kLog2BoxArea), area = _mm512_set1_ps(kBoxArea);
  const __m512 third = _mm512_set1_ps(1.0f / 3.0f), zero = _mm512_setzero_ps();
  int k = 0;
  for (; k + 16 <= n; k += 16) {
    const __m512i words[2] = {_mm512_loadu_si512(even + k), _mm512_loadu_si512(odd + k)};
    __m512 sum = zero;
    for (int bin = 0; bin < kEntropyBins; ++bin) {
      const __m512i idx = _mm512_and_si512(_mm512_srli_epi32(words[bin & 1], 8 * (bin >> 1)), byte);
      sum = _mm512_add_ps(sum, _mm512_permutex2var_ps(table_lo, idx, table_hi));
    }
    const __m512 h = _mm512_sub_ps(log2_25, _mm512_div_ps(sum, area));
    _mm512_storeu_ps(out + k, _mm512_mul_ps(_mm512_max_ps(zero, h), third));
  }
  return k;
}

// 16 floats from a float16 or float32 row, and back (float16 rounded to nearest even, as F16C).
__attribute__((target("avx512f"))) inline __m512 load16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
__attribute__((target("avx512f"))) inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
__attribute__((target("avx512f"))) inline void store16(uint16_t* p, __m512 v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}
__attribute__((target("avx512f"))) inline void store16(float* p, __m512 v) { _mm512_storeu_ps(p, v); }

// One mip level's row from two source rows, 16 outputs from 32 source columns at a time where the
// CPU has AVX-512: each row's even and odd columns gathered by two two-register permutes and added
// (tl + tr, bl + br), then box2's arithmetic, ((tl + tr) + (bl + br)) * 0.25: the same bits as the
// AVX2 and scalar paths. Returns how many outputs it did (a multiple of 16); the caller does the rest.
template <typename T>
__attribute__((target("avx512f"))) int mip_pair_avx512(const T* r0, const T* r1, int sw, T* out, int dw) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512 quarter = _mm512_set1_ps(0.25f);
  int j0 = 0;
  for (; j0 + 16 <= dw && 2 * j0 + 32 <= sw; j0 += 16) {  // (a lambda would not inherit the target)
    const __m512 a0 = load16(r0 + 2 * j0), a1 = load16(r0 + 2 * j0 + 16);
    const __m512 b0 = load16(r1 + 2 * j0), b1 = load16(r1 + 2 * j0 + 16);
    const __m512 top = _mm512_add_ps(_mm512_permutex2var_ps(a0, even, a1), _mm512_permutex2var_ps(a0, odd, a1));
    const __m512 bottom = _mm512_add_ps(_mm512_permutex2var_ps(b0, even, b1), _mm512_permutex2var_ps(b0, odd, b1));
    store16(out + j0, _mm512_mul_ps(_mm512_add_ps(top, bottom), quarter));
  }
  return j0;
}
#pragma GCC diagnostic pop

// Whether the AVX-512 paths (entropy_rows_avx512, mip_pair_avx512) may run: the CPU has AVX-512F
// and ARRCOC_CPU_NO_AVX512 is not set (the tests compare both paths).
bool use_avx512() {
  static const bool use = __builtin_cpu_supports("avx512f") && std::getenv("ARRCOC_CPU_NO_AVX512") == nullptr;
  return use;
}
#endif

// Calls body(x0, n) for each chunk [x0, x0 + n) of a w-pixel row.
template <typename F>
inline void for_chunks(int w, F&& body) {
  for (int x0 = 0; x0 < w; x0 += kChunk) body(x0, std::min(kChunk, w - x0));
}

// One mip level of a plane, from the stored level above: rows of the source are loaded in
// float chunks, the 2x2 box is the shared box2().
template <typename T>
void mip_pair(const T* r0, const T* r1, int sw, T* out, int dw) {
  int j0 = 0;
#if defined(__AVX2__) && defined(__F16C__)
#if defined(__GNUC__)
  if (use_avx512()) j0 = mip_pair_avx512(r0, r1, sw, out, dw);  // the AVX2 loops below finish the row
#endif
  if constexpr (std::is_same_v<T, uint16_t>) {
    // float16 rows, 8 outputs from 16 source columns at a time in registers: pairwise sums of each
    // row (hadd: a0+a1, a2+a3, a8+a9, ... per 128-bit lane), their sum, * 0.25, lanes put back in
    // order. box2's arithmetic exactly: ((tl + tr) + (bl + br)) * 0.25.
    const __m256 quarter = _mm256_set1_ps(0.25f);
    for (; j0 + 8 <= dw && 2 * j0 + 16 <= sw; j0 += 8) {
      auto pairs = [&](const uint16_t* row) {
        const __m256 lo = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * j0)));
        const __m256 hi = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * j0 + 8)));
        return _mm256_hadd_ps(lo, hi);
      };
      const __m256 box = _mm256_mul_ps(_mm256_add_ps(pairs(r0), pairs(r1)), quarter);
      const __m256 ordered = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(box), 0xD8));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + j0), _mm256_cvtps_ph(ordered, _MM_FROUND_TO_NEAREST_INT));
    }
  }
  if constexpr (std::is_same_v<T, float>) {
    // float rows (the saliency features, a float32 texture): the same 8 outputs at a time, read
    // in place (the chunk path below copies each row to the stack first).
    const __m256 quarter = _mm256_set1_ps(0.25f);
    for (; j0 + 8 <= dw && 2 * j0 + 16 <= sw; j0 += 8) {
      auto pairs = [&](const float* row) {
        return _mm256_hadd_ps(_mm256_loadu_ps(row + 2 * j0), _mm256_loadu_ps(row + 2 * j0 + 8));
      };
      const __m256 box = _mm256_mul_ps(_mm256_add_ps(pairs(r0), pairs(r1)), quarter);
      _mm256_storeu_ps(out + j0, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(box), 0xD8)));
    }
  }
#endif
  for (; j0 < dw; j0 += kChunk / 2) {
    const int n = std::min(kChunk / 2, dw - j0);
    const int xs = 2 * j0, xn = std::min(2 * n, sw - xs);  // source columns available
    float a[kChunk + 1], b[kChunk + 1], box[kChunk / 2];
    load_row(r0 + xs, a, xn);
    load_row(r1 + xs, b, xn);
    a[xn] = a[xn - 1];  // odd width: replicate the last column
    b[xn] = b[xn - 1];
    for (int k = 0; k < n; ++k) box[k] = box2(a[2 * k], a[2 * k + 1], b[2 * k], b[2 * k + 1]);
    store_row(box, out + j0, n);
  }
}

// Row i of a plane's next mip level (dw wide) from rows 2i and 2i + 1 of the plane (sw x sh).
template <typename T>
void mip_row(const T* src, int sw, int sh, T* dst, int dw, int i) {
  mip_pair(src + static_cast<int64_t>(2 * i) * sw, src + static_cast<int64_t>(std::min(2 * i + 1, sh - 1)) * sw, sw,
           dst + static_cast<int64_t>(i) * dw, dw);
}

// Level-0 rows of the channels the passes compute: the plane's rows for a channel the texture keeps
// at level 0, else two rows (by parity) of a per-thread buffer. Such a row lives only until the
// pass has made its level-1 row (every pass makes a pair's mips on the thread that wrote it), so
// a level-0 plane no later stage reads costs no memory traffic (TexturePlanes::kPipeline).
template <typename T>
class Level0Rows {
 public:
  explicit Level0Rows(const TextureParams& p) : p_(p) {
    thread_local std::vector<T> rows;  // [channel 0..16][row parity][w]
    const size_t n = static_cast<size_t>(kLevel0Channels) * 2 * p.width;
    if (p.level0_kept != kAllLevel0Kept && rows.size() < n) rows.resize(n);
    scratch_ = rows.data();
  }
  T* row(int c, int y) const {
    if (p_.level0_kept >> c & 1u) return texture_plane<T>(p_, c, 0) + static_cast<int64_t>(y) * p_.width;
    return scratch_ + (static_cast<int64_t>(c) * 2 + (y & 1)) * p_.width;
  }

 private:
  const TextureParams& p_;
  T* scratch_;
};

// Levels 1 and 2 of the given level-0 channels (and of the float feature planes when given
// feature_pair) as soon as the rows they need exist: after level-0 row y, level-1 row y / 2 if y ends it, then
// level-2 row y / 4 if that ends it. The rows were just written by the pass calling this and are
// still in cache, where a later pass over whole planes would read them from memory again. The same
// box2 of the same stored values as that pass would compute.
// Not inlined: inside the passes' loops it would push their own per-pixel calls out of line.
// feature_pair[2f], [2f + 1] are rows 2i and 2i + 1 of feature f at level 0 (the point pass keeps
// R-G and B-Y there only: nothing else reads their level 0).
template <typename T, size_t N>
__attribute__((noinline)) void mip_rows_after(const TextureParams& p, const Level0Rows<T>& level0,
                                              const int (&channels)[N], int y,
                                              const float* const* feature_pair = nullptr) {
  for (int k = 1; k <= 2; ++k) {
    const LevelLayout& s = p.levels[k - 1];
    const LevelLayout& d = p.levels[k];
    const int src_row = y >> (k - 1);
    if (src_row % 2 == 0 && src_row + 1 < s.height) return;  // the pair is not complete yet
    const int i = src_row / 2;
    for (int c : channels) {
      T* out = texture_plane<T>(p, c, k) + static_cast<int64_t>(i) * d.width;
      if (k == 1)
        mip_pair(level0.row(c, 2 * i), level0.row(c, std::min(2 * i + 1, s.height - 1)), s.width, out, d.width);
      else
        mip_row(texture_plane<T>(p, c, k - 1), s.width, s.height, texture_plane<T>(p, c, k), d.width, i);
    }
    if (feature_pair)
      for (int f = 0; f < 3; ++f) {
        if (k == 1)
          mip_pair(feature_pair[2 * f], feature_pair[2 * f + 1], s.width, p.feature[f][1] + static_cast<int64_t>(i) * d.width,
                   d.width);
        else
          mip_row(p.feature[f][k - 1], s.width, s.height, p.feature[f][k], d.width, i);
      }
  }
}

// Pass 1 (point channels) for frames of pixel format F: one instantiation per format, so the
// pixel loads carry no per-pixel format switch and the loop vectorizes.
template <typename T, PixelFormat F>
void point_pass(const TextureParams& p) {
  const int w = p.width, h = p.height, nt = p.num_threads;
  // Locals, not p's fields, inside the loop: stores through uint8_t* may alias anything, which
  // would make the compiler reload every field of p per pixel.
  const FrameView frame = p.frame;
  const float fx = p.fixation_x, fy = p.fixation_y;
  float* const lum_f = p.feature[0][0];
  uint8_t* const y8s = p.y8;
  constexpr int kWritten[] = {0, 1, 2, 3, 5, 15, 16};
  auto point_row = [&](const Level0Rows<T>& level0, int y, float* rg_row, float* by_row) {
    const int64_t row = static_cast<int64_t>(y) * w;
    T* const red = level0.row(0, y);
    T* const green = level0.row(1, y);
    T* const blue = level0.row(2, y);
    T* const lum = level0.row(3, y);
    T* const ecc = level0.row(5, y);
    T* const opp_rg = level0.row(15, y);
    T* const opp_by = level0.row(16, y);
    for_chunks(w, [&](int x0, int n) {
      // Luminance, R-G and B-Y go straight to their float rows (no conversion to batch), which the
      // float16 stores below then read back from cache. (Bytes are stored through a stack row:
      // a byte store may alias anything, and the loop would reload the captured variables.)
      const int64_t i = row + x0;
      float* const l = lum_f + i;
      float* const rg = rg_row + x0;
      float* const by = by_row + x0;
      float r[kChunk], g[kChunk], b[kChunk], e[kChunk];
      uint8_t yv[kChunk];
      const float fxl = fx, fyl = fy;  // locals: a float store through l could alias the captured ones
      const int wl = w, hl = h, yl = y;
      // 4:2:0 formats: the row's luma and its chroma repeated per pixel first, so the loop below
      // reads three contiguous byte rows and vectorizes (indexing chroma by x / 2 inside it does not).
      constexpr bool kYuv = F == PixelFormat::kYUV420P || F == PixelFormat::kNV12;
      uint8_t luma[kYuv ? kChunk : 1], cb[kYuv ? kChunk : 1], cr[kYuv ? kChunk : 1];
      if constexpr (kYuv) {
        const uint8_t* yrow = frame.planes[0] + static_cast<int64_t>(y) * frame.row_stride[0] + x0;
        std::memcpy(luma, yrow, n);
        const int64_t co = static_cast<int64_t>(y >> 1);
        if constexpr (F == PixelFormat::kYUV420P) {
          const uint8_t* u = frame.planes[1] + co * frame.row_stride[1];
          const uint8_t* v = frame.planes[2] + co * frame.row_stride[2];
          for (int k = 0; k < n; ++k) cb[k] = u[(x0 + k) >> 1];
          for (int k = 0; k < n; ++k) cr[k] = v[(x0 + k) >> 1];
        } else {
          const uint8_t* uv = frame.planes[1] + co * frame.row_stride[1];
          for (int k = 0; k < n; ++k) cb[k] = uv[2 * ((x0 + k) >> 1)];
          for (int k = 0; k < n; ++k) cr[k] = uv[2 * ((x0 + k) >> 1) + 1];
        }
      }
      for (int k = 0; k < n; ++k) {
        const int x = x0 + k;
        Rgb8 c;
        if constexpr (kYuv)
          c = yuv_to_rgb8(luma[k], cb[k], cr[k]);
        else
          c = load_rgb8_as<F>(frame, x, y);
        const PointChannels pc = point_channels(c);
        r[k] = pc.r;
        g[k] = pc.g;
        b[k] = pc.b;
        e[k] = eccentricity(x, yl, wl, hl, fxl, fyl);
        l[k] = pc.lum;
        rg[k] = pc.rg;
        by[k] = pc.by;
        yv[k] = static_cast<uint8_t>(luma8(c));
      }
      std::memcpy(y8s + i, yv, n);
      store_row(r, red + x0, n);
      store_row(g, green + x0, n);
      store_row(b, blue + x0, n);
      store_row(l, lum + x0, n);
      store_row(rg, opp_rg + x0, n);
      store_row(by, opp_by + x0, n);
      store_row(e, ecc + x0, n);
    });
  };
  // In parallel over level-2 rows j: level-0 rows 4j .. 4j + 3, each followed by the mips its pair
  // or quad of rows completes; R-G and B-Y of the current row pair in two rows each of a per-thread
  // buffer that stays in cache, instead of full float planes written and read back.
  parallel_for(p.levels[2].height, nt, [&](int j) {
    thread_local std::vector<float> pair_rows;  // [R-G, B-Y][row parity][w]
    if (pair_rows.size() < 4 * static_cast<size_t>(w)) pair_rows.resize(4 * static_cast<size_t>(w));
    float* const rows = pair_rows.data();
    const Level0Rows<T> level0(p);
    for (int y = 4 * j; y < 4 * j + 4 && y < h; ++y) {
      point_row(level0, y, rows + (y & 1) * w, rows + (2 + (y & 1)) * w);
      const int ya = y & ~1, yb = std::min(ya + 1, h - 1);  // the pair's rows (the same one at an odd end)
      const float* const pair[6] = {lum_f + static_cast<int64_t>(ya) * w, lum_f + static_cast<int64_t>(yb) * w,
                                    rows + (ya & 1) * w, rows + (yb & 1) * w,
                                    rows + (2 + (ya & 1)) * w, rows + (2 + (yb & 1)) * w};
      mip_rows_after<T>(p, level0, kWritten, y, pair);
    }
  });
}

template <typename T>
void build_level0(const TextureParams& p) {
  const int w = p.width, h = p.height, nt = p.num_threads;
  const float* L = p.feature[0][0];

  // Pass 1: point channels from the frame's pixels.
  dispatch_pixel_format(p.frame.format, [&](auto tag) { point_pass<T, decltype(tag)::value>(p); });

  // Passes 2-4, fused per band of rows: each row's 3x3 derivatives (stored as channels 6-9) and
  // frame difference go into one row of gradient magnitude and one of difference (the band's own,
  // in cache: no full-frame planes written and read back), their horizontal 5-tap sums into a 5-row
  // ring buffer (the hsum scratch holds one ring per band), and the vertical sums read the ring.
  // Same values and the same sums in the same order as the separate passes (and the CUDA kernels).
  const float* const lum_prev = p.lum_prev;
  const bool motion_valid = p.motion_valid;
  constexpr int kGradientPlanes[] = {6, 7, 8, 9};
  // Row y's gradient magnitude and |L - L_prev| into mag_row / diff_row; channels 6-9 of the row
  // stored too when `store` (each row once, by the band it belongs to).
  auto gradient_row = [&](const Level0Rows<T>& level0, int y, float* mag_row, float* diff_row, bool store) {
    const int64_t row = static_cast<int64_t>(y) * w;
    for_chunks(w, [&](int x0, int n) {
      float bx[kChunk], by[kChunk], bh[kChunk];
      float* const bm = mag_row + x0;  // straight to the band's row (float: nothing to batch)
      const float* mid = L + row;
      const float* up = L + static_cast<int64_t>(std::max(y - 1, 0)) * w;
      const float* down = L + static_cast<int64_t>(std::min(y + 1, h - 1)) * w;
      auto at = [&](int k, int xm, int xp) {
        const Gradient g = gradient_3x3_rows(up, mid, down, xm, x0 + k, xp);
        bx[k] = g.gx;
        by[k] = g.gy;
        bh[k] = g.highpass;
        bm[k] = g.mag;
      };
      // the row's first and last pixels clamp their neighbours; the loop between does not
      // (contiguous loads: it vectorizes)
      int k = 0;
      if (x0 == 0) at(k++, 0, std::min(1, w - 1));
      const int end = x0 + n == w ? n - 1 : n;
      for (; k < end; ++k) at(k, x0 + k - 1, x0 + k + 1);
      if (k < n) at(k, x0 + k - 1, x0 + k);
      const int64_t i = row + x0;
      if (motion_valid)
        for (int q = 0; q < n; ++q) diff_row[x0 + q] = absf(L[i + q] - lum_prev[i + q]);
      else
        std::fill(diff_row + x0, diff_row + x0 + n, 0.0f);
      if (store) {
        store_row(bx, level0.row(6, y) + x0, n);
        store_row(by, level0.row(7, y) + x0, n);
        store_row(bm, level0.row(8, y) + x0, n);
        store_row(bh, level0.row(9, y) + x0, n);
      }
    });
  };
  // The horizontal sums of row src_y from its gradient row (computed here, into the band's rows).
  auto horizontal_row = [&](const Level0Rows<T>& level0, int src_y, int64_t out_row, float* mag_row, float* diff_row,
                            bool store) {
    gradient_row(level0, src_y, mag_row, diff_row, store);
    TextureParams q = p;  // the shared sums read row 0 of these: this row's terms
    const int64_t row = static_cast<int64_t>(src_y) * w;
    q.y8 = p.y8 + row;
    q.mag = mag_row;
    q.diff = diff_row;
    const int lo = std::min(kBoxRadius, w), hi = std::max(lo, w - kBoxRadius);
    for (int x = 0; x < lo; ++x) horizontal_box_sums(q, 0, out_row, x, ClampedColumn{w});
    // Inside: one loop per sum (the unused ones are dead code), each of one element type, stored
    // through restrict pointers: GCC vectorizes none of this as one mixed-width loop writing
    // through p's pointers (they might alias the inputs), and each of these loops fully.
    {
      int32_t* __restrict sy = p.hsum_y + out_row;
      int32_t* __restrict sy2 = p.hsum_y2 + out_row;
      float* __restrict sm = p.hsum_mag + out_row;
      float* __restrict sd = p.hsum_diff + out_row;
      uint32_t* __restrict sb = p.hbins + out_row;
      for (int x = lo; x < hi; ++x) sy[x] = horizontal_box_sums_at(q, 0, x, InsideColumn{}).y;
      for (int x = lo; x < hi; ++x) sy2[x] = horizontal_box_sums_at(q, 0, x, InsideColumn{}).y2;
      for (int x = lo; x < hi; ++x) sm[x] = horizontal_box_sums_at(q, 0, x, InsideColumn{}).mag;
      for (int x = lo; x < hi; ++x) sd[x] = horizontal_box_sums_at(q, 0, x, InsideColumn{}).diff;
      for (int x = lo; x < hi; ++x) sb[x] = horizontal_box_sums_at(q, 0, x, InsideColumn{}).bins;
    }
    for (int x = hi; x < w; ++x) horizontal_box_sums(q, 0, out_row, x, ClampedColumn{w});
  };
  auto vertical_row = [&](const Level0Rows<T>& level0, int y, const int64_t rows[kBoxTaps]) {
    for_chunks(w, [&](int x0, int n) {
      float bc[kChunk], be[kChunk], bm[kChunk], bt[kChunk];
      uint32_t even[kChunk], odd[kChunk];
      // one loop per element type, as in horizontal_row (the unused sums are dead code)
      for (int k = 0; k < n; ++k) {
        const BoxSums s = vertical_box_sums_rows(p, rows, x0 + k);
        bc[k] = local_contrast(s.y, s.y2);
      }
      for (int k = 0; k < n; ++k) be[k] = vertical_box_sums_rows(p, rows, x0 + k).mag / kBoxArea;
      for (int k = 0; k < n; ++k) bm[k] = vertical_box_sums_rows(p, rows, x0 + k).diff / kBoxArea;
      for (int k = 0; k < n; ++k) even[k] = vertical_box_sums_rows(p, rows, x0 + k).bins_even;
      for (int k = 0; k < n; ++k) odd[k] = vertical_box_sums_rows(p, rows, x0 + k).bins_odd;
      // entropy: the same sum as entropy_from_packed(), with count_log2_count() read from a
      // table, out of the loop above, which then vectorizes
      int k = 0;
#if defined(__AVX2__) && defined(__GNUC__)
      if (use_avx512()) k = entropy_rows_avx512(even, odd, bt, n);
#endif
#if defined(__AVX2__)
      // 8 pixels at a time: each bin's 8-bit counts (a byte of the even or the odd word) as 8 int32
      // table indices, looked up in registers (the 32-entry table as four 8-lane permutes, picked by index bits 3
      // and 4: cheaper than gathers) and added in bin order (the scalar sum's order, lane by lane);
      // entropy_from_sum's arithmetic on the lanes (max(0, h) picks h at h == 0, as maxf does).
      const __m256 table[4] = {_mm256_loadu_ps(kCountLog2Count.value), _mm256_loadu_ps(kCountLog2Count.value + 8),
                               _mm256_loadu_ps(kCountLog2Count.value + 16), _mm256_loadu_ps(kCountLog2Count.value + 24)};
      auto lookup = [&](__m256i idx) {
        const __m256 bit3 = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28));  // index bit 3 as the sign
        const __m256 bit4 = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 27));
        const __m256 low = _mm256_blendv_ps(_mm256_permutevar8x32_ps(table[0], idx),
                                            _mm256_permutevar8x32_ps(table[1], idx), bit3);
        const __m256 high = _mm256_blendv_ps(_mm256_permutevar8x32_ps(table[2], idx),
                                             _mm256_permutevar8x32_ps(table[3], idx), bit3);
        return _mm256_blendv_ps(low, high, bit4);
      };
      const __m256i byte = _mm256_set1_epi32(0xFF);
      const __m256 log2_25 = _mm256_set1_ps(kLog2BoxArea), area = _mm256_set1_ps(kBoxArea);
      const __m256 third = _mm256_set1_ps(1.0f / 3.0f), zero = _mm256_setzero_ps();
      for (; k + 8 <= n; k += 8) {
        const __m256i words[2] = {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(even + k)),
                                  _mm256_loadu_si256(reinterpret_cast<const __m256i*>(odd + k))};
        __m256 sum = zero;
        for (int bin = 0; bin < kEntropyBins; ++bin) {
          const __m256i idx = _mm256_and_si256(_mm256_srli_epi32(words[bin & 1], 8 * (bin >> 1)), byte);
          sum = _mm256_add_ps(sum, lookup(idx));
        }
        const __m256 h = _mm256_sub_ps(log2_25, _mm256_div_ps(sum, area));
        _mm256_storeu_ps(bt + k, _mm256_mul_ps(_mm256_max_ps(zero, h), third));
      }
#endif
      for (; k < n; ++k) {
        float s = 0.0f;
        for (int bin = 0; bin < kEntropyBins; ++bin) s += kCountLog2Count.value[packed_bin_count(even[k], odd[k], bin)];
        bt[k] = entropy_from_sum(s);
      }
      store_row(bc, level0.row(4, y) + x0, n);
      store_row(be, level0.row(12, y) + x0, n);
      store_row(bm, level0.row(10, y) + x0, n);
      store_row(bt, level0.row(14, y) + x0, n);
    });
  };
  // One band (and ring) per thread; each band recomputes the 4 horizontal rows around it. Bands
  // start at multiples of 4 rows, so each completes its level-1 and level-2 rows itself.
  const int h2 = p.levels[2].height;
  const int bands = static_cast<int>(std::min<int64_t>({static_cast<int64_t>(nt), h2, p.scratch_pixels / w / kBoxTaps}));
  constexpr int kBoxPlanes[] = {4, 10, 12, 14};
  parallel_for(bands, nt, [&](int b) {
    const int y0 = 4 * static_cast<int>(static_cast<int64_t>(h2) * b / bands);
    const int y1 = std::min(h, 4 * static_cast<int>(static_cast<int64_t>(h2) * (b + 1) / bands));
    const int64_t ring = static_cast<int64_t>(b) * kBoxTaps * w;
    float* const mag_row = p.mag + static_cast<int64_t>(b) * w;  // a row per band
    float* const diff_row = p.diff + static_cast<int64_t>(b) * w;
    auto slot = [&](int yy) { return ring + static_cast<int64_t>(((yy % kBoxTaps) + kBoxTaps) % kBoxTaps) * w; };
    // Source rows come in non-decreasing order (edge-clamped ones repeat): the band stores rows
    // y0 .. y1 - 1 of channels 6-9 as they first come, then their mips.
    int next_store = y0;
    const Level0Rows<T> level0(p);
    auto horizontal = [&](int src_y, int64_t out_row) {
      const bool store = src_y == next_store && src_y < y1;
      horizontal_row(level0, src_y, out_row, mag_row, diff_row, store);
      if (store) mip_rows_after<T>(p, level0, kGradientPlanes, next_store++);
    };
    for (int d = -kBoxRadius; d <= kBoxRadius; ++d) horizontal(clampi(y0 + d, 0, h - 1), slot(y0 + d));
    for (int y = y0; y < y1; ++y) {
      int64_t rows[kBoxTaps];
      for (int d = 0; d < kBoxTaps; ++d) rows[d] = slot(y + d - kBoxRadius);
      vertical_row(level0, y, rows);
      mip_rows_after<T>(p, level0, kBoxPlanes, y);
      if (y + 1 < y1) horizontal(clampi(y + 1 + kBoxRadius, 0, h - 1), slot(y + 1 + kBoxRadius));
    }
  }, /*min_parallel=*/2);  // only nt iterations: below the default minimum
}

// The previous frame's level-2 luma with kMotionSearchRadius texels of edge replication on every
// side ((w2 + 2R) x (h2 + 2R)): a displaced read there is block_match()'s clamped read, so every
// block, at the edges too, is matched in vector lanes (the scalar search of the edge blocks took
// two thirds of the motion vectors' time at 640x480).
void pad_previous_luma(const uint16_t* prev, int w2, int h2, uint16_t* padded) {
  constexpr int R = kMotionSearchRadius;
  const int pw = w2 + 2 * R;
  for (int r = 0; r < h2 + 2 * R; ++r) {
    const uint16_t* src = prev + static_cast<int64_t>(clampi(r - R, 0, h2 - 1)) * w2;
    uint16_t* dst = padded + static_cast<int64_t>(r) * pw;
    std::fill(dst, dst + R, src[0]);
    std::memcpy(dst + R, src, sizeof(uint16_t) * w2);
    std::fill(dst + R + w2, dst + pw, src[w2 - 1]);
  }
}

// block_match() of block (bi, bj) (partial at the right and bottom edges) against the padded
// previous luma: the 81 SADs by AVX2 (16-bit lanes over the displacements; values <= 4080, so every
// difference and every 16-term sum (<= 65280) is exact in uint16), then MotionMatch's choice.
// Returns false (nothing written) without AVX2.
inline bool block_match_padded(const uint16_t* cur, const uint16_t* padded, int w2, int h2, int bi, int bj, float* mx,
                               float* my) {
#if defined(__AVX2__)
  constexpr int R = kMotionSearchRadius, B = kMotionBlock, D = 2 * R + 1;
  const int pw = w2 + 2 * R;
  const int i0 = bi * B, j0 = bj * B, rows = std::min(B, h2 - i0), cols = std::min(B, w2 - j0);
  int sads[D * D];
  for (int dy = -R; dy <= R; ++dy) {
    __m128i lo = _mm_setzero_si128(), hi = _mm_setzero_si128();  // dx = -R..R-1 and -R+1..R
    for (int i = 0; i < rows; ++i) {
      const uint16_t* cr = cur + static_cast<int64_t>(i0 + i) * w2 + j0;
      // padded column j0 + j + k is column j0 + j + k - R: lane k of the loads at pr + j is dx = k - R
      // (the second load one column further on); the last one read is w2 - 1 + 2R, the row's end
      const uint16_t* pr = padded + static_cast<int64_t>(i0 + i + dy + R) * pw + j0;
      for (int j = 0; j < cols; ++j) {
        const __m128i c = _mm_set1_epi16(static_cast<short>(cr[j]));
        const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(pr + j));
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(pr + j + 1));
        lo = _mm_add_epi16(lo, _mm_abs_epi16(_mm_sub_epi16(c, a)));
        hi = _mm_add_epi16(hi, _mm_abs_epi16(_mm_sub_epi16(c, b)));
      }
    }
    alignas(16) uint16_t l[8], h[8];
    _mm_store_si128(reinterpret_cast<__m128i*>(l), lo);
    _mm_store_si128(reinterpret_cast<__m128i*>(h), hi);
    int* row = sads + (dy + R) * D;
    for (int k = 0; k < 2 * R; ++k) row[k] = l[k];
    row[2 * R] = h[2 * R - 1];
  }
  // MotionMatch::offer()'s choice as one minimum: (SAD, dx^2 + dy^2, scan index) packed into an int
  // (SAD <= 65280 < 2^16, squared length <= 32 < 2^6, index < 81 < 2^7): the lowest key is the
  // candidate offer() keeps, without its 81 unpredictable branches.
  int best = 0x7fffffff;
  for (int k = 0; k < D * D; ++k) {
    const int dy = k / D - R, dx = k % D - R;
    best = std::min(best, sads[k] << 13 | (dx * dx + dy * dy) << 7 | k);
  }
  MotionMatch m;
  m.dx = (best & 127) % D - R;
  m.dy = (best & 127) / D - R;
  m.write(mx, my);
  return true;
#else
  (void)cur, (void)padded, (void)w2, (void)h2, (void)bi, (void)bj, (void)mx, (void)my;
  return false;
#endif
}

template <typename T>
void build_pyramids_and_coarse(const TextureParams& p) {
  const int nt = p.num_threads;
  // Float32 feature pyramids (saliency inputs); levels 1 and 2 came with the point pass.
  for (int k = 3; k < kNumLevels; ++k) {
    const LevelLayout& s = p.levels[k - 1];
    const LevelLayout& d = p.levels[k];
    parallel_for(3 * d.height, nt, [&](int r) {
      const int f = r / d.height;
      mip_row(p.feature[f][k - 1], s.width, s.height, p.feature[f][k], d.width, r % d.height);
    });
  }

  // Level-2 integer luma for block matching.
  const LevelLayout& l2 = p.levels[2];
  parallel_for(l2.height, nt, [&](int i) {
    for (int j = 0; j < l2.width; ++j)
      p.ysum[static_cast<int64_t>(i) * l2.width + j] =
          static_cast<uint16_t>(luma_sum_4x4(p.y8, p.width, p.height, i, j));
  });

  // Saliency at its base level 1.
  FeaturePyramids fp;
  for (int f = 0; f < 3; ++f)
    for (int k = 0; k < kNumLevels; ++k) fp.level[f][k] = p.feature[f][k];
  for (int k = 0; k < kNumLevels; ++k) {
    fp.width[k] = p.levels[k].width;
    fp.height[k] = p.levels[k].height;
  }
  T* sal = texture_plane<T>(p, 11, 1);
  const LevelLayout& l1 = p.levels[1];
  const int64_t n1 = static_cast<int64_t>(l1.width) * l1.height;
  for (int j = 0; j < l1.width; ++j) p.saliency_x_taps[j] = saliency_taps(j, fp.width);
  // The three centre-surround maps, separably: every row of levels 2-4 sampled along x at each
  // level-1 column once (a level-4 row serves 16 level-1 rows), then each level-1 row mixes two
  // such rows per level along y, in vector lanes. The same lerps as centre_surround() samples.
  int row_base[4] = {0, 0, 0, 0};  // first row of level 2 + k in a feature's slice of sal_rows
  for (int k = 2; k < kNumLevels; ++k) row_base[k - 1] = row_base[k - 2] + fp.height[k];
  const int rows_per_feature = row_base[3], w1 = l1.width;
  // Level k's taps repeat with period P = 2^(k-1) columns away from the edges: column P*m + q reads
  // texels m + offset[q] and m + offset[q] + 1 with weight[q]. Over the columns where that holds
  // (checked against the taps themselves) each phase q is one contiguous loop, which vectorizes, and
  // its values are then stored P apart; the same lerps of the same texels as the loop over taps.
  struct PeriodicTaps {
    int period = 1, m_begin = 0, m_end = 0;  // columns P * m_begin .. P * m_end - 1
    int offset[8];
    float weight[8];
  } periodic[3];
  for (int k = 2; k < kNumLevels; ++k) {
    PeriodicTaps& pt = periodic[k - 2];
    pt.period = 1 << (k - 1);
    const int P = pt.period, m_count = w1 / P;
    auto tap = [&](int j) { return p.saliency_x_taps[j].at[k - 2]; };
    // the phases of the middle period, then the widest run of periods around it that follow them
    const int mid = m_count / 2;
    bool usable = m_count >= 3;
    for (int q = 0; usable && q < P; ++q) {
      pt.offset[q] = tap(P * mid + q).i0 - mid;
      pt.weight[q] = tap(P * mid + q).t;
    }
    auto regular = [&](int m) {
      for (int q = 0; q < P; ++q) {
        const BilinearTap t = tap(P * m + q);
        if (t.i0 != m + pt.offset[q] || t.i1 != t.i0 + 1 || t.t != pt.weight[q]) return false;
      }
      return true;
    };
    if (usable && regular(mid)) {
      pt.m_begin = mid;
      pt.m_end = mid + 1;
      while (pt.m_begin > 0 && regular(pt.m_begin - 1)) --pt.m_begin;
      while (pt.m_end < m_count && regular(pt.m_end)) ++pt.m_end;
    }
  }
  parallel_for(3 * rows_per_feature, nt, [&](int r) {
    const int f = r / rows_per_feature, rr = r % rows_per_feature;
    const int k = rr < row_base[1] ? 2 : rr < row_base[2] ? 3 : 4;
    const float* src = fp.level[f][k] + static_cast<int64_t>(rr - row_base[k - 2]) * fp.width[k];
    float* dst = p.sal_rows + static_cast<int64_t>(r) * w1;
    const PeriodicTaps& pt = periodic[k - 2];
    const int P = pt.period, j_begin = P * pt.m_begin, j_end = P * pt.m_end;
    auto by_taps = [&](int j0, int j1) {
      for (int j = j0; j < j1; ++j) {
        const BilinearTap& t = p.saliency_x_taps[j].at[k - 2];
        dst[j] = lerp(src[t.i0], src[t.i1], t.t);
      }
    };
    by_taps(0, j_begin);
    for (int m0 = pt.m_begin; m0 < pt.m_end; m0 += kChunk) {
      const int n = std::min(kChunk, pt.m_end - m0);
      for (int q = 0; q < P; ++q) {
        const float* a = src + m0 + pt.offset[q];
        const float t = pt.weight[q];
        float values[kChunk];
        for (int m = 0; m < n; ++m) values[m] = lerp(a[m], a[m + 1], t);
        float* out = dst + static_cast<int64_t>(P) * m0 + q;
        for (int m = 0; m < n; ++m) out[static_cast<int64_t>(P) * m] = values[m];
      }
    }
    by_taps(j_end, w1);
  }, 2);
  parallel_for(l1.height, nt, [&](int i) {
    const int64_t row = static_cast<int64_t>(i) * w1;
    const SaliencyTaps ty = saliency_taps(i, fp.height);
    for (int f = 0; f < 3; ++f) {
      const float* r0[3];
      const float* r1[3];
      for (int k = 0; k < 3; ++k) {
        const float* level = p.sal_rows + (static_cast<int64_t>(f) * rows_per_feature + row_base[k]) * w1;
        r0[k] = level + static_cast<int64_t>(ty.at[k].i0) * w1;
        r1[k] = level + static_cast<int64_t>(ty.at[k].i1) * w1;
      }
      const float* c1 = fp.level[f][1] + row;
      float* out = p.sal_cs + f * n1 + row;
      const float t2 = ty.at[0].t, t3 = ty.at[1].t, t4 = ty.at[2].t;
      for (int j = 0; j < w1; ++j)
        out[j] = centre_surround_of(c1[j], lerp(r0[0][j], r1[0][j], t2), lerp(r0[1][j], r1[1][j], t3),
                                    lerp(r0[2][j], r1[2][j], t4));
    }
  });
  const int bw = saliency_blocks(l1.width), bh = saliency_blocks(l1.height), nb = bw * bh;
  // Their block maxima: block_max's maximum of the same values (>= 0, from 0: any order gives the
  // same bits), the block's rows folded column by column in vector lanes first, then each block's
  // columns (a scalar chain over all 64 values waited on every max).
  parallel_for(3 * bh, nt, [&](int r) {
    const int f = r / bh, bi = r % bh;
    thread_local std::vector<float> column_max;
    if (column_max.size() < static_cast<size_t>(w1)) column_max.resize(w1);
    float* const cm = column_max.data();
    std::fill(cm, cm + w1, 0.0f);
    const int i_end = std::min(l1.height, (bi + 1) * kSaliencyBlock);
    for (int i = bi * kSaliencyBlock; i < i_end; ++i) {
      const float* row = p.sal_cs + f * n1 + static_cast<int64_t>(i) * w1;
      for (int j = 0; j < w1; ++j) cm[j] = maxf(cm[j], row[j]);
    }
    for (int bj = 0; bj < bw; ++bj) {
      float m = 0.0f;
      for (int j = bj * kSaliencyBlock; j < w1 && j < (bj + 1) * kSaliencyBlock; ++j) m = maxf(m, cm[j]);
      p.sal_block_max[f * nb + bi * bw + bj] = m;
    }
  });
  for (int f = 0; f < 3; ++f) p.sal_gain[f] = repetition_gain(p.sal_block_max + f * nb, nb);
  parallel_for(l1.height, nt, [&](int i) {  // normalized and combined
    const int64_t row = static_cast<int64_t>(i) * l1.width;
    for_chunks(l1.width, [&](int j0, int n) {
      float buf[kChunk];
      for (int k = 0; k < n; ++k) {
        const float cs[3] = {p.sal_cs[row + j0 + k], p.sal_cs[n1 + row + j0 + k], p.sal_cs[2 * n1 + row + j0 + k]};
        buf[k] = saliency_combine(cs, p.sal_gain);
      }
      store_row(buf, sal + row + j0, n);
    });
  });

  // Mip levels of every channel computed above, each from the stored level above it (levels 1
  // and 2 of the level-0 channels came with the passes that wrote them; saliency starts at 1).
  for (int k = 2; k < kNumLevels; ++k) {
    const LevelLayout& s = p.levels[k - 1];
    const LevelLayout& d = p.levels[k];
    int chans[kNumChannels];
    int nc = 0;
    for (int c = 0; c < kNumChannels; ++c)
      if (mipmapped_by_texture_stage(c) && channel_base_level(c) < k && !(channel_base_level(c) == 0 && k <= 2))
        chans[nc++] = c;
    parallel_for(nc * d.height, nt, [&](int r) {
      const int c = chans[r / d.height];
      mip_row(texture_plane<T>(p, c, k - 1), s.width, s.height, texture_plane<T>(p, c, k), d.width, r % d.height);
    });
  }

  // Motion vectors on the patch grid (level 4).
  const LevelLayout& l4 = p.levels[4];
  T* mvx = texture_plane<T>(p, 35, 4);
  T* mvy = texture_plane<T>(p, 36, 4);
  thread_local std::vector<uint16_t> padded_prev;
  if (p.motion_valid) {
    padded_prev.resize(static_cast<size_t>(l2.width + 2 * kMotionSearchRadius) * (l2.height + 2 * kMotionSearchRadius));
    pad_previous_luma(p.ysum_prev, l2.width, l2.height, padded_prev.data());
  }
  const uint16_t* const padded = padded_prev.data();
  parallel_for(l4.height, nt, [&](int bi) {
    const int64_t row = static_cast<int64_t>(bi) * l4.width;
    for_chunks(l4.width, [&](int j0, int n) {
      float bx[kChunk], by[kChunk];
      for (int k = 0; k < n; ++k) {
        bx[k] = by[k] = 0.0f;
        if (p.motion_valid && !block_match_padded(p.ysum, padded, l2.width, l2.height, bi, j0 + k, &bx[k], &by[k]))
          block_match(p.ysum, p.ysum_prev, l2.width, l2.height, bi, j0 + k, &bx[k], &by[k]);
      }
      store_row(bx, mvx + row + j0, n);
      store_row(by, mvy + row + j0, n);
    });
  });

  // Channels of later stages: zero at every level where they are stored.
  for (int c : kNotYetComputed)
    for (int k = channel_base_level(c); k < kNumLevels; ++k)
      // All-zero bits are 0.0 in float16 and float32.
      std::memset(texture_plane<T>(p, c, k), 0, sizeof(T) * p.levels[k].width * p.levels[k].height);
}

template <typename T>
void build_all(const TextureParams& p) {
  build_level0<T>(p);
  build_pyramids_and_coarse<T>(p);
}

}  // namespace

Status build_texture(const TextureParams& p) noexcept {
  try {  // the calling thread's scratch rows (e.g. the padded luma of motion search) grow on first use
    if (p.dtype == DType::kFloat16)
      build_all<uint16_t>(p);
    else
      build_all<float>(p);
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "texture: out of host memory for the CPU backend's scratch rows");
  }
  return Status::Ok();
}

}  // namespace arrcoc::cpu
