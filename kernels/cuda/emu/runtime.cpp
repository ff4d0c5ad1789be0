// The CUDA emulator's runtime: kernel launches (threads as fibers, blocks in turn, barriers and
// warp collectives), device memory as exact-size host blocks, synchronous streams and events,
// and the error model of the CUDA runtime API. Implements the toolkit's own declarations.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/cuda/emu/cuda_emu.h"
#include "kernels/cuda/emu/fiber.h"

namespace lethe::emu {

thread_local ThreadState* tls_thread = nullptr;
thread_local BlockState* tls_block = nullptr;

namespace {

// ---- the device's limits: an H100 SXM's (sm_90) -------------------------------------------------
constexpr size_t kSharedDefault = 48 * 1024;  // dynamic shared memory without opting in
constexpr size_t kSharedOptin = 227 * 1024;   // sharedMemPerBlockOptin
constexpr size_t kGlobalMemory = size_t{80} << 30;
constexpr int kDevices =
    8;  // as on an 8-GPU machine: one per rank under mpirun; they share the host's memory
constexpr size_t kStackBytes = 256 * 1024;  // per emulated thread (virtual; touched lazily)
constexpr unsigned char kGarbage = 0xFF;    // fresh memory: NaN in every float dtype

// ---- errors -------------------------------------------------------------------------------------
struct ErrorState {
  std::mutex mu;
  cudaError_t sticky = cudaSuccess;  // a kernel fault: every later call fails until reset
  std::string sticky_detail;
};
ErrorState& errors() {
  static ErrorState* e = new ErrorState();  // never destroyed: used during static exit
  return *e;
}
thread_local cudaError_t t_last = cudaSuccess;
thread_local cudaError_t t_detail_code = cudaSuccess;
thread_local std::string t_detail;
thread_local std::string t_message;

cudaError_t fail(cudaError_t e, std::string detail) {
  t_last = e;
  t_detail_code = e;
  t_detail = std::move(detail);
  return e;
}
cudaError_t sticky() {
  ErrorState& s = errors();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.sticky != cudaSuccess) {
    t_detail_code = s.sticky;
    t_detail = s.sticky_detail;
  }
  return s.sticky;
}
cudaError_t fault(cudaError_t e, const std::string& detail) {
  {
    ErrorState& s = errors();
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.sticky == cudaSuccess) {
      s.sticky = e;
      s.sticky_detail = detail;
    }
  }
  std::fprintf(stderr, "lethe CUDA emulator: %s\n", detail.c_str());
  return fail(e, detail);
}

// ---- counters: LETHE_EMU_STATS=1 prints them at exit -------------------------------------------
struct Stats {
  std::atomic<uint64_t> launches{0}, blocks{0}, threads{0}, failed{0};
  ~Stats() {
    const char* env = std::getenv("LETHE_EMU_STATS");
    if (env && *env && std::string(env) != "0")
      std::fprintf(
          stderr,
          "lethe CUDA emulator: %llu kernel launches, %llu blocks, %llu threads, %llu "
          "failed\n",
          static_cast<unsigned long long>(launches), static_cast<unsigned long long>(blocks),
          static_cast<unsigned long long>(threads), static_cast<unsigned long long>(failed));
  }
};
Stats g_stats;

// ---- device memory ------------------------------------------------------------------------------
struct Memory {
  std::mutex mu;
  std::map<uintptr_t, size_t> live;  // base -> bytes
  size_t used = 0;
};
Memory& memory() {
  static Memory* m = new Memory();
  return *m;
}

// Whether [p, p + bytes) lies inside one live allocation.
bool on_device(const void* p, size_t bytes) {
  Memory& m = memory();
  std::lock_guard<std::mutex> lock(m.mu);
  auto a = reinterpret_cast<uintptr_t>(p);
  auto it = m.live.upper_bound(a);
  if (it == m.live.begin()) return false;
  --it;
  return a >= it->first && a - it->first + bytes <= it->second;
}

