// CUDA backend of the semantic stage: one thread per patch over csrc/shared/semantic_params.h.
#include <cuda_runtime.h>

#include "../core/cuda_backend.h"
#include "../shared/semantic_params.h"
#include "cuda_check.h"
#include "launch.cuh"

namespace arrcoc::cuda {
namespace {

template <typename T>
__global__ void encode_kernel(SemanticParams p) {
  const int q = blockIdx.x * blockDim.x + threadIdx.x;
  if (q < p.w4 * p.h4) encode_patch<T>(p, q);
}

template <typename T>
__global__ void channels_kernel(SemanticParams p) {
  const int q = blockIdx.x * blockDim.x + threadIdx.x;
  if (q < p.w4 * p.h4) semantic_channels_patch<T>(p, q);
}

template <typename T>
__global__ void layout_histogram_kernel(LayoutParams p) {
  const int q = blockIdx.x * blockDim.x + threadIdx.x;
  if (q < p.hc[0] * p.wc[0]) layout_histogram_8px<T, 1>(p, q / p.wc[0], q % p.wc[0], 1);
}

__global__ void layout_add_up_kernel(LayoutParams p, int z) {
  const int q = blockIdx.x * blockDim.x + threadIdx.x;
  if (q < p.hc[z] * p.wc[z]) layout_add_up_cells(p, z, q / p.wc[z], q % p.wc[z], 1);
}

__global__ void layout_cells_kernel(LayoutParams p, int z) {
  const int q = blockIdx.x * blockDim.x + threadIdx.x;
  if (q < p.hc[z] * p.wc[z]) layout_describe_cells<1>(p, z, q, 1);
}

__global__ void layout_ncc_kernel(LayoutTemplateParams t) {
  const int a = blockIdx.x * blockDim.x + threadIdx.x;
  if (a < t.ha * t.wa) layout_ncc_span<1>(t, a / t.wa, a % t.wa);
}

__global__ void layout_patch_kernel(LayoutParams p) {
  const int q = blockIdx.x * blockDim.x + threadIdx.x;
  if (q < p.w4 * p.h4) layout_patch(p, q);
}

int blocks_for(int64_t n) { return static_cast<int>((n + 127) / 128); }

}  // namespace

Status match_layout(const LayoutParams& p, void* stream) noexcept {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int n8 = p.hc[0] * p.wc[0];
  if (p.histograms_ready)
    ;  // encode() read the texels
  else if (p.dtype == DType::kFloat16)
    launch(layout_histogram_kernel<uint16_t>, blocks_for(n8), 128, 0, s)(p);
  else
    launch(layout_histogram_kernel<float>, blocks_for(n8), 128, 0, s)(p);
  for (int z = p.histograms_ready ? 2 : 1; z < kLayoutCellSizes; ++z)
    if (p.raw[z]) launch(layout_add_up_kernel, blocks_for(p.hc[z] * p.wc[z]), 128, 0, s)(p, z);
  for (int z = 0; z < kLayoutCellSizes; ++z)
    if (p.cell_maps[z]) launch(layout_cells_kernel, blocks_for(p.hc[z] * p.wc[z]), 128, 0, s)(p, z);
  for (int k = 0; k < p.num_templates; ++k) {
    const LayoutTemplateParams& t = p.t[k];
    if (t.ha == 0) continue;
    launch(layout_ncc_kernel, blocks_for(static_cast<int64_t>(t.ha) * t.wa), 128, 0, s)(t);
  }
  if (p.layout) launch(layout_patch_kernel, blocks_for(static_cast<int64_t>(p.w4) * p.h4), 128, 0, s)(p);
  return check(cudaGetLastError(), "match_layout launch");
}

Status encode_semantic(const SemanticParams& p, void* stream) noexcept {
  const int blocks = (p.w4 * p.h4 + 127) / 128;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (p.dtype == DType::kFloat16)
    launch(encode_kernel<uint16_t>, blocks, 128, 0, s)(p);
  else
    launch(encode_kernel<float>, blocks, 128, 0, s)(p);
  return check(cudaGetLastError(), "encode_kernel launch");
}

Status write_semantic_channels(const SemanticParams& p, void* stream) noexcept {
  const int blocks = (p.w4 * p.h4 + 127) / 128;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (p.dtype == DType::kFloat16)
    launch(channels_kernel<uint16_t>, blocks, 128, 0, s)(p);
  else
    launch(channels_kernel<float>, blocks, 128, 0, s)(p);
  return check(cudaGetLastError(), "channels_kernel launch");
}

}  // namespace arrcoc::cuda
