// Query-aware relevance: the built-in, weight-free semantic encoder (per-patch colour-opponent,
// gradient-orientation and luminance histograms, 32 dims; csrc/shared/semantic_math.h) and the
// semantic channels of the texture: 17..32 (a 16-component projection, e.g. PCA) and 33 (cosine
// similarity to the query).
#pragma once

#include <cstdint>
#include <memory>

#include "arrcoc/export.h"
#include "arrcoc/frame.h"
#include "arrcoc/status.h"
#include "arrcoc/texture.h"

namespace arrcoc {

constexpr int kBuiltinDescriptorDims = 32;
constexpr int kSemanticComponents = 16;
constexpr int kMaxLayoutTemplates = 4;  // exemplar layout templates (scales) at once
constexpr int kMaxLayoutCells = 64;     // cells per template

// One exemplar layout template: the built-in descriptors of the exemplar's cells at one scale
// (e.g. from encode_cells on the exemplar resized to width x height cells of cell_px pixels).
struct LayoutTemplate {
  const float* descriptors = nullptr;  // host, [32, height, width]
  int32_t width = 0, height = 0;       // cells; width * height <= kMaxLayoutCells
  int32_t cell_px = 16;                // 8, 16 or 32 pixels
};

struct SemanticConfig {
  int32_t max_width = 1920;   // largest frame, 1..16384
  int32_t max_height = 1080;
  int32_t max_dims = 1024;    // largest feature dimension given to write_channels, 1..8192
  int32_t max_queries = 64;   // most query vectors at once (an exemplar's patches), 1..1024
  Device device = Device::kCPU;
  int32_t cuda_device = 0;
  int32_t num_threads = 0;
};

class ARRCOC_API SemanticEncoder {
 public:
  static Status create(const SemanticConfig& config, std::unique_ptr<SemanticEncoder>* out) noexcept;
  ~SemanticEncoder();
  SemanticEncoder(const SemanticEncoder&) = delete;
  SemanticEncoder& operator=(const SemanticEncoder&) = delete;

  // Built-in descriptors of every patch of `texture` ([32, h4, w4] float32, on the device, in the
  // encoder's memory; valid until the next encode). With `carry`, no new encoding: the previous
  // frame's descriptors are moved along the texture's motion vectors (patch grid must match).
  Status encode(const TextureView& texture, bool carry, const float** features, void* cuda_stream = nullptr) noexcept;

  // Writes texture channel 33 = the largest cosine similarity of each patch's features with the
  // `num_queries` query vectors (host, [num_queries, dims]; nullptr writes 0) and channels 17..32 = components . (features - mean)
  // (host: mean [dims], components [16, dims]; nullptr writes 0). `features`: [dims, h4, w4] float32
  // on the encoder's device (e.g. from encode(), or an encoder's features resampled to the grid).
  Status write_channels(const TextureView& texture, const float* features, int dims, const float* query,
                        int num_queries, const float* mean, const float* components,
                        void* cuda_stream = nullptr) noexcept;

  // Exemplar layout (built-in descriptors): from the next write_channels with a query on, channel 33
  // = 0.3 * (that cosine similarity) + 0.7 * max(0, layout), where layout is, per patch, the best
  // zero-mean normalized cross-correlation of any template placed over it with the frame's cell
  // descriptors (csrc/shared/semantic_math.h). The templates are copied; count 0 removes them.
  Status set_layout(const LayoutTemplate* templates, int count) noexcept;

  // Built-in descriptors of `texture`'s cells of `cell_px` (8, 16 or 32) pixels: [32, hc, wc]
  // float32 in the encoder's memory (hc = ceil(height / cell_px)), valid until the next call.
  Status encode_cells(const TextureView& texture, int cell_px, const float** features,
                      void* cuda_stream = nullptr) noexcept;

  // Block the host until the last encode() / write_channels() has finished (CUDA; no-op on the CPU).
  Status synchronize() noexcept;

  // Copies host features ([dims, h4, w4] float32 of the last texture's patch grid, e.g. a CLIP
  // encoder's, resampled) into the encoder's memory and returns them for write_channels.
  // CUDA: the copy is queued on `cuda_stream`, ordered with the kernels there.
  Status upload_features(const TextureView& texture, const float* host, int dims, const float** features,
                         void* cuda_stream = nullptr) noexcept;

  struct Impl;

 private:
  explicit SemanticEncoder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace arrcoc