std::string hex(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%p", p);
  return buf;
}

// ---- kernels: fibers, barriers, warps -----------------------------------------------------------
enum class State : uint8_t { fresh, ready, running, at_barrier, at_warp, done };

struct Fiber {
  ThreadState ts{};
  State state = State::fresh;
  Context ctx;
  FiberStack stack{};
  bool has_stack = false;
  uint64_t warp_result = 0;
  const char* waiting_in = "";
};

struct WarpSlot {
  int arrived = 0;
  unsigned mask = 0;
  WarpOp op = WarpOp::sync;
  int width = 32;
  int first_lane = -1;
  unsigned present = 0;
  uint64_t value[32];
  int arg[32];
};

const char* op_name(WarpOp op) {
  switch (op) {
    case WarpOp::sync: return "__syncwarp";
    case WarpOp::shfl: return "__shfl_sync";
    case WarpOp::shfl_up: return "__shfl_up_sync";
    case WarpOp::shfl_down: return "__shfl_down_sync";
    case WarpOp::shfl_xor: return "__shfl_xor_sync";
    case WarpOp::ballot: return "__ballot_sync";
    case WarpOp::all: return "__all_sync";
    case WarpOp::any: return "__any_sync";
  }
  return "?";
}

struct Runner;
thread_local Runner* t_runner = nullptr;

// One host thread's launch machinery; fibers and stacks are kept from launch to launch.
struct Runner {
  StackPool pool{kStackBytes};
  Context scheduler;
  std::vector<Fiber> fibers;
  std::vector<WarpSlot> warps;
  BlockState block{};
  const char* name = "";
  KernelBody body = nullptr;
  void* body_ctx = nullptr;
  Fiber* current = nullptr;
  bool failed = false;
  std::string failure;
  unsigned threads = 0;

  std::string where(const Fiber& f) const {
    char buf[160];
    std::snprintf(buf, sizeof(buf), "block (%u,%u,%u) thread (%u,%u,%u)", block.block_idx.x,
                  block.block_idx.y, block.block_idx.z, f.ts.thread_idx.x, f.ts.thread_idx.y,
                  f.ts.thread_idx.z);
    return buf;
  }

  // Called on a fiber: records the failure and leaves for the scheduler, never to come back.
  [[noreturn]] void abort_kernel(std::string why) {
    failed = true;
    failure = std::move(why);
    Fiber* f = current;
    context_switch(f->ctx, scheduler);
    std::fprintf(stderr, "lethe CUDA emulator: an abandoned fiber was resumed\n");
    std::abort();
  }

  void yield(State s, const char* in) {
    Fiber* f = current;
    f->state = s;
    f->waiting_in = in;
    context_switch(f->ctx, scheduler);
    // resumed by the scheduler: current, tls_thread are ours again
  }

  static void fiber_main() {
    Runner& r = *t_runner;
    Fiber* f = r.current;
    context_arrived(f->ctx, &r.scheduler);
    r.body(r.body_ctx);
    f->state = State::done;
    context_switch(f->ctx, r.scheduler, /*leaving_for_good=*/true);
    std::abort();  // a finished fiber is never resumed
  }

  void resume(Fiber& f) {
    if (f.state == State::fresh) {
      f.stack = pool.take();
      f.has_stack = true;
      context_start(f.ctx, f.stack, &Runner::fiber_main);
    }
    f.state = State::running;
    current = &f;
    tls_thread = &f.ts;
    context_switch(scheduler, f.ctx);
    tls_thread = nullptr;
    current = nullptr;
    if (f.state == State::done) {
      pool.give_back(f.stack);
      f.has_stack = false;
    }
  }

