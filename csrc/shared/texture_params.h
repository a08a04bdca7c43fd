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

  // Scratch, float32 unless noted; level-0 planes are width x height, pitch = width.
  float* feature[3][kNumLevels];    // pyramids of luminance, R-G, B-Y (saliency inputs)
  const float* lum_prev;            // previous frame's level-0 luminance
  float* mag;                       // gradient magnitude (input of edge density)
  float* diff;                      // |L - L_prev|
  int32_t* hsum_y;                  // horizontal 5-tap sums of luma8
  int32_t* hsum_y2;                 // ... of luma8^2
  float* hsum_mag;                  // ... of gradient magnitude
  float* hsum_diff;                 // ... of |L - L_prev|
  uint64_t* hbins;                  // horizontal 5-tap sums of packed luma-bin one-hots
  uint8_t* bins;                    // luma bin per pixel (0..7)
  uint8_t* y8;                      // integer luma per pixel
  uint16_t* ysum;                   // level-2 integer luma sums, this frame
  const uint16_t* ysum_prev;        // ... and the previous frame

  int32_t num_threads;              // CPU backend: worker threads
};

// Channels computed by the level-0 passes, and the ones filled by later stages
// (zero until those stages write them).
constexpr int kLevel0Computed[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 15, 16};
constexpr int kNotYetComputed[] = {13, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28,
                                   29, 30, 31, 32, 33, 34, 37, 38, 39};

// Channels whose mip levels the texture stage computes (from their base level down).
constexpr bool mipmapped_by_texture_stage(int c) { return c < 17 && c != 13; }

template <typename T>
inline T* texture_plane(const TextureParams& p, int channel, int level) {
  const int idx = TextureView::plane_index(channel, level);
  const LevelLayout& L = p.levels[level];
  return static_cast<T*>(p.out) + L.offset + static_cast<int64_t>(idx) * L.width * L.height;
}

}  // namespace arrcoc
