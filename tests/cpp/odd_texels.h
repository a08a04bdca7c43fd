// A texture the caller wrote (the C++ API takes any TextureView) whose texels leave their ranges --
// NaN, +-inf, huge, negative -- must give defined results on every backend: each stage reads a texel
// clamped to its range, NaN as 0 (hd.h: clamp_or_zero), so the allocator's tokens are those of the
// same texture clamped by hand, and the built-in encoder's features stay finite. Shared by
// test_texture_api.cpp (CPU) and test_cuda_host.cpp (CUDA: the emulated or a real device).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "arrcoc/arrcoc.h"

#include "check.h"

namespace arrcoc_test {

// Device memory for a test (identity on the CPU): upload a host copy, download a result.
struct DeviceMemory {
  std::function<void*(const std::vector<float>&)> upload;  // returns the buffer (kept until release)
  std::function<void(void* host, const void* device, size_t bytes)> download;
  std::function<void(void*)> release;
};

inline DeviceMemory host_memory() {
  return {[](const std::vector<float>& v) { return const_cast<float*>(v.data()); },
          [](void* host, const void* src, size_t bytes) { std::memcpy(host, src, bytes); }, [](void*) {}};
}

struct StageOutputs {
  std::vector<int32_t> patches, budgets, kinds;
  std::vector<float> positions;
  std::vector<float> features;  // built-in descriptors, [32, h4, w4]
};

// Cascade and two allocator frames (the second with history: held saccades, carried relevance, the
// previous frame's luminance), then the built-in encoder, on `view` (data on `device`).
inline StageOutputs run_stages(arrcoc::Device device, const arrcoc::TextureView& view, const DeviceMemory& mem,
                               const std::string& what) {
  StageOutputs out;
  const int w = view.width, h = view.height;
  arrcoc::CascadeConfig cc;
  cc.max_width = w;
  cc.max_height = h;
  cc.device = device;
  arrcoc::AllocatorConfig ac;
  ac.max_width = w;
  ac.max_height = h;
  ac.device = device;
  arrcoc::SemanticConfig sc;
  sc.max_width = w;
  sc.max_height = h;
  sc.device = device;
  std::unique_ptr<arrcoc::ClusterCascade> cascade;
  std::unique_ptr<arrcoc::TokenAllocator> allocator;
  std::unique_ptr<arrcoc::SemanticEncoder> encoder;
  check(arrcoc::ClusterCascade::create(cc, &cascade).ok() && arrcoc::TokenAllocator::create(ac, &allocator).ok() &&
            arrcoc::SemanticEncoder::create(sc, &encoder).ok(),
        what + ": create the stages");
  if (!cascade || !allocator || !encoder) return out;
  for (int frame = 0; frame < 2; ++frame) {
    arrcoc::CascadeView cv;
    arrcoc::TokenPack pack, host;
    const bool ran = cascade->run(view, &cv).ok() && allocator->run(view, cv, frame == 1, &pack).ok() &&
                     allocator->copy_to_host(&host).ok();
    check(ran, what + ": cascade and allocator, frame " + std::to_string(frame));
    if (!ran) return out;
    out.patches.insert(out.patches.end(), host.patches, host.patches + host.num_tokens);
    out.budgets.insert(out.budgets.end(), host.budgets, host.budgets + host.num_tokens);
    out.kinds.insert(out.kinds.end(), host.kinds, host.kinds + host.num_tokens);
    out.positions.insert(out.positions.end(), host.positions, host.positions + 2 * host.num_tokens);
  }
  const float* features = nullptr;
  const bool encoded = encoder->encode(view, false, &features).ok() && encoder->synchronize().ok();
  check(encoded && features, what + ": encode");
  if (!encoded || !features) return out;
  out.features.resize(static_cast<size_t>(32) * view.levels[4].width * view.levels[4].height);
  mem.download(out.features.data(), features, out.features.size() * sizeof(float));
  return out;
}

// Writes odd values into every fifth texel of the planes the cascade, the allocator and the encoder
// read (`wild`), and the values each stage reads them as into `clamped`.
inline void spoil_planes(const arrcoc::TextureView& layout, std::vector<float>* wild, std::vector<float>* clamped,
                         uint32_t seed) {
  using arrcoc::Channel;
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const float odd[] = {-0.25f, -1e30f, 7.0f, 3e9f, inf, -inf, nan, 2e4f, -9.0f, 20.0f, 3000.0f, -3e6f};
  struct Plane {
    int channel, level;
    float lo, hi;  // the range a stage reads it in (NaN: 0)
  };
  constexpr float kStat = 1.0e4f;
  const Plane planes[] = {
      // cascade (level 2, and the patch keys' level 4)
      {int(Channel::kLocalContrast), 2, 0.0f, 0.5f}, {int(Channel::kLuminance), 2, -2.0f, 14.0f},
      {int(Channel::kOpponentRG), 2, -2.0f, 14.0f}, {int(Channel::kOpponentBY), 2, -2.0f, 14.0f},
      {int(Channel::kSaliency), 2, -kStat, kStat}, {int(Channel::kEccentricity), 2, -kStat, kStat},
      {int(Channel::kMotion), 2, -kStat, kStat}, {int(Channel::kSaliency), 4, -kStat, kStat},
      {int(Channel::kMotion), 4, -kStat, kStat}, {int(Channel::kQuerySimilarity), 4, -kStat, kStat},
      // allocator (level 4): features, motion vectors, the scene cut's luminance
      {int(Channel::kEccentricity), 4, -kStat, kStat}, {int(Channel::kGradMagnitude), 4, -kStat, kStat},
      {int(Channel::kHighPass), 4, -kStat, kStat}, {int(Channel::kEdgeDensity), 4, -kStat, kStat},
      {int(Channel::kEntropy), 4, -kStat, kStat}, {int(Channel::kMotionX), 4, -kStat, kStat},
      {int(Channel::kMotionY), 4, -kStat, kStat}, {int(Channel::kLuminance), 4, -2.0f, 2.0f},
  };
  uint32_t state = seed;
  auto next = [&state] { return state = state * 1664525u + 1013904223u; };
  for (const Plane& pl : planes) {
    const int64_t at = layout.plane_offset(pl.channel, pl.level);
    const int64_t texels = static_cast<int64_t>(layout.levels[pl.level].width) * layout.levels[pl.level].height;
    for (int64_t i = next() % 5u; i < texels; i += 5) {
      const float v = odd[next() % (sizeof(odd) / sizeof(odd[0]))];
      (*wild)[at + i] = v;
      (*clamped)[at + i] = std::isnan(v) ? 0.0f : std::min(std::max(v, pl.lo), pl.hi);
    }
  }
  // the encoder's level-1 planes (features must stay finite; these are not compared bit for bit)
  const int encoder_planes[] = {int(Channel::kLuminance), int(Channel::kGradX), int(Channel::kGradY),
                                int(Channel::kGradMagnitude), int(Channel::kOpponentRG), int(Channel::kOpponentBY)};
  for (int c : encoder_planes) {
    const int64_t at = layout.plane_offset(c, 1);
    const int64_t texels = static_cast<int64_t>(layout.levels[1].width) * layout.levels[1].height;
    for (int64_t i = next() % 7u; i < texels; i += 7) (*wild)[at + i] = odd[next() % (sizeof(odd) / sizeof(odd[0]))];
  }
}

// `texture`: a float32 texture (host data) of a noise frame built twice (motion valid).
inline void check_odd_texels_read_clamped(arrcoc::Device device, const arrcoc::TextureView& texture,
                                          const DeviceMemory& mem, const std::string& backend) {
  std::vector<float> wild(static_cast<const float*>(texture.data),
                          static_cast<const float*>(texture.data) + texture.total_elements());
  std::vector<float> clamped = wild;
  spoil_planes(texture, &wild, &clamped, 4242u);
  arrcoc::TextureView view = texture;
  view.device = device;
  view.data = mem.upload(clamped);
  const StageOutputs want = run_stages(device, view, mem, backend + " clamped by hand");
  mem.release(view.data);
  view.data = mem.upload(wild);
  const StageOutputs got = run_stages(device, view, mem, backend + " odd texels");
  mem.release(view.data);
  check(!want.patches.empty() && got.patches == want.patches, backend + ": odd texels give the clamped texture's patches");
  check(got.budgets == want.budgets, backend + ": ... its levels of detail");
  check(got.kinds == want.kinds, backend + ": ... its token kinds");
  check(got.positions == want.positions, backend + ": ... its positions");
  const int n4 = texture.levels[4].width * texture.levels[4].height;
  int saccades = 0;
  bool in_grid = true;
  for (size_t k = 0; k < got.kinds.size(); ++k)
    if (got.kinds[k] == 1) {
      ++saccades;
      in_grid = in_grid && got.patches[k] >= 0 && got.patches[k] < n4;
    }
  check(saccades > 0 && in_grid, backend + ": every saccade on a patch of the grid");
  check(!got.features.empty() && std::all_of(got.features.begin(), got.features.end(), [](float v) { return std::isfinite(v); }),
        backend + ": finite built-in features from odd level-1 texels");
}

}  // namespace arrcoc_test