  // Why no thread can go on: for each warp collective still waiting, which lanes of its mask
  // never came (exited, or waiting elsewhere).
  std::string describe_deadlock() {
    std::string s = "kernel " + std::string(name) + ": deadlock in block (" +
                    std::to_string(block.block_idx.x) + "," + std::to_string(block.block_idx.y) +
                    "," + std::to_string(block.block_idx.z) + "):";
    for (size_t w = 0; w < warps.size(); ++w) {
      const WarpSlot& slot = warps[w];
      if (slot.arrived == 0) continue;
      s += " warp " + std::to_string(w) + " waits in " + op_name(slot.op) + " for";
      int shown = 0;
      for (unsigned l = 0; l < 32 && shown < 4; ++l) {
        const size_t t = w * 32 + l;
        if (!(slot.mask & (1u << l)) || (slot.present & (1u << l)) || t >= fibers.size()) continue;
        const Fiber& f = fibers[t];
        s += " lane " + std::to_string(l) +
             (f.state == State::done ? " (which has exited)"
                                     : std::string(" (in ") + f.waiting_in + ")");
        ++shown;
      }
      s += ";";
    }
    unsigned at_barrier = 0, exited = 0;
    for (Fiber& f : fibers) {
      if (f.state == State::at_barrier) ++at_barrier;
      if (f.state == State::done) ++exited;
    }
    s += " " + std::to_string(at_barrier) + " threads wait in __syncthreads, " +
         std::to_string(exited) + " have exited";
    return s;
  }

  // Runs one block to completion; false when the kernel failed.
  bool run_block() {
    for (unsigned w = 0; w < warps.size(); ++w) warps[w] = WarpSlot{};
    for (Fiber& f : fibers) f.state = State::fresh;
    unsigned remaining = threads;
    while (remaining > 0) {
      bool progressed = false;
      for (Fiber& f : fibers) {
        if (f.state != State::fresh && f.state != State::ready) continue;
        resume(f);
        progressed = true;
        if (failed) return false;
        if (f.state == State::done) --remaining;
      }
      if (remaining == 0 || progressed) continue;
      // Nobody can run: a barrier that everyone still alive has reached opens; else deadlock.
      bool all_at_barrier = true;
      for (Fiber& f : fibers)
        if (f.state != State::done && f.state != State::at_barrier) all_at_barrier = false;
      if (!all_at_barrier) {
        failed = true;
        failure = describe_deadlock();
        return false;
      }
      for (Fiber& f : fibers)
        if (f.state == State::at_barrier) f.state = State::ready;
    }
    return true;
  }

  void abandon_fibers() {
    for (Fiber& f : fibers) {
      if (f.has_stack) {
        stack_forget(f.stack);
        pool.give_back(f.stack);
        f.has_stack = false;
      }
      f.state = State::fresh;
    }
  }
};

Runner& runner() {
  if (!t_runner) t_runner = new Runner();  // per host thread; lives as long as the thread
  return *t_runner;
}

// Per-kernel dynamic shared memory limits raised by cudaFuncSetAttribute.
struct FuncAttributes {
  std::mutex mu;
  std::unordered_map<const void*, size_t> max_dynamic_shared;
};
FuncAttributes& func_attributes() {
  static FuncAttributes* f = new FuncAttributes();
  return *f;
}

}  // namespace

void sync_block() {
  Runner& r = runner();
  if (!r.current) {
    std::fprintf(stderr, "lethe CUDA emulator: __syncthreads outside a kernel\n");
    std::abort();
  }
  r.yield(State::at_barrier, "__syncthreads");
}

uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int arg, int width) {
  Runner& r = runner();
  Fiber* f = r.current;
  if (!f) {
    std::fprintf(stderr, "lethe CUDA emulator: %s outside a kernel\n", op_name(op));
    std::abort();
  }
  const unsigned lin = f->ts.linear, lane = lin & 31, warp = lin >> 5;
  const unsigned first = warp * 32;
  const unsigned lanes = std::min(32u, r.threads - first);
  const unsigned exists = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1);
  auto where = [&] { return "kernel " + std::string(r.name) + ", " + r.where(*f) + ": "; };
  if (!(mask & (1u << lane)))
    r.abort_kernel(where() + op_name(op) + " with mask " +
                   hex(reinterpret_cast<void*>(static_cast<uintptr_t>(mask))) +
                   " that does not name the calling lane " + std::to_string(lane));
  if (width < 1 || width > 32 || (width & (width - 1)) != 0)
    r.abort_kernel(where() + op_name(op) + " with width " + std::to_string(width) +
                   " (a power of two from 1 to 32)");
  const unsigned need = mask & exists;
  WarpSlot& w = r.warps[warp];
  if (w.arrived == 0) {
    w.op = op;
    w.mask = mask;
    w.width = width;
    w.first_lane = static_cast<int>(lane);
  } else if (w.op != op || w.mask != mask || w.width != width) {
    r.abort_kernel(where() + "lane " + std::to_string(lane) + " calls " + op_name(op) + " (mask " +
                   hex(reinterpret_cast<void*>(static_cast<uintptr_t>(mask))) + ") while lane " +
                   std::to_string(w.first_lane) + " waits in " + op_name(w.op) + " (mask " +
                   hex(reinterpret_cast<void*>(static_cast<uintptr_t>(w.mask))) +
                   "): the lanes of a mask must make the same call");
  }
  for (unsigned l = 0; l < lanes; ++l)
    if ((need & (1u << l)) && r.fibers[first + l].state == State::done)
      r.abort_kernel(where() + op_name(op) + " names lane " + std::to_string(l) +
                     ", which has exited");
  w.value[lane] = value;
  w.arg[lane] = arg;
  w.present |= 1u << lane;
  ++w.arrived;
  if (w.present != need) {
    r.yield(State::at_warp, op_name(op));
    return f->warp_result;
  }
  // The last lane to arrive computes every lane's result.
  for (unsigned l = 0; l < 32; ++l) {
    if (!(need & (1u << l))) continue;
    uint64_t res = 0;
    const unsigned base = l / static_cast<unsigned>(width) * static_cast<unsigned>(width);
    long src = l;
    switch (op) {
      case WarpOp::sync: break;
      case WarpOp::ballot:
        for (unsigned k = 0; k < 32; ++k)
          if ((need & (1u << k)) && w.value[k] != 0) res |= uint64_t{1} << k;
        break;
      case WarpOp::all:
      case WarpOp::any: {
        bool all = true, any = false;
        for (unsigned k = 0; k < 32; ++k)
          if (need & (1u << k)) {
            all = all && w.value[k] != 0;
            any = any || w.value[k] != 0;
          }
        res = op == WarpOp::all ? all : any;
        break;
      }
      case WarpOp::shfl: src = base + (((w.arg[l] % width) + width) % width); break;
      case WarpOp::shfl_up:
        src = static_cast<long>(l) - w.arg[l];
        if (src < static_cast<long>(base)) src = l;
        break;
      case WarpOp::shfl_down:
        src = static_cast<long>(l) + w.arg[l];
        if (src >= static_cast<long>(base) + width) src = l;
        break;
      case WarpOp::shfl_xor:
        src = static_cast<long>(l ^ static_cast<unsigned>(w.arg[l]));
        if (src >= static_cast<long>(base) + width) src = l;
        break;
    }
    if (op == WarpOp::shfl || op == WarpOp::shfl_up || op == WarpOp::shfl_down ||
        op == WarpOp::shfl_xor) {
      if (src < 0 || src > 31 || !(need & (1u << src)))
        r.abort_kernel(where() + op_name(op) + ": lane " + std::to_string(l) + " reads lane " +
                       std::to_string(src) +
                       ", which is not in the mask or not in the block (undefined on a GPU)");
      res = w.value[src];
    }
    r.fibers[first + l].warp_result = res;
    if (l != lane) r.fibers[first + l].state = State::ready;
  }
  w.arrived = 0;
  w.present = 0;
  w.first_lane = -1;
  return f->warp_result;
}

