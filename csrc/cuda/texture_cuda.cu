// CUDA backend of the texture stage: one thread per output element, calling the shared
// formulas of csrc/shared/texture_math.h. Pass structure mirrors csrc/cpu/texture_cpu.cpp.
// Every launch goes on the caller's stream and is checked.
#include <cuda_runtime.h>

#include <cstring>

#include "../core/cuda_backend.h"
#include "../shared/texture_params.h"
#include "block_algorithms.cuh"
#include "cuda_check.h"
#include "graph_cache.h"
#include "launch.cuh"

namespace arrcoc::cuda {
namespace {

using namespace arrcoc::math;

constexpr int kBlockX = 32, kBlockY = 8;

dim3 grid_for(int w, int h, int z = 1) {
  return dim3((w + kBlockX - 1) / kBlockX, (h + kBlockY - 1) / kBlockY, z);
}

// Output planes of the level-0 passes, in kLevel0Computed order.
template <typename T>
struct Level0Planes {
  T* red; T* green; T* blue; T* lum; T* contrast; T* ecc; T* gx; T* gy; T* gmag; T* hp;
  T* motion; T* edge; T* entropy; T* opp_rg; T* opp_by;
};

template <typename T>
__global__ void point_kernel(TextureParams p, Level0Planes<T> o) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x >= p.width || y >= p.height) return;
  const int64_t i = static_cast<int64_t>(y) * p.width + x;
  const Rgb8 c = load_rgb8(p.frame, x, y);
  const PointChannels pc = point_channels(c);
  store_texel(o.red + i, pc.r);
  store_texel(o.green + i, pc.g);
  store_texel(o.blue + i, pc.b);
  store_texel(o.lum + i, pc.lum);
  store_texel(o.opp_rg + i, pc.rg);
  store_texel(o.opp_by + i, pc.by);
  store_texel(o.ecc + i, eccentricity(x, y, p.width, p.height, p.fixation_x, p.fixation_y));
  p.feature[0][0][i] = pc.lum;
  p.feature[1][0][i] = pc.rg;
  p.feature[2][0][i] = pc.by;
  p.y8[i] = static_cast<uint8_t>(luma8(c));
}

template <typename T>
__global__ void gradient_kernel(TextureParams p, Level0Planes<T> o) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x >= p.width || y >= p.height) return;
  const int64_t i = static_cast<int64_t>(y) * p.width + x;
  const float* L = p.feature[0][0];
  const Gradient g = gradient_3x3(L, p.width, p.height, x, y);
  store_texel(o.gx + i, g.gx);
  store_texel(o.gy + i, g.gy);
  store_texel(o.gmag + i, g.mag);
  store_texel(o.hp + i, g.highpass);
  p.mag[i] = g.mag;
  p.diff[i] = p.motion_valid ? absf(L[i] - p.lum_prev[i]) : 0.0f;
}

__global__ void hsum_kernel(TextureParams p) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x >= p.width || y >= p.height) return;
  const int64_t row = static_cast<int64_t>(y) * p.width;
  horizontal_box_sums(p, row, row, x, ClampedColumn{p.width});
}

template <typename T>
__global__ void vsum_kernel(TextureParams p, Level0Planes<T> o) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x >= p.width || y >= p.height) return;
  const BoxSums s = vertical_box_sums(p, x, y);
  const int64_t i = static_cast<int64_t>(y) * p.width + x;
  store_texel(o.contrast + i, local_contrast(s.y, s.y2));
  store_texel(o.edge + i, s.mag / kBoxArea);
  store_texel(o.motion + i, s.diff / kBoxArea);
  store_texel(o.entropy + i, entropy_from_packed(s.bins_even, s.bins_odd));
}

