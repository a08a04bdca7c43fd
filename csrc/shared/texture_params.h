// Plain parameter block of the texture stage, filled by the dispatcher
// (csrc/core/texture_builder.cpp) and read by both backends. Every pointer refers to memory
// of the backend's device, allocated once at creation for the maximum frame size.
#pragma once

#include "arrcoc/texture.h"
#include "texture_math.h"

namespace arrcoc {

struct TextureParams {
  FrameView frame;                  // input; on CUDA its planes are device pointers
  int32_t width, height;            // frame size = level-0 size
  LevelLayout levels[kNumLevels];   // output geometry for this frame size
  void* out;                        // texture buffer (uint16_t float16 bits or float)
  DType dtype;                      // element type of `out`
  float fixation_x, fixation_y;     // eccentricity centre, in [0,1]
  bool motion_valid;                // a previous frame of the same size exists
  uint32_t level0_kept;             // bit c: channel c's level-0 plane is written (TextureView::level0_kept)

  // Scratch, float32 unless noted; level-0 planes are width x height, pitch = width.
  float* feature[3][kNumLevels];    // pyramids of luminance, R-G, B-Y (saliency inputs)
  float* lum_prev;                  // previous frame's level-0 luminance (read only in the passes)
  float* mag;                       // gradient magnitude (input of edge density); CPU: a row per band
  float* diff;                      // |L - L_prev|; CPU: a row per band
  int32_t* hsum_y;                  // horizontal 5-tap sums of luma8
  int32_t* hsum_y2;                 // ... of luma8^2
  float* hsum_mag;                  // ... of gradient magnitude
  float* hsum_diff;                 // ... of |L - L_prev|
  uint32_t* hbins;                  // horizontal 5-tap sums of packed luma-bin one-hots
  uint8_t* y8;                      // integer luma per pixel
  uint16_t* ysum;                   // level-2 integer luma sums, this frame
  uint16_t* ysum_prev;              // ... and the previous frame (read only in the passes)
  math::SaliencyTaps* saliency_x_taps;  // CPU: level-1 width; where each column samples levels 2-4
  float* sal_cs;                    // [3][level-1 plane] centre-surround of L, R-G, B-Y
  float* sal_rows;                  // CPU: [3][rows of levels 2, 3, 4][level-1 width] each row of the
                                    // features' levels 2-4 sampled along x at every level-1 column
  float* sal_block_max;             // [3][saliency blocks] block maxima of each map
  float* sal_gain;                  // [3] each map's gain (repetition_gain of its block maxima)

  int32_t num_threads;              // CPU backend: worker threads
  int64_t scratch_pixels;           // elements of each hsum_* buffer and hbins: max_width * max_height
                                    // (CUDA) or 5 rows of max_width per CPU thread
};

// Channels computed by the level-0 passes, and the ones filled by later stages
// (zero until those stages write them).
constexpr int kLevel0Channels = 17;  // channels 0..16 hold every channel with base level 0
constexpr int kLevel0Computed[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 15, 16};
constexpr int kNotYetComputed[] = {13, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28,
                                   29, 30, 31, 32, 33, 34, 37, 38, 39};

// Sums of the 5x5-window terms over 5 taps (horizontal pass) or of 5 horizontal sums (vertical).
struct BoxSums {
  int y = 0, y2 = 0;      // luma8, luma8^2 (exact)
  float mag = 0.0f;       // gradient magnitude
  float diff = 0.0f;      // |L - L_prev|
  uint32_t bins = 0;      // horizontal: packed luma-bin counts, 4 bits each (exact)
  uint32_t bins_even = 0, bins_odd = 0;  // vertical: the even and the odd bins, 8 bits each
};

// Column mappings for the horizontal pass: clamped at the row's ends, identity inside.
struct ClampedColumn {
  int width;
  ARRCOC_HD int operator()(int x) const { return math::clampi(x, 0, width - 1); }
};
struct InsideColumn {
  ARRCOC_HD int operator()(int x) const { return x; }
};

// Horizontal 5-tap sums at column x of the input row starting at `row` (y * width).
template <typename Column>
ARRCOC_HD_ALWAYS_INLINE BoxSums horizontal_box_sums_at(const TextureParams& p, int64_t row, int x, Column column) {
  BoxSums s;
  for (int d = -math::kBoxRadius; d <= math::kBoxRadius; ++d) {
    const int64_t j = row + column(x + d);
    const int y8 = p.y8[j];
    s.y += y8;
    s.y2 += y8 * y8;
    s.mag += p.mag[j];
    s.diff += p.diff[j];
    s.bins += math::bin_one_hot(math::entropy_bin(y8));  // the bin from the luma: no plane of bins
  }
  return s;
}

// ... written at `out_row + x` of the hsum scratch (out_row = row, or a ring-buffer row on the CPU).
template <typename Column>
ARRCOC_HD void horizontal_box_sums(const TextureParams& p, int64_t row, int64_t out_row, int x, Column column) {
  const BoxSums s = horizontal_box_sums_at(p, row, x, column);
  p.hsum_y[out_row + x] = s.y;
  p.hsum_y2[out_row + x] = s.y2;
  p.hsum_mag[out_row + x] = s.mag;
  p.hsum_diff[out_row + x] = s.diff;
  p.hbins[out_row + x] = s.bins;
}

// Vertical 5-tap sums at column x of the five horizontal-sum rows starting at rows[0..4]
// (the rows y-2 .. y+2, edge-clamped), added in that order.
ARRCOC_HD_ALWAYS_INLINE BoxSums vertical_box_sums_rows(const TextureParams& p, const int64_t rows[math::kBoxTaps], int x) {
  BoxSums s;
  for (int d = 0; d < math::kBoxTaps; ++d) {
    const int64_t j = rows[d] + x;
    s.y += p.hsum_y[j];
    s.y2 += p.hsum_y2[j];
    s.mag += p.hsum_mag[j];
    s.diff += p.hsum_diff[j];
    s.bins_even += math::even_bins(p.hbins[j]);
    s.bins_odd += math::odd_bins(p.hbins[j]);
  }
  return s;
}

// Vertical 5-tap sums at (x, y) when the horizontal sums of every row are stored at y * width.
ARRCOC_HD BoxSums vertical_box_sums(const TextureParams& p, int x, int y) {
  int64_t rows[math::kBoxTaps];
  for (int d = 0; d < math::kBoxTaps; ++d)
    rows[d] = static_cast<int64_t>(math::clampi(y + d - math::kBoxRadius, 0, p.height - 1)) * p.width;
  return vertical_box_sums_rows(p, rows, x);
}

// Channels whose mip levels the texture stage computes (from their base level down).
constexpr bool mipmapped_by_texture_stage(int c) { return c < 17 && c != 13; }

template <typename T>
inline T* texture_plane(const TextureParams& p, int channel, int level) {
  const int idx = TextureView::plane_index(channel, level);
  const LevelLayout& L = p.levels[level];
  return static_cast<T*>(p.out) + L.offset + static_cast<int64_t>(idx) * L.width * L.height;
}

}  // namespace arrcoc