cudaError_t launch(const char* name, const void* kernel, dim3 grid, dim3 block, size_t shared,
                   KernelBody body, void* ctx) {
  if (cudaError_t e = sticky(); e != cudaSuccess) return fail(e, t_detail);
  auto config = [&](const std::string& why) {
    return fail(cudaErrorInvalidConfiguration, "kernel " + std::string(name) + ": " + why);
  };
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0)
    return config("grid (" + std::to_string(grid.x) + "," + std::to_string(grid.y) + "," +
                  std::to_string(grid.z) + ") has a zero dimension");
  if (grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535)
    return config("grid (" + std::to_string(grid.x) + "," + std::to_string(grid.y) + "," +
                  std::to_string(grid.z) + ") exceeds (2^31-1, 65535, 65535)");
  if (threads == 0 || threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64)
    return config("block (" + std::to_string(block.x) + "," + std::to_string(block.y) + "," +
                  std::to_string(block.z) + ") has " + std::to_string(threads) +
                  " threads (1 to 1024; at most 1024 x 1024 x 64)");
  size_t limit = kSharedDefault;
  {
    FuncAttributes& fa = func_attributes();
    std::lock_guard<std::mutex> lock(fa.mu);
    auto it = fa.max_dynamic_shared.find(kernel);
    if (it != fa.max_dynamic_shared.end()) limit = it->second;
  }
  if (shared > limit)
    return fail(cudaErrorInvalidValue,
                "kernel " + std::string(name) + ": " + std::to_string(shared) +
                    " bytes of dynamic shared memory, over the kernel's limit of " +
                    std::to_string(limit) +
                    (limit == kSharedDefault ? " (raise it with cudaFuncSetAttribute(..., "
                                               "cudaFuncAttributeMaxDynamicSharedMemorySize, ...))"
                                             : ""));

  Runner& r = runner();
  if (r.current) {
    std::fprintf(stderr, "lethe CUDA emulator: a kernel launched from inside a kernel\n");
    std::abort();
  }
  r.name = name;
  r.body = body;
  r.body_ctx = ctx;
  r.threads = static_cast<unsigned>(threads);
  r.failed = false;
  r.failure.clear();
  for (Fiber& f : r.fibers) context_free(f.ctx);  // ucontext builds: the previous launch's
  r.fibers.assign(r.threads, Fiber{});
  for (unsigned t = 0; t < r.threads; ++t) {
    ThreadState& ts = r.fibers[t].ts;
    ts.linear = t;
    ts.thread_idx = uint3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
  }
  r.warps.assign((r.threads + 31) / 32, WarpSlot{});
  // Dynamic shared memory: exactly `shared` bytes (an overrun is a heap overflow to ASan),
  // refilled with garbage for every block, so a read before a write shows.
  std::unique_ptr<unsigned char[]> dynamic(shared ? new unsigned char[shared] : nullptr);
  r.block.block_dim = block;
  r.block.grid_dim = grid;
  r.block.dynamic_shared = dynamic.get();
  BlockState* saved_block = tls_block;
  tls_block = &r.block;
  bool ok = true;
  for (unsigned bz = 0; bz < grid.z && ok; ++bz)
    for (unsigned by = 0; by < grid.y && ok; ++by)
      for (unsigned bx = 0; bx < grid.x && ok; ++bx) {
        r.block.block_idx = uint3{bx, by, bz};
        if (shared) std::memset(dynamic.get(), kGarbage, shared);
        ok = r.run_block();
      }
  tls_block = saved_block;
  g_stats.launches++;
  g_stats.blocks += uint64_t{grid.x} * grid.y * grid.z;
  g_stats.threads += uint64_t{grid.x} * grid.y * grid.z * threads;
  if (!ok) {
    g_stats.failed++;
    r.abandon_fibers();
    return fault(cudaErrorLaunchFailure, r.failure);
  }
  return cudaSuccess;
}

