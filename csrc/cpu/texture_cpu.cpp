// CPU backend of the texture stage: row-parallel loops (OpenMP) over the shared formulas of
// csrc/shared/texture_math.h. Pass structure mirrors csrc/cuda/texture_cuda.cu.
#include "texture_cpu.h"

#include <cstring>

#include "../shared/texture_params.h"

namespace arrcoc::cpu {
namespace {

using namespace arrcoc::math;

// Run body(row) for rows [0, n) on the configured number of threads.
template <typename F>
void parallel_rows(int n, int threads, F&& body) {
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) num_threads(threads) if (n > 8)
  for (int r = 0; r < n; ++r) body(r);
#else
  (void)threads;
  for (int r = 0; r < n; ++r) body(r);
#endif
}

template <typename T>
void build_level0(const TextureParams& p) {
  const int w = p.width, h = p.height, nt = p.num_threads;
  const int64_t n = static_cast<int64_t>(w) * h;
  T* red = texture_plane<T>(p, 0, 0);
  T* green = texture_plane<T>(p, 1, 0);
  T* blue = texture_plane<T>(p, 2, 0);
  T* lum = texture_plane<T>(p, 3, 0);
  T* contrast = texture_plane<T>(p, 4, 0);
  T* ecc = texture_plane<T>(p, 5, 0);
  T* gx = texture_plane<T>(p, 6, 0);
  T* gy = texture_plane<T>(p, 7, 0);
  T* gmag = texture_plane<T>(p, 8, 0);
  T* hp = texture_plane<T>(p, 9, 0);
  T* motion = texture_plane<T>(p, 10, 0);
  T* edge = texture_plane<T>(p, 12, 0);
  T* entropy = texture_plane<T>(p, 14, 0);
  T* opp_rg = texture_plane<T>(p, 15, 0);
  T* opp_by = texture_plane<T>(p, 16, 0);
  float* L = p.feature[0][0];

  // Pass 1: point channels from the frame's pixels.
  parallel_rows(h, nt, [&](int y) {
    for (int x = 0; x < w; ++x) {
      const int64_t i = static_cast<int64_t>(y) * w + x;
      const Rgb8 c = load_rgb8(p.frame, x, y);
      const PointChannels pc = point_channels(c);
      store_texel(red + i, pc.r);
      store_texel(green + i, pc.g);
      store_texel(blue + i, pc.b);
      store_texel(lum + i, pc.lum);
      store_texel(opp_rg + i, pc.rg);
      store_texel(opp_by + i, pc.by);
      store_texel(ecc + i, eccentricity(x, y, w, h, p.fixation_x, p.fixation_y));
      L[i] = pc.lum;
      p.feature[1][0][i] = pc.rg;
      p.feature[2][0][i] = pc.by;
      const int y8 = luma8(c);
      p.y8[i] = static_cast<uint8_t>(y8);
      p.bins[i] = static_cast<uint8_t>(entropy_bin(y8));
    }
  });

  // Pass 2: 3x3 derivatives and the frame difference.
  parallel_rows(h, nt, [&](int y) {
    for (int x = 0; x < w; ++x) {
      const int64_t i = static_cast<int64_t>(y) * w + x;
      const Gradient g = gradient_3x3(L, w, h, x, y);
      store_texel(gx + i, g.gx);
      store_texel(gy + i, g.gy);
      store_texel(gmag + i, g.mag);
      store_texel(hp + i, g.highpass);
      p.mag[i] = g.mag;
      p.diff[i] = p.motion_valid ? absf(L[i] - p.lum_prev[i]) : 0.0f;
    }
  });

  // Pass 3: horizontal 5-tap sums of the box terms.
  parallel_rows(h, nt, [&](int y) {
    const int64_t row = static_cast<int64_t>(y) * w;
    for (int x = 0; x < w; ++x) {
      int sy = 0, sy2 = 0;
      float sm = 0.0f, sd = 0.0f;
      uint64_t sb = 0;
      for (int d = -kBoxRadius; d <= kBoxRadius; ++d) {
        const int64_t j = row + clampi(x + d, 0, w - 1);
        const int y8 = p.y8[j];
        sy += y8;
        sy2 += y8 * y8;
        sm += p.mag[j];
        sd += p.diff[j];
        sb += bin_one_hot(p.bins[j]);
      }
      p.hsum_y[row + x] = sy;
      p.hsum_y2[row + x] = sy2;
      p.hsum_mag[row + x] = sm;
      p.hsum_diff[row + x] = sd;
      p.hbins[row + x] = sb;
    }
  });

  // Pass 4: vertical 5-tap sums -> contrast, edge density, motion, entropy.
  parallel_rows(h, nt, [&](int y) {
    int64_t rows[kBoxTaps];
    for (int d = 0; d < kBoxTaps; ++d) rows[d] = static_cast<int64_t>(clampi(y + d - kBoxRadius, 0, h - 1)) * w;
    for (int x = 0; x < w; ++x) {
      int sy = 0, sy2 = 0;
      float sm = 0.0f, sd = 0.0f;
      uint64_t sb = 0;
      for (int d = 0; d < kBoxTaps; ++d) {
        const int64_t j = rows[d] + x;
        sy += p.hsum_y[j];
        sy2 += p.hsum_y2[j];
        sm += p.hsum_mag[j];
        sd += p.hsum_diff[j];
        sb += p.hbins[j];
      }
      const int64_t i = static_cast<int64_t>(y) * w + x;
      store_texel(contrast + i, local_contrast(sy, sy2));
      store_texel(edge + i, sm / kBoxArea);
      store_texel(motion + i, sd / kBoxArea);
      store_texel(entropy + i, entropy_from_packed(sb));
    }
  });
  (void)n;
}

template <typename T>
void build_pyramids_and_coarse(const TextureParams& p) {
  const int nt = p.num_threads;
  // Float32 feature pyramids (saliency inputs).
  for (int k = 1; k < kNumLevels; ++k) {
    const LevelLayout& s = p.levels[k - 1];
    const LevelLayout& d = p.levels[k];
    parallel_rows(d.height, nt, [&](int i) {
      for (int f = 0; f < 3; ++f)
        for (int j = 0; j < d.width; ++j)
          p.feature[f][k][static_cast<int64_t>(i) * d.width + j] =
              mip_box2(p.feature[f][k - 1], s.width, s.height, i, j);
    });
  }

  // Level-2 integer luma for block matching.
  const LevelLayout& l2 = p.levels[2];
  parallel_rows(l2.height, nt, [&](int i) {
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
  parallel_rows(l1.height, nt, [&](int i) {
    for (int j = 0; j < l1.width; ++j)
      store_texel(sal + static_cast<int64_t>(i) * l1.width + j, saliency_level1(fp, i, j));
  });

  // Mip levels of every channel computed above, each from the stored level above it.
  for (int k = 1; k < kNumLevels; ++k) {
    const LevelLayout& s = p.levels[k - 1];
    const LevelLayout& d = p.levels[k];
    int chans[kNumChannels];
    int nc = 0;
    for (int c = 0; c < kNumChannels; ++c)
      if (mipmapped_by_texture_stage(c) && channel_base_level(c) < k) chans[nc++] = c;
    parallel_rows(nc * d.height, nt, [&](int r) {
      const int c = chans[r / d.height], i = r % d.height;
      const T* src = texture_plane<T>(p, c, k - 1);
      T* dst = texture_plane<T>(p, c, k) + static_cast<int64_t>(i) * d.width;
      for (int j = 0; j < d.width; ++j) store_texel(dst + j, mip_box2(src, s.width, s.height, i, j));
    });
  }

  // Motion vectors on the patch grid (level 4).
  const LevelLayout& l4 = p.levels[4];
  T* mvx = texture_plane<T>(p, 35, 4);
  T* mvy = texture_plane<T>(p, 36, 4);
  parallel_rows(l4.height, nt, [&](int bi) {
    for (int bj = 0; bj < l4.width; ++bj) {
      float mx = 0.0f, my = 0.0f;
      if (p.motion_valid) block_match(p.ysum, p.ysum_prev, l2.width, l2.height, bi, bj, &mx, &my);
      const int64_t i = static_cast<int64_t>(bi) * l4.width + bj;
      store_texel(mvx + i, mx);
      store_texel(mvy + i, my);
    }
  });

  // Channels of later stages: zero at every level where they are stored.
  for (int c : kNotYetComputed)
    for (int k = channel_base_level(c); k < kNumLevels; ++k) {
      // All-zero bits are 0.0 in float16 and float32.
      std::memset(texture_plane<T>(p, c, k), 0, sizeof(T) * p.levels[k].width * p.levels[k].height);
    }
}

template <typename T>
void build_all(const TextureParams& p) {
  build_level0<T>(p);
  build_pyramids_and_coarse<T>(p);
}

}  // namespace

Status build_texture(const TextureParams& p) noexcept {
  if (p.dtype == DType::kFloat16)
    build_all<uint16_t>(p);
  else
    build_all<float>(p);
  return Status::Ok();
}

}  // namespace arrcoc::cpu
