// Status from a CUDA runtime result (internal to csrc/cuda/).
#pragma once

#include <cuda_runtime.h>

#include "arrcoc/status.h"

namespace arrcoc::cuda {

// Ok for cudaSuccess; otherwise kCudaError naming the call and the CUDA error.
Status check(cudaError_t err, const char* what);

}  // namespace arrcoc::cuda
