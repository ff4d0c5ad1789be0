// Fibers for the CUDA emulator: one per emulated thread of a block, switched cooperatively on
// the host thread that launched the kernel. x86-64 switches with a few instructions of its own
// (fiber.cpp); other machines (or -DLETHE_EMU_UCONTEXT) fall back to <ucontext.h>. AddressSanitizer
// is told about every stack switch, so it checks kernel code on fiber stacks as on any other.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace lethe::emu {

// A fiber's stack: mmap'd, with a guard page below it, reused from launch to launch.
struct FiberStack {
  char* base = nullptr;  // lowest usable byte
  size_t size = 0;
};

class StackPool {
 public:
  explicit StackPool(size_t stack_bytes) : bytes_(stack_bytes) {}
  ~StackPool();
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;
  FiberStack take();
  void give_back(FiberStack s) { free_.push_back(s); }

 private:
  size_t bytes_;
  std::vector<FiberStack> free_;
  std::vector<FiberStack> all_;
};

// A suspended execution context. `start` prepares one that will call entry() on `stack`;
// `switch_to` saves the running context into `from` and resumes `to`.
struct Context {
  void* sp = nullptr;        // x86-64: the saved stack pointer
  void* ucontext = nullptr;  // elsewhere: a ucontext_t
  // AddressSanitizer bookkeeping (unused without it)
  void* fake_stack = nullptr;
  const void* stack_bottom = nullptr;
  size_t stack_size = 0;
};

void context_start(Context& c, const FiberStack& stack, void (*entry)());
// Switches from `from` (the running context) to `to`. `leaving_for_good`: `from` will never be
// resumed (its fiber has returned), so the sanitizer may drop its bookkeeping.
void context_switch(Context& from, Context& to, bool leaving_for_good = false);
// The first thing a fiber does on its stack, and what a context does after context_switch
// returns into it.
void context_arrived(Context& self, Context* from);
void context_free(Context& c);
// Clears what AddressSanitizer remembers of a stack whose fiber was abandoned mid-kernel.
void stack_forget(const FiberStack& s);

}  // namespace lethe::emu
