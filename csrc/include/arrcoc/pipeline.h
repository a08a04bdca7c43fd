// The whole front end in one object: texture -> cluster cascade -> three scores -> fused
// balance/temporal/allocation -> glimpses. Created once for a maximum frame size; process() per frame.
#pragma once

#include <cstdint>
#include <memory>

#include "arrcoc/allocate.h"
#include "arrcoc/cascade.h"
#include "arrcoc/export.h"
#include "arrcoc/frame.h"
#include "arrcoc/status.h"
#include "arrcoc/texture.h"

namespace arrcoc {

// A Pipeline's texture defaults: a TextureConfig's, but level 0 holds only what the stages read.
inline TextureConfig pipeline_texture_defaults() {
  TextureConfig c;
  c.planes = TexturePlanes::kPipeline;
  return c;
}

struct PipelineConfig {
  // Maximum frame size, device, dtype and threads are taken from `texture` and applied to every
  // stage; the cascade's and allocator's own max-size, device and thread fields are ignored, and
  // so is allocator.max_candidates (cascade.top_clusters * cascade.patches_per_cluster plus the
  // held saccades, at most 1024; the product alone must be at most 1024). Its planes default to
  // TexturePlanes::kPipeline (set kAll to read every channel at level 0 too). A Pipeline, like
  // every operator, is used by one thread at a time; separate objects may run on separate threads.
  TextureConfig texture = pipeline_texture_defaults();
  CascadeConfig cascade;
  AllocatorConfig allocator;
  // Synchronize after each stage on CUDA so the per-stage timings are real (costs a little).
  bool synchronize_stages = false;
};

struct PipelineResult {
  TextureView texture;   // the frame's texture (channels 13, 33, 34, 37-39 filled by the stages)
  CascadeView cascade;   // clusters and candidates
  TokenPack tokens;      // the token pack for the VLM
  double stage_ms[3] = {0.0, 0.0, 0.0};  // texture, cascade, allocate+gather (host clock)
};

class ARRCOC_API Pipeline {
 public:
  static Status create(const PipelineConfig& config, std::unique_ptr<Pipeline>* out) noexcept;
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // One frame. `query_map` (nullable): host float32 similarity per patch, [ceil(h/16), ceil(w/16)].
  Status process(const FrameView& frame, const float* query_map, PipelineResult* out) noexcept;
  // The token pack of the last frame that reached the allocation step, in host memory: the one
  // call a host needs to read it on either backend. kInvalidArgument before the first frame, or when
  // that step failed (no pack is left); a frame refused before it (a bad FrameView) leaves the pack
  // before. CUDA: copied into page-locked memory the pipeline owns (allocated at the first call,
  // then reused), queued on `cuda_stream` after the frame, and waited for (one host wait); CPU: the
  // pack itself. *out views that memory until the next copy_to_host or process.
  Status copy_to_host(TokenPack* out, void* cuda_stream = nullptr) noexcept;
  // Running back: each token of that pack gets the mean of `features` (float32 [C, h, w],
  // row-major, covering the whole frame, in the pipeline's memory) over the 2^level x 2^level cells
  // around its centre, written to `out` ([N, C], same memory). Padding tokens get 0.
  Status gather_features(const float* features, int channels, int height, int width, float* out,
                         void* cuda_stream = nullptr) noexcept;
  // CUDA: work queued on `stream` from now on waits for the last frame's work (no host wait), so
  // a host's own kernels can read the pack on its stream; no-op on the CPU.
  Status wait_on_stream(void* stream) noexcept;
  // CUDA: waits on the host for the last frame's work, then copies (weights change rarely).
  Status set_weights(const BalanceWeights& weights) noexcept;
  // Block the host until the last frame's work has finished (CUDA; no-op on the CPU).
  Status synchronize() noexcept;
  void reset() noexcept;  // forget motion history and carried relevance

  struct Impl;

 private:
  explicit Pipeline(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace arrcoc
