// Stage 2: the cluster-first cascade. Clusters the frame at mip level 2 (SLIC-like: seeds on
// a grid, colour + position, a few iterations), writes the cluster ids into texture channel 13,
// scores the clusters cheaply, keeps the best, and takes the best patches (16x16 pixels = level-4
// texels) of each as candidates for the scoring stage.
//
// Outputs have a fixed size (padded with -1), so the CUDA path needs no host synchronization:
// candidate slot r * patches_per_cluster + k holds the k-th best patch of the r-th best cluster.
#pragma once

#include <cstdint>
#include <memory>

#include "arrcoc/export.h"
#include "arrcoc/frame.h"
#include "arrcoc/status.h"
#include "arrcoc/texture.h"

namespace arrcoc {

struct CascadeConfig {
  int32_t max_width = 1920;          // largest frame the texture was built for, 1..16384
  int32_t max_height = 1080;
  int32_t num_seeds = 48;            // SLIC seeds on a grid (about), 1..256
  int32_t iterations = 3;            // assignment/update rounds, 1..20
  float compactness = 0.1f;          // colour distance worth one grid spacing, (0, 10]
  int32_t top_clusters = 10;         // clusters kept, 1..256
  int32_t patches_per_cluster = 50;  // candidates taken from each kept cluster, 1..4096
  float motion_weight = 1.0f;        // weight of mean motion in cluster and patch scores, [0, 100]
  float query_weight = 1.0f;         // weight of mean query similarity (ch 33), [0, 100]
  float contrast_weight = 1.0f;      // weight of contrast (colour or texture rarity) in cluster scores, [0, 100]
  Device device = Device::kCPU;
  int32_t cuda_device = 0;
  int32_t num_threads = 0;           // CPU worker threads; 0 = all hardware threads
};

// Results of one run; pointers into the cascade's memory (host or device, per `device`),
// valid until its next run().
struct CascadeView {
  Device device = Device::kCPU;
  int32_t cuda_device = 0;            // device ordinal when device == kCUDA
  int32_t num_clusters = 0;           // seeds in the grid (grid_x * grid_y)
  int32_t grid_x = 0, grid_y = 0;
  int32_t level2_width = 0, level2_height = 0;
  int32_t patch_grid_width = 0, patch_grid_height = 0;  // level-4 size
  const int32_t* labels = nullptr;           // [level2_height * level2_width] cluster id per texel
  const float* cluster_scores = nullptr;     // [num_clusters]; -1 for empty clusters
  const float* cluster_contrast = nullptr;   // [num_clusters] contrast in [0, 1]: colour or texture rarity (0 if empty)
  const float* patch_contrast = nullptr;     // [patch grid] the contrast of each patch's cluster
  const int32_t* kept_clusters = nullptr;    // [top_clusters] ids, best first; -1 padding
  const int32_t* candidate_patch = nullptr;  // [top_clusters * patches_per_cluster]; -1 padding
  int32_t capacity = 0;                      // top_clusters * patches_per_cluster
};

class ARRCOC_API ClusterCascade {
 public:
  static Status create(const CascadeConfig& config, std::unique_ptr<ClusterCascade>* out) noexcept;
  ~ClusterCascade();
  ClusterCascade(const ClusterCascade&) = delete;
  ClusterCascade& operator=(const ClusterCascade&) = delete;

  // Runs on `texture` (made by a TextureBuilder on the same device) and writes channel 13.
  // CUDA: queued on `cuda_stream` (nullptr = legacy default stream).
  Status run(const TextureView& texture, CascadeView* out, void* cuda_stream = nullptr) noexcept;
  Status synchronize() noexcept;
  const CascadeConfig& config() const noexcept;

  struct Impl;

 private:
  explicit ClusterCascade(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace arrcoc
