// Fibers for the emulated device. On x86-64 a hand-written switch saves only the callee-saved
// registers and the FP control words (no signal-mask system call per switch, unlike
// swapcontext), which matters: every emulated CUDA thread is entered and left at least once.
#include "fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace cuda_emu {

FiberStack allocate_fiber_stack(size_t bytes) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  bytes = (bytes + page - 1) / page * page;
  void* p = mmap(nullptr, bytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    std::fprintf(stderr, "arrcoc CUDA emulator: cannot map a fiber stack of %zu bytes\n", bytes);
    std::abort();
  }
  // Guard page: stacks grow down into it. Without one an overflow would corrupt memory silently.
  if (mprotect(p, page, PROT_NONE) != 0) {
    std::fprintf(stderr, "arrcoc CUDA emulator: cannot protect a fiber stack's guard page\n");
    std::abort();
  }
  return FiberStack{static_cast<char*>(p) + page, bytes};
}

void free_fiber_stack(FiberStack s) {
  if (!s.base) return;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  munmap(s.base - page, s.size + page);
}

#if defined(__x86_64__)

extern "C" void arrcoc_emu_switch_stack(void** save_sp, void* new_sp);

// Pushes rbp, rbx, r12-r15 and MXCSR/x87 control word, stores rsp in *save_sp, loads new_sp and
// pops the same frame from it (System V AMD64: everything else is caller-saved).
asm(R"(
.pushsection .text
.globl arrcoc_emu_switch_stack
.hidden arrcoc_emu_switch_stack
.type arrcoc_emu_switch_stack,@function
arrcoc_emu_switch_stack:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size arrcoc_emu_switch_stack, .-arrcoc_emu_switch_stack
.popsection
)");

void make_fiber(FiberContext* ctx, FiberStack stack, void (*entry)()) {
  auto top = reinterpret_cast<uintptr_t>(stack.base + stack.size) & ~static_cast<uintptr_t>(15);
  auto* sp = reinterpret_cast<uint64_t*>(top);
  *--sp = 0;                                      // entry's (never used) return address: rsp = 8 mod 16
  *--sp = reinterpret_cast<uint64_t>(entry);      // where the switch's `ret` goes
  for (int i = 0; i < 6; ++i) *--sp = 0;          // rbp rbx r12 r13 r14 r15
  *--sp = 0x1F80ull | (0x037Full << 32);          // default MXCSR, x87 control word
  ctx->sp = sp;
}

void switch_fiber(FiberContext* from, FiberContext* to) { arrcoc_emu_switch_stack(&from->sp, to->sp); }

#else  // portable fallback

void make_fiber(FiberContext* ctx, FiberStack stack, void (*entry)()) {
  auto* uc = new ucontext_t();
  getcontext(uc);
  uc->uc_stack.ss_sp = stack.base;
  uc->uc_stack.ss_size = stack.size;
  uc->uc_link = nullptr;
  makecontext(uc, entry, 0);
  ctx->uctx = uc;
}

void switch_fiber(FiberContext* from, FiberContext* to) {
  if (!from->uctx) from->uctx = new ucontext_t();
  swapcontext(static_cast<ucontext_t*>(from->uctx), static_cast<ucontext_t*>(to->uctx));
}

#endif

}  // namespace cuda_emu