__global__ void feature_mip_kernel(TextureParams p, int k) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y * blockDim.y + threadIdx.y;
  const LevelLayout& s = p.levels[k - 1];
  const LevelLayout& d = p.levels[k];
  if (j >= d.width || i >= d.height) return;
  const int f = blockIdx.z;
  p.feature[f][k][static_cast<int64_t>(i) * d.width + j] = mip_box2(p.feature[f][k - 1], s.width, s.height, i, j);
}

__global__ void luma_sum_kernel(TextureParams p) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y * blockDim.y + threadIdx.y;
  const LevelLayout& l2 = p.levels[2];
  if (j >= l2.width || i >= l2.height) return;
  p.ysum[static_cast<int64_t>(i) * l2.width + j] = static_cast<uint16_t>(luma_sum_4x4(p.y8, p.width, p.height, i, j));
}

// Saliency in three steps (see texture_math.h): the centre-surround maps, their block maxima,
// each map's gain (a block per feature: an exact sum, so the CPU's loop's bits), the normalized combination.
__global__ void centre_surround_kernel(TextureParams p, FeaturePyramids fp) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y * blockDim.y + threadIdx.y;
  if (j >= fp.width[1] || i >= fp.height[1]) return;
  float cs[3];
  centre_surround(fp, i, j, saliency_taps(j, fp.width), saliency_taps(i, fp.height), cs);
  const int64_t n1 = static_cast<int64_t>(fp.width[1]) * fp.height[1], t = static_cast<int64_t>(i) * fp.width[1] + j;
  for (int f = 0; f < 3; ++f) p.sal_cs[f * n1 + t] = cs[f];
}

__global__ void block_max_kernel(TextureParams p, int w1, int h1) {
  const int bj = blockIdx.x * blockDim.x + threadIdx.x, bi = blockIdx.y * blockDim.y + threadIdx.y, f = blockIdx.z;
  const int bw = saliency_blocks(w1), bh = saliency_blocks(h1);
  if (bj >= bw || bi >= bh) return;
  p.sal_block_max[f * bw * bh + bi * bw + bj] = block_max(p.sal_cs + f * static_cast<int64_t>(w1) * h1, w1, h1, bi, bj);
}

constexpr int kGainBlock = 256;
__global__ void saliency_gain_kernel(TextureParams p, int nb) {
  __shared__ unsigned long long sums[kGainBlock];
  __shared__ float peaks[kGainBlock];
  const float gain = block_repetition_gain(p.sal_block_max + static_cast<int64_t>(blockIdx.x) * nb, nb, sums, peaks);
  if (threadIdx.x == 0) p.sal_gain[blockIdx.x] = gain;
}

template <typename T>
__global__ void saliency_kernel(TextureParams p, int w1, int h1, T* out) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y * blockDim.y + threadIdx.y;
  if (j >= w1 || i >= h1) return;
  const int64_t n1 = static_cast<int64_t>(w1) * h1, t = static_cast<int64_t>(i) * w1 + j;
  const float cs[3] = {p.sal_cs[t], p.sal_cs[n1 + t], p.sal_cs[2 * n1 + t]};
  store_texel(out + t, saliency_combine(cs, p.sal_gain));
}

// One mip level for up to kNumChannels planes; blockIdx.z picks the plane pair.
template <typename T>
struct MipPlanes {
  const T* src[kNumChannels];
  T* dst[kNumChannels];
};

template <typename T>
__global__ void channel_mip_kernel(MipPlanes<T> planes, int sw, int sh, int dw, int dh) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y * blockDim.y + threadIdx.y;
  if (j >= dw || i >= dh) return;
  store_texel(planes.dst[blockIdx.z] + static_cast<int64_t>(i) * dw + j, mip_box2(planes.src[blockIdx.z], sw, sh, i, j));
}

