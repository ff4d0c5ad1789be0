// Linked instead of kernels/cuda/nccl.cu when lethe is built without CUDA or NCCL: every call
// reports why.
#include "kernels/error.h"
#include "kernels/nccl.h"

namespace lethe::kernels::nccl {

namespace {
[[noreturn]] void missing() {
  LETHE_FAIL(
      "NCCL: lethe was built without CUDA/NCCL (reconfigure with the CUDA toolkit, whose "
      "libnccl the build links)");
}
}  // namespace

bool available() {
  return false;
}
std::vector<char> unique_id() {
  missing();
}
Comm* init(const std::vector<char>&, int, int, int) {
  missing();
}
void destroy(Comm*) {}
void all_reduce(Comm*, void*, int64_t, DType, Op) {
  missing();
}
void broadcast(Comm*, void*, int64_t, DType, int) {
  missing();
}
void reduce_scatter(Comm*, const void*, void*, int64_t, DType, Op) {
  missing();
}
void all_gather(Comm*, const void*, void*, int64_t, DType) {
  missing();
}
void barrier(Comm*) {
  missing();
}

}  // namespace lethe::kernels::nccl
