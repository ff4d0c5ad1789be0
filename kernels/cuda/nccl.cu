// NCCL on the communicator's stream, fenced against the compute (legacy default) stream by events.
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>
#include <string>

#include "kernels/error.h"
#include "kernels/nccl.h"

namespace lethe::kernels::nccl {

struct Comm {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t ready = nullptr, done = nullptr;
  int device = 0;
};

namespace {

void check_cuda(cudaError_t e, const char* what) {
  LETHE_CHECK(e == cudaSuccess, "NCCL: ", what, ": ", cudaGetErrorString(e));
}
void check_nccl(ncclResult_t r, const char* what) {
  LETHE_CHECK(r == ncclSuccess, "NCCL: ", what, ": ", ncclGetErrorString(r));
}
ncclDataType_t type_of(DType d) {
  switch (d) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::f16: return ncclFloat16;
    case DType::bf16: return ncclBfloat16;
    default: break;
  }
  LETHE_FAIL("NCCL: unsupported dtype for a collective");
}
// Orders the collective after the compute stream's queued work, and that stream's later work
// after the collective.
template <typename F>
void fenced(Comm* c, const char* what, F&& call) {
  LETHE_CHECK(c != nullptr, "NCCL: ", what, " on a destroyed communicator");
  check_cuda(cudaSetDevice(c->device), "cudaSetDevice");
  check_cuda(cudaEventRecord(c->ready, cudaStreamLegacy), "cudaEventRecord");
  check_cuda(cudaStreamWaitEvent(c->stream, c->ready, 0), "cudaStreamWaitEvent");
  check_nccl(call(), what);
  check_cuda(cudaEventRecord(c->done, c->stream), "cudaEventRecord");
  check_cuda(cudaStreamWaitEvent(cudaStreamLegacy, c->done, 0), "cudaStreamWaitEvent");
}

}  // namespace

bool available() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

std::vector<char> unique_id() {
  ncclUniqueId id;
  check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
  std::vector<char> out(sizeof(id.internal));
  std::memcpy(out.data(), id.internal, out.size());
  return out;
}

Comm* init(const std::vector<char>& id, int rank, int size, int device) {
  ncclUniqueId uid;
  LETHE_CHECK(id.size() == sizeof(uid.internal), "NCCL: a unique id of ", id.size(),
              " bytes (expected ", sizeof(uid.internal), ")");
  std::memcpy(uid.internal, id.data(), id.size());
  auto* c = new Comm();
  c->device = device;
  check_cuda(cudaSetDevice(device), "cudaSetDevice");
  check_cuda(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "cudaStreamCreate");
  check_cuda(cudaEventCreateWithFlags(&c->ready, cudaEventDisableTiming), "cudaEventCreate");
  check_cuda(cudaEventCreateWithFlags(&c->done, cudaEventDisableTiming), "cudaEventCreate");
  check_nccl(ncclCommInitRank(&c->comm, size, uid, rank), "ncclCommInitRank");
  return c;
}

void destroy(Comm* c) {
  if (!c) return;
  cudaSetDevice(c->device);
  if (c->stream) cudaStreamSynchronize(c->stream);
  if (c->comm) ncclCommDestroy(c->comm);
  if (c->ready) cudaEventDestroy(c->ready);
  if (c->done) cudaEventDestroy(c->done);
  if (c->stream) cudaStreamDestroy(c->stream);
  delete c;
}

void all_reduce(Comm* c, void* buf, int64_t count, DType dtype, Op op) {
  fenced(c, "ncclAllReduce", [&] {
    return ncclAllReduce(buf, buf, static_cast<size_t>(count), type_of(dtype),
                         op == Op::avg ? ncclAvg : ncclSum, c->comm, c->stream);
  });
}

void broadcast(Comm* c, void* buf, int64_t count, DType dtype, int root) {
  fenced(c, "ncclBroadcast", [&] {
    return ncclBroadcast(buf, buf, static_cast<size_t>(count), type_of(dtype), root, c->comm,
                         c->stream);
  });
}

void reduce_scatter(Comm* c, const void* in, void* out, int64_t count_per_rank, DType dtype,
                    Op op) {
  fenced(c, "ncclReduceScatter", [&] {
    return ncclReduceScatter(in, out, static_cast<size_t>(count_per_rank), type_of(dtype),
                             op == Op::avg ? ncclAvg : ncclSum, c->comm, c->stream);
  });
}

void all_gather(Comm* c, const void* in, void* out, int64_t count_per_rank, DType dtype) {
  fenced(c, "ncclAllGather", [&] {
    return ncclAllGather(in, out, static_cast<size_t>(count_per_rank), type_of(dtype), c->comm,
                         c->stream);
  });
}

void barrier(Comm* c) {
  float* one = nullptr;
  check_cuda(cudaSetDevice(c->device), "cudaSetDevice");
  check_cuda(cudaMalloc(&one, sizeof(float)), "cudaMalloc");
  check_cuda(cudaMemset(one, 0, sizeof(float)), "cudaMemset");
  all_reduce(c, one, 1, DType::f32, Op::sum);
  check_cuda(cudaStreamSynchronize(c->stream), "cudaStreamSynchronize");
  cudaFree(one);
}

}  // namespace lethe::kernels::nccl