template <typename T>
__global__ void motion_vector_kernel(TextureParams p, T* mvx, T* mvy) {
  const int bj = blockIdx.x * blockDim.x + threadIdx.x, bi = blockIdx.y * blockDim.y + threadIdx.y;
  const LevelLayout& l4 = p.levels[4];
  if (bj >= l4.width || bi >= l4.height) return;
  float mx = 0.0f, my = 0.0f;
  if (p.motion_valid) block_match(p.ysum, p.ysum_prev, p.levels[2].width, p.levels[2].height, bi, bj, &mx, &my);
  const int64_t i = static_cast<int64_t>(bi) * l4.width + bj;
  store_texel(mvx + i, mx);
  store_texel(mvy + i, my);
}

template <typename T>
Status build_typed(const TextureParams& p, cudaStream_t stream) {
  Level0Planes<T> o;
  o.red = texture_plane<T>(p, 0, 0);
  o.green = texture_plane<T>(p, 1, 0);
  o.blue = texture_plane<T>(p, 2, 0);
  o.lum = texture_plane<T>(p, 3, 0);
  o.contrast = texture_plane<T>(p, 4, 0);
  o.ecc = texture_plane<T>(p, 5, 0);
  o.gx = texture_plane<T>(p, 6, 0);
  o.gy = texture_plane<T>(p, 7, 0);
  o.gmag = texture_plane<T>(p, 8, 0);
  o.hp = texture_plane<T>(p, 9, 0);
  o.motion = texture_plane<T>(p, 10, 0);
  o.edge = texture_plane<T>(p, 12, 0);
  o.entropy = texture_plane<T>(p, 14, 0);
  o.opp_rg = texture_plane<T>(p, 15, 0);
  o.opp_by = texture_plane<T>(p, 16, 0);
  const dim3 block(kBlockX, kBlockY);
  const dim3 g0 = grid_for(p.width, p.height);

  launch(point_kernel<T>, g0, block, 0, stream)(p, o);
  Status s = check(cudaGetLastError(), "point_kernel launch");
  if (!s.ok()) return s;
  launch(gradient_kernel<T>, g0, block, 0, stream)(p, o);
  if (!(s = check(cudaGetLastError(), "gradient_kernel launch")).ok()) return s;
  launch(hsum_kernel, g0, block, 0, stream)(p);
  if (!(s = check(cudaGetLastError(), "hsum_kernel launch")).ok()) return s;
  launch(vsum_kernel<T>, g0, block, 0, stream)(p, o);
  if (!(s = check(cudaGetLastError(), "vsum_kernel launch")).ok()) return s;

  for (int k = 1; k < kNumLevels; ++k) {
    launch(feature_mip_kernel, grid_for(p.levels[k].width, p.levels[k].height, 3), block, 0, stream)(p, k);
    if (!(s = check(cudaGetLastError(), "feature_mip_kernel launch")).ok()) return s;
  }
  launch(luma_sum_kernel, grid_for(p.levels[2].width, p.levels[2].height), block, 0, stream)(p);
  if (!(s = check(cudaGetLastError(), "luma_sum_kernel launch")).ok()) return s;

  FeaturePyramids fp;
  for (int f = 0; f < 3; ++f)
    for (int k = 0; k < kNumLevels; ++k) fp.level[f][k] = p.feature[f][k];
  for (int k = 0; k < kNumLevels; ++k) {
    fp.width[k] = p.levels[k].width;
    fp.height[k] = p.levels[k].height;
  }
  const int w1 = p.levels[1].width, h1 = p.levels[1].height;
  launch(centre_surround_kernel, grid_for(w1, h1), block, 0, stream)(p, fp);
  if (!(s = check(cudaGetLastError(), "centre_surround_kernel launch")).ok()) return s;
  launch(block_max_kernel, grid_for(saliency_blocks(w1), saliency_blocks(h1), 3), block, 0, stream)(p, w1, h1);
  if (!(s = check(cudaGetLastError(), "block_max_kernel launch")).ok()) return s;
  launch(saliency_gain_kernel, 3, kGainBlock, 0, stream)(p, saliency_blocks(w1) * saliency_blocks(h1));
  if (!(s = check(cudaGetLastError(), "saliency_gain_kernel launch")).ok()) return s;
  launch(saliency_kernel<T>, grid_for(w1, h1), block, 0, stream)(p, w1, h1, texture_plane<T>(p, 11, 1));
  if (!(s = check(cudaGetLastError(), "saliency_kernel launch")).ok()) return s;

  for (int k = 1; k < kNumLevels; ++k) {
    MipPlanes<T> mp;
    int nc = 0;
    for (int c = 0; c < kNumChannels; ++c) {
      if (!mipmapped_by_texture_stage(c) || channel_base_level(c) >= k) continue;
      mp.src[nc] = texture_plane<T>(p, c, k - 1);
      mp.dst[nc] = texture_plane<T>(p, c, k);
      ++nc;
    }
    launch(channel_mip_kernel<T>, grid_for(p.levels[k].width, p.levels[k].height, nc), block, 0, stream)(
        mp, p.levels[k - 1].width, p.levels[k - 1].height, p.levels[k].width, p.levels[k].height);
    if (!(s = check(cudaGetLastError(), "channel_mip_kernel launch")).ok()) return s;
  }

  launch(motion_vector_kernel<T>, grid_for(p.levels[4].width, p.levels[4].height), block, 0, stream)(
      p, texture_plane<T>(p, 35, 4), texture_plane<T>(p, 36, 4));
  if (!(s = check(cudaGetLastError(), "motion_vector_kernel launch")).ok()) return s;

  // Channels of later stages: zero (all-zero bits are 0.0 in float16 and float32).
  for (int c : kNotYetComputed)
    for (int k = channel_base_level(c); k < kNumLevels; ++k) {
      const size_t bytes = sizeof(T) * static_cast<size_t>(p.levels[k].width) * p.levels[k].height;
      if (!(s = check(cudaMemsetAsync(texture_plane<T>(p, c, k), 0, bytes, stream), "cudaMemsetAsync")).ok())
        return s;
    }
  return Status::Ok();
}

