// Stage 1: frame -> 40-channel texture array with a 5-level mip pyramid.
//
// A TextureBuilder is created once with the largest frame it will see; it allocates all
// of its memory then and nothing per frame afterwards (CV-CUDA style). build() may be
// called with any frame up to that size. The returned TextureView points into the
// builder's memory and stays valid until the next build() or reset().
#pragma once

#include <cstdint>
#include <memory>

#include "arrcoc/channels.h"
#include "arrcoc/export.h"
#include "arrcoc/frame.h"
#include "arrcoc/status.h"

namespace arrcoc {

// The largest magnitude TextureBuilder::set_patch_channel accepts (a query similarity map, ...):
// float16 storage holds it, and the cascade's fixed-point patch keys stay exact for any weights
// (score <= 1 + 100 + 100 * 1e4 < 2^20, so score * 2^20 < 2^40).
constexpr float kMaxPatchValue = 1.0e4f;

enum class DType : int32_t {
  kFloat16 = 0,  // IEEE binary16, round to nearest even
  kFloat32 = 1,
};

// Bytes per texel: 2 (float16) or 4 (float32); 0 for a value that is not a DType.
ARRCOC_API int dtype_size(DType t) noexcept;

// Which level-0 planes build() writes. Levels 1-4 of every channel are written either way, from
// the same level-0 values, so everything stored is identical under both.
enum class TexturePlanes : int32_t {
  kAll = 0,       // every channel at every level (a TextureBuilder's default)
  kPipeline = 1,  // at level 0 only what the later stages read: R, G, B (glimpses) and motion (scene
                  // cuts); saves 11 of 15 level-0 planes of stores (a Pipeline's default). The
                  // CUDA backend still writes them (its mip kernels read them), but the view hides them.
};

// Level-0 planes kept under TexturePlanes::kPipeline: bit c for channel c.
constexpr uint32_t kPipelineLevel0Planes = (1u << 0) | (1u << 1) | (1u << 2) | (1u << 10);
constexpr uint32_t kAllLevel0Kept = 0xFFFFFFFFu;

struct TextureConfig {
  int32_t max_width = 1920;    // largest frame width build() accepts, 1..16384
  int32_t max_height = 1080;   // largest frame height build() accepts, 1..16384
  DType dtype = DType::kFloat16;
  Device device = Device::kCPU;
  int32_t cuda_device = 0;     // CUDA device ordinal when device == kCUDA
  int32_t num_threads = 0;     // CPU worker threads; 0 = all hardware threads
  float fixation_x = 0.5f;     // fixation point for eccentricity, in [0,1] of the width
  float fixation_y = 0.5f;     // ... and of the height
  TexturePlanes planes = TexturePlanes::kAll;
};

// Geometry of one mip level inside the texture buffer.
struct LevelLayout {
  int32_t width = 0;         // texels: ceil(frame_width / 2^level)
  int32_t height = 0;
  int64_t offset = 0;        // element offset of the level's first plane in the buffer
  int32_t num_planes = 0;    // channels stored at this level (base level <= this level)
};

// A read-only view of one built texture array. Memory layout: levels one after another;
// inside a level, one contiguous width x height plane (row pitch = width) per stored
// channel, in channel order. plane_index() maps (channel, level) to the plane.
struct ARRCOC_API TextureView {
  void* data = nullptr;      // buffer start (host or device memory, per `device`)
  Device device = Device::kCPU;
  int32_t cuda_device = 0;   // device ordinal when device == kCUDA
  DType dtype = DType::kFloat16;
  int32_t width = 0;         // frame width (level 0)
  int32_t height = 0;
  LevelLayout levels[kNumLevels];
  bool motion_valid = false;  // false on the first frame, after reset() and after a size change
  uint64_t frame_index = 0;   // frames built since creation (1 for the first)
  // Bit c: channel c's level-0 plane holds this frame's values (TextureConfig::planes); a plane
  // that is not kept stays in the layout but is not written.
  uint32_t level0_kept = kAllLevel0Kept;

  // Plane index of `channel` at `level` within that level, or -1 if it is not stored there.
  static int plane_index(int channel, int level) noexcept;
  // Element offset of that plane in the buffer, or -1 if it is not stored there or not kept.
  int64_t plane_offset(int channel, int level) const noexcept;
  // Whether the plane of `channel` at `level` holds this frame's values.
  bool has_plane(int channel, int level) const noexcept;
  int64_t total_elements() const noexcept;
};

// Compute the layout of the texture of a width x height frame (no allocation).
ARRCOC_API void texture_layout(int32_t width, int32_t height, LevelLayout out[kNumLevels]) noexcept;

class ARRCOC_API TextureBuilder {
 public:
  // Validates the config and allocates everything the builder will ever need.
  static Status create(const TextureConfig& config, std::unique_ptr<TextureBuilder>* out) noexcept;
  ~TextureBuilder();
  TextureBuilder(const TextureBuilder&) = delete;
  TextureBuilder& operator=(const TextureBuilder&) = delete;

  // Builds the texture of `frame`. On the CUDA backend the work is queued on
  // frame.cuda_stream (host frames are first copied on that stream); call
  // synchronize() or wait_on_stream() before reading the result from another stream.
  // A host frame may be reused as soon as build() returns (for page-locked frames build() waits
  // for their upload). A device frame (frame.cuda_device must be the builder's device) must stay
  // valid until the work has finished (synchronize(), or query()). When the stream changes from
  // one frame to the next, the new stream first waits for the previous frame's work.
  Status build(const FrameView& frame, TextureView* out) noexcept;

  // Forget the previous frame: the next build reports no motion.
  void reset() noexcept;

  // Fixation point for the eccentricity channel, in [0,1] of width and height.
  Status set_fixation(float x, float y) noexcept;

  // CUDA: make `stream` wait until the last build() has finished (no host sync).
  // CPU: no-op.
  Status wait_on_stream(void* cuda_stream) noexcept;
  // Write channel `channel` (one stored from level 4, the patch grid: semantics, query
  // similarity, ...) of the last built texture at level 4 from `values`: host float32, row-major
  // [h4, w4] of the current frame. Converted to the texture's dtype; on CUDA queued on the last
  // build's stream. Rejects NaN/inf and magnitudes above kMaxPatchValue.
  Status set_patch_channel(int channel, const float* values) noexcept;
  // The same, queued on `cuda_stream` (nullptr: the legacy default stream) after the last build's
  // work. The two-argument form queues on the last build's stream, which must then still exist;
  // this one is for a caller that has destroyed it or works on another. CPU: the stream is ignored.
  Status set_patch_channel(int channel, const float* values, void* cuda_stream) noexcept;

  // Fill the whole output buffer with 0xFF bytes (NaN in float16 and float32), so a test can
  // check that build() writes every element it reports. Not for the per-frame path.
  Status poison_output() noexcept;

  // CUDA: a later stage read or wrote this texture on `stream` (the cascade's cluster ids, the
  // allocator's channels 34 and 37-39, ...): synchronize(), wait_on_stream(), exports and the next
  // build() then wait for that work too. CPU: no-op.
  Status record_use(void* cuda_stream) noexcept;

  // Block the host until the last build() (and set_patch_channel(), record_use()) has finished.
  Status synchronize() noexcept;
  // *done = whether that work has finished, without blocking (CPU: always true).
  Status query(bool* done) noexcept;

  const TextureConfig& config() const noexcept;

  struct Impl;
 private:
  explicit TextureBuilder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace arrcoc