void kernel_misuse(const std::string& what) {
  Runner& r = runner();
  if (!r.current) {
    std::fprintf(stderr, "lethe CUDA emulator: %s outside a kernel\n", what.c_str());
    std::abort();
  }
  r.abort_kernel("kernel " + std::string(r.name) + ", " + r.where(*r.current) + ": " + what);
}

float* wmma_scratch() {
  // One 16×16 A and one 16×16 B per warp of the running block (blocks run in turn per host
  // thread, so one set per host thread).
  static thread_local float scratch[32][512];
  return scratch[tls_thread->linear >> 5];
}

bool inside_allocation(const void* p, size_t bytes) {
  return on_device(p, bytes);
}

unsigned char* dynamic_shared_memory() {
  return tls_block ? tls_block->dynamic_shared : nullptr;
}

}  // namespace lethe::emu

// ==== the CUDA runtime API =======================================================================

using lethe::emu::fail;
using lethe::emu::hex;
using lethe::emu::on_device;
using lethe::emu::sticky;

namespace {
const char* base_error_string(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorNotSupported: return "operation not supported";
    default: return "unknown error";
  }
}
const char* base_error_name(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    default: return "cudaErrorUnknown";
  }
}

cudaError_t ok_or_sticky() {
  cudaError_t e = sticky();
  if (e != cudaSuccess) return fail(e, lethe::emu::t_detail);
  return cudaSuccess;
}

struct Handle {
  int kind;
};
}  // namespace