template <typename T>
__global__ void store_plane_kernel(const float* src, T* dst, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) store_texel(dst + i, src[i]);
}

}  // namespace

Status store_plane(const float* src, void* dst, int64_t n, int dtype, void* stream) noexcept {
  const int blocks = static_cast<int>((n + 255) / 256);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (dtype == static_cast<int>(DType::kFloat16))
    launch(store_plane_kernel<uint16_t>, blocks, 256, 0, s)(src, static_cast<uint16_t*>(dst), n);
  else
    launch(store_plane_kernel<float>, blocks, 256, 0, s)(src, static_cast<float*>(dst), n);
  return check(cudaGetLastError(), "store_plane_kernel launch");
}

Status build_texture(const TextureParams& p, void* stream) noexcept {
  // The caller's FrameView may carry indeterminate padding bytes (before cuda_stream): the key
  // holds its fields on zeroed bytes, or no two frames' keys would be sure to match.
  TextureParams key = p;
  std::memset(static_cast<void*>(&key.frame), 0, sizeof key.frame);
  for (int k = 0; k < 3; ++k) {
    key.frame.planes[k] = p.frame.planes[k];
    key.frame.row_stride[k] = p.frame.row_stride[k];
  }
  key.frame.width = p.frame.width;
  key.frame.height = p.frame.height;
  key.frame.format = p.frame.format;
  key.frame.device = p.frame.device;
  key.frame.cuda_device = p.frame.cuda_device;
  key.frame.cuda_stream = p.frame.cuda_stream;
  return run_as_graph(GraphStage::kTexture, p.out, &key, sizeof key, static_cast<cudaStream_t>(stream),
                      [&](cudaStream_t s) {
                        return p.dtype == DType::kFloat16 ? build_typed<uint16_t>(p, s) : build_typed<float>(p, s);
                      });
}

}  // namespace arrcoc::cuda
