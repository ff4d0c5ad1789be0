// NCCL collectives on raw device pointers (the CUDA toolkit's libnccl), for
// engine/dist's NCCL communicator. Each call runs on the communicator's own stream, ordered after
// the work already queued on the compute stream and before any work queued after it (events).
// In a build without CUDA every function throws naming what is missing. No Tensor here.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/dtype.h"

namespace lethe::kernels::nccl {

bool available();
// ncclGetUniqueId: the bytes rank 0 sends to every rank (over MPI).
std::vector<char> unique_id();

struct Comm;
// ncclCommInitRank on `device` (cudaSetDevice first); a communication stream of its own.
Comm* init(const std::vector<char>& id, int rank, int size, int device);
void destroy(Comm* comm);

enum class Op { sum, avg };
void all_reduce(Comm* comm, void* buf, int64_t count, DType dtype, Op op);
void broadcast(Comm* comm, void* buf, int64_t count, DType dtype, int root);
void reduce_scatter(Comm* comm, const void* in, void* out, int64_t count_per_rank, DType dtype,
                    Op op);
void all_gather(Comm* comm, const void* in, void* out, int64_t count_per_rank, DType dtype);
void barrier(Comm* comm);  // an all-reduce of one element, then the stream synchronised

}  // namespace lethe::kernels::nccl
