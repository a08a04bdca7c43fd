// Stages replayed as CUDA graphs (internal to csrc/cuda/).
//
// A stage's per-frame work is a fixed sequence of kernels and memsets whose every argument comes
// from its parameter block. So the sequence is captured once per distinct parameter block (a
// private capture stream, thread-local mode) and then replayed with one cudaGraphLaunch on the
// caller's stream, any stream including the legacy default one. Parameter blocks repeat: buffers
// are allocated once and ping-pong between two sets, so a stream settles on two graphs per stage.
// Executables are cached per process (LRU); an operator whose blocks keep changing (a caller's
// frame at a new address every frame, the random strategy's frame counter) stops being captured
// for a while and launches directly, without affecting other operators.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <functional>

#include "arrcoc/status.h"

namespace arrcoc::cuda {

enum class GraphStage { kTexture = 0, kCascade = 1, kAllocation = 2 };

// Runs enqueue(stream) - or its captured graph, keyed by the key_bytes at key and the current
// device - on `stream`. enqueue must queue only kernels and async memsets that depend on nothing
// but the key (no host reads, events, waits or allocations: they would fail the capture). `owner`
// identifies the operator (one of its device buffers) for the capture-or-not policy.
Status run_as_graph(GraphStage stage, const void* owner, const void* key, size_t key_bytes, cudaStream_t stream,
                    const std::function<Status(cudaStream_t)>& enqueue);

}  // namespace arrcoc::cuda
