// Cooperative fibers for the emulated device: each CUDA thread of a block is a fiber, so
// __syncthreads() can suspend it until the block's other threads arrive (internal).
#pragma once

#include <cstddef>

namespace cuda_emu {

// A suspended execution context: its saved stack pointer (x86-64) or ucontext (elsewhere).
struct FiberContext {
  void* sp = nullptr;
  void* uctx = nullptr;  // ucontext_t* on non-x86-64
};

// A fiber stack with a guard page below it (an overflow faults instead of corrupting memory).
struct FiberStack {
  char* base = nullptr;  // lowest usable byte
  size_t size = 0;
};

FiberStack allocate_fiber_stack(size_t bytes);
void free_fiber_stack(FiberStack s);

// Prepare `ctx` so that the first switch to it calls entry() on `stack`. entry must never return.
void make_fiber(FiberContext* ctx, FiberStack stack, void (*entry)());
// Save the running context into `from`, resume `to`.
void switch_fiber(FiberContext* from, FiberContext* to);

}  // namespace cuda_emu