extern "C" {

cudaError_t CUDARTAPI cudaGetLastError(void) {
  cudaError_t e = lethe::emu::t_last;
  lethe::emu::t_last = cudaSuccess;
  if (e == cudaSuccess) e = sticky();
  return e;
}
cudaError_t CUDARTAPI cudaPeekAtLastError(void) {
  return lethe::emu::t_last != cudaSuccess ? lethe::emu::t_last : sticky();
}
const char* CUDARTAPI cudaGetErrorName(cudaError_t error) {
  return base_error_name(error);
}
// The GPU's text, plus what the emulator saw when it is about this error ("unspecified launch
// failure (lethe CUDA emulator: kernel ...: deadlock ...)").
const char* CUDARTAPI cudaGetErrorString(cudaError_t error) {
  std::string& msg = lethe::emu::t_message;
  msg = base_error_string(error);
  if (error != cudaSuccess && error == lethe::emu::t_detail_code && !lethe::emu::t_detail.empty())
    msg += " (lethe CUDA emulator: " + lethe::emu::t_detail + ")";
  return msg.c_str();
}

cudaError_t CUDARTAPI cudaGetDeviceCount(int* count) {
  if (!count) return fail(cudaErrorInvalidValue, "cudaGetDeviceCount: null count");
  // CUDA_VISIBLE_DEVICES hides the device as it hides a GPU: set and empty, or -1.
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  if (visible && (*visible == '\0' || *visible == '-')) {
    *count = 0;
    return fail(cudaErrorNoDevice, "CUDA_VISIBLE_DEVICES hides the emulated device");
  }
  *count = lethe::emu::kDevices;
  return cudaSuccess;
}
namespace {
thread_local int t_device = 0;
}
cudaError_t CUDARTAPI cudaSetDevice(int device) {
  if (device < 0 || device >= lethe::emu::kDevices)
    return fail(cudaErrorInvalidDevice, "cudaSetDevice(" + std::to_string(device) +
                                            "): the emulator has devices 0 to " +
                                            std::to_string(lethe::emu::kDevices - 1));
  t_device = device;
  return ok_or_sticky();
}
cudaError_t CUDARTAPI cudaGetDevice(int* device) {
  if (!device) return fail(cudaErrorInvalidValue, "cudaGetDevice: null device");
  *device = t_device;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (!prop) return fail(cudaErrorInvalidValue, "cudaGetDeviceProperties: null prop");
  if (device < 0 || device >= lethe::emu::kDevices)
    return fail(cudaErrorInvalidDevice,
                "cudaGetDeviceProperties: no device " + std::to_string(device));
  *prop = cudaDeviceProp{};
  std::snprintf(prop->name, sizeof(prop->name), "lethe CUDA emulator (sm_90 limits)");
  prop->major = 9;
  prop->minor = 0;
  prop->totalGlobalMem = lethe::emu::kGlobalMemory;
  prop->sharedMemPerBlock = lethe::emu::kSharedDefault;
  prop->sharedMemPerBlockOptin = lethe::emu::kSharedOptin;
  prop->sharedMemPerMultiprocessor = 228 * 1024;
  prop->regsPerBlock = 65536;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->multiProcessorCount = 1;
  prop->maxThreadsPerMultiProcessor = 2048;
  prop->totalConstMem = 65536;
  prop->l2CacheSize = 50 << 20;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaDriverGetVersion(int* v) {
  if (v) *v = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaRuntimeGetVersion(int* v) {
  if (v) *v = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaDeviceSynchronize(void) {
  return ok_or_sticky();
}
// Clears a sticky kernel fault (a real reset also frees every allocation; the emulator keeps
// them, so a test can go on after provoking a fault).
cudaError_t CUDARTAPI cudaDeviceReset(void) {
  lethe::emu::ErrorState& s = lethe::emu::errors();
  std::lock_guard<std::mutex> lock(s.mu);
  s.sticky = cudaSuccess;
  s.sticky_detail.clear();
  lethe::emu::t_last = cudaSuccess;
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaMalloc(void** ptr, size_t size) {
  if (!ptr) return fail(cudaErrorInvalidValue, "cudaMalloc: null pointer");
  *ptr = nullptr;
  if (cudaError_t e = ok_or_sticky(); e != cudaSuccess) return e;
  if (size == 0) return cudaSuccess;
  lethe::emu::Memory& m = lethe::emu::memory();
  {
    std::lock_guard<std::mutex> lock(m.mu);
    if (size > lethe::emu::kGlobalMemory - m.used)
      return fail(cudaErrorMemoryAllocation, "cudaMalloc(" + std::to_string(size) +
                                                 " bytes): over the emulated device's memory");
  }
  void* p = nullptr;
  if (posix_memalign(&p, 256, size) != 0 || !p)
    return fail(cudaErrorMemoryAllocation,
                "cudaMalloc(" + std::to_string(size) + " bytes): the host is out of memory");
  std::memset(p, lethe::emu::kGarbage, size);
  std::lock_guard<std::mutex> lock(m.mu);
  m.live[reinterpret_cast<uintptr_t>(p)] = size;
  m.used += size;
  *ptr = p;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaFree(void* ptr) {
  if (!ptr) return cudaSuccess;
  lethe::emu::Memory& m = lethe::emu::memory();
  std::lock_guard<std::mutex> lock(m.mu);
  auto it = m.live.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == m.live.end())
    return fail(cudaErrorInvalidValue, "cudaFree(" + hex(ptr) + "): not a cudaMalloc block");
  m.used -= it->second;
  m.live.erase(it);
  std::free(ptr);
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaMemGetInfo(size_t* free_bytes, size_t* total) {
  lethe::emu::Memory& m = lethe::emu::memory();
  std::lock_guard<std::mutex> lock(m.mu);
  if (free_bytes) *free_bytes = lethe::emu::kGlobalMemory - m.used;
  if (total) *total = lethe::emu::kGlobalMemory;
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  if (cudaError_t e = ok_or_sticky(); e != cudaSuccess) return e;
  if (count == 0) return cudaSuccess;
  const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind != cudaMemcpyHostToHost && kind != cudaMemcpyDefault && !dst_dev && !src_dev)
    return fail(cudaErrorInvalidValue, "cudaMemcpy: unknown kind");
  if (dst_dev && !on_device(dst, count))
    return fail(cudaErrorInvalidValue, "cudaMemcpy: destination " + hex(dst) + " + " +
                                           std::to_string(count) +
                                           " bytes is not inside one cudaMalloc block");
  if (src_dev && !on_device(src, count))
    return fail(cudaErrorInvalidValue, "cudaMemcpy: source " + hex(src) + " + " +
                                           std::to_string(count) +
                                           " bytes is not inside one cudaMalloc block");
  if (!dst || !src) return fail(cudaErrorInvalidValue, "cudaMemcpy: null pointer");
  std::memmove(dst, src, count);
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind,
                                      cudaStream_t) {
  return cudaMemcpy(dst, src, count, kind);
}
cudaError_t CUDARTAPI cudaMemset(void* ptr, int value, size_t count) {
  if (cudaError_t e = ok_or_sticky(); e != cudaSuccess) return e;
  if (count == 0) return cudaSuccess;
  if (!on_device(ptr, count))
    return fail(cudaErrorInvalidValue, "cudaMemset: " + hex(ptr) + " + " + std::to_string(count) +
                                           " bytes is not inside one cudaMalloc block");
  std::memset(ptr, value, count);
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaMemsetAsync(void* ptr, int value, size_t count, cudaStream_t) {
  return cudaMemset(ptr, value, count);
}

cudaError_t CUDARTAPI cudaMallocHost(void** ptr, size_t size) {
  if (!ptr) return fail(cudaErrorInvalidValue, "cudaMallocHost: null pointer");
  *ptr = size ? std::malloc(size) : nullptr;
  return size && !*ptr ? fail(cudaErrorMemoryAllocation, "cudaMallocHost") : cudaSuccess;
}
cudaError_t CUDARTAPI cudaFreeHost(void* ptr) {
  std::free(ptr);
  return cudaSuccess;
}

// Streams and events: work runs at the call, so waiting and recording have nothing to do.
cudaError_t CUDARTAPI cudaStreamCreate(cudaStream_t* s) {
  if (!s) return fail(cudaErrorInvalidValue, "cudaStreamCreate: null stream");
  *s = reinterpret_cast<cudaStream_t>(new Handle{1});
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int) {
  return cudaStreamCreate(s);
}
cudaError_t CUDARTAPI cudaStreamDestroy(cudaStream_t s) {
  delete reinterpret_cast<Handle*>(s);
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaStreamSynchronize(cudaStream_t) {
  return ok_or_sticky();
}
cudaError_t CUDARTAPI cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned int) {
  return ok_or_sticky();
}
cudaError_t CUDARTAPI cudaEventCreate(cudaEvent_t* e) {
  if (!e) return fail(cudaErrorInvalidValue, "cudaEventCreate: null event");
  *e = reinterpret_cast<cudaEvent_t>(new Handle{2});
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaEventCreateWithFlags(cudaEvent_t* e, unsigned int) {
  return cudaEventCreate(e);
}
cudaError_t CUDARTAPI cudaEventDestroy(cudaEvent_t e) {
  delete reinterpret_cast<Handle*>(e);
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaEventRecord(cudaEvent_t, cudaStream_t) {
  return ok_or_sticky();
}
cudaError_t CUDARTAPI cudaEventSynchronize(cudaEvent_t) {
  return ok_or_sticky();
}
cudaError_t CUDARTAPI cudaEventElapsedTime(float* ms, cudaEvent_t, cudaEvent_t) {
  if (ms) *ms = 0.0f;  // the emulator has no GPU time
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaSuccess;
  if (value < 0 || static_cast<size_t>(value) > lethe::emu::kSharedOptin)
    return fail(cudaErrorInvalidValue, "cudaFuncSetAttribute: " + std::to_string(value) +
                                           " bytes of dynamic shared memory (the device allows " +
                                           std::to_string(lethe::emu::kSharedOptin) + ")");
  lethe::emu::FuncAttributes& fa = lethe::emu::func_attributes();
  std::lock_guard<std::mutex> lock(fa.mu);
  fa.max_dynamic_shared[func] = static_cast<size_t>(value);
  return cudaSuccess;
}

}  // extern "C"
