// Fibers for the CUDA emulator (see fiber.h).
#include "kernels/cuda/emu/fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#if defined(__SANITIZE_ADDRESS__)
#define LETHE_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LETHE_EMU_ASAN 1
#endif
#endif
#ifdef LETHE_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if !defined(__x86_64__) || defined(LETHE_EMU_UCONTEXT)
#define LETHE_EMU_USE_UCONTEXT 1
#include <ucontext.h>
#endif

namespace lethe::emu {

namespace {
[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "lethe CUDA emulator: %s\n", what);
  std::abort();
}
}  // namespace

// ---- stacks -------------------------------------------------------------------------------------

StackPool::~StackPool() {
  long page = sysconf(_SC_PAGESIZE);
  for (FiberStack& s : all_) munmap(s.base - page, s.size + static_cast<size_t>(page));
}

FiberStack StackPool::take() {
  if (!free_.empty()) {
    FiberStack s = free_.back();
    free_.pop_back();
    return s;
  }
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  size_t size = (bytes_ + page - 1) / page * page;
  void* p = mmap(nullptr, size + page, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (p == MAP_FAILED) die("cannot map a fiber stack (out of address space?)");
  mprotect(p, page, PROT_NONE);  // a guard page: a kernel that overflows its stack faults
  FiberStack s{static_cast<char*>(p) + page, size};
  all_.push_back(s);
  return s;
}

// ---- switching ----------------------------------------------------------------------------------

#if !defined(LETHE_EMU_USE_UCONTEXT)
// lethe_emu_swap(void** save_sp, void* next_sp): pushes the callee-saved registers and the SSE /
// x87 control words on the running stack, stores its stack pointer in *save_sp, loads next_sp
// and pops the same frame from there. A new context's frame is made by context_start.
extern "C" void lethe_emu_swap(void** save_sp, void* next_sp);
asm(R"(
  .text
  .globl lethe_emu_swap
  .type lethe_emu_swap, @function
  .p2align 4
lethe_emu_swap:
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
  .size lethe_emu_swap, .-lethe_emu_swap
  .section .note.GNU-stack,"",@progbits
  .text
)");

void context_start(Context& c, const FiberStack& stack, void (*entry)()) {
  auto top = reinterpret_cast<uintptr_t>(stack.base + stack.size) & ~uintptr_t{15};
  auto* slot = reinterpret_cast<uint64_t*>(top);
  *--slot = 0;                                  // entry's "return address": it never returns
  *--slot = reinterpret_cast<uint64_t>(entry);  // where lethe_emu_swap's ret goes
  for (int r = 0; r < 6; ++r) *--slot = 0;      // rbp rbx r12 r13 r14 r15
  uint32_t mxcsr = 0;
  uint16_t fpucw = 0;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpucw));
  *--slot = static_cast<uint64_t>(mxcsr) | (static_cast<uint64_t>(fpucw) << 32);
  c.sp = slot;
  c.stack_bottom = stack.base;
  c.stack_size = stack.size;
}

namespace {
void raw_switch(Context& from, Context& to) {
  lethe_emu_swap(&from.sp, to.sp);
}
}  // namespace

void context_free(Context&) {}

#else  // ucontext: portable, slower (a signal-mask system call per switch)

void context_start(Context& c, const FiberStack& stack, void (*entry)()) {
  if (!c.ucontext) c.ucontext = new ucontext_t();
  auto* uc = static_cast<ucontext_t*>(c.ucontext);
  if (getcontext(uc) != 0) die("getcontext failed");
  uc->uc_stack.ss_sp = stack.base;
  uc->uc_stack.ss_size = stack.size;
  uc->uc_link = nullptr;
  makecontext(uc, entry, 0);
  c.stack_bottom = stack.base;
  c.stack_size = stack.size;
}

namespace {
void raw_switch(Context& from, Context& to) {
  if (!from.ucontext) from.ucontext = new ucontext_t();
  if (swapcontext(static_cast<ucontext_t*>(from.ucontext), static_cast<ucontext_t*>(to.ucontext)))
    die("swapcontext failed");
}
}  // namespace

void context_free(Context& c) {
  delete static_cast<ucontext_t*>(c.ucontext);
  c.ucontext = nullptr;
}
#endif

void context_switch(Context& from, Context& to, bool leaving_for_good) {
#ifdef LETHE_EMU_ASAN
  __sanitizer_start_switch_fiber(leaving_for_good ? nullptr : &from.fake_stack, to.stack_bottom,
                                 to.stack_size);
#else
  (void)leaving_for_good;
#endif
  raw_switch(from, to);
#ifdef LETHE_EMU_ASAN
  __sanitizer_finish_switch_fiber(from.fake_stack, nullptr, nullptr);
#endif
}

void context_arrived(Context& self, Context* from) {
#ifdef LETHE_EMU_ASAN
  const void* bottom = nullptr;
  size_t size = 0;
  __sanitizer_finish_switch_fiber(nullptr, &bottom, &size);
  if (from && !from->stack_bottom) {
    from->stack_bottom = bottom;
    from->stack_size = size;
  }
  (void)self;
#else
  (void)self;
  (void)from;
#endif
}

void stack_forget(const FiberStack& s) {
#ifdef LETHE_EMU_ASAN
  __asan_unpoison_memory_region(s.base, s.size);
#else
  (void)s;
#endif
}

}  // namespace lethe::emu
