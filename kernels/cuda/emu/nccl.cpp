// The CUDA emulator's NCCL: device pointers are host pointers here, so each collective is the
// MPI collective over the same buffers. Under `mpirun -np N` the NCCL communicator and the
// trainer's CUDA data-parallel path then run for real; without MPI (or one rank) a communicator
// of one rank copies. f16/bf16 reduce through f32, as NCCL accumulates them.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <nccl.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/emu/cuda_emu.h"

#ifdef LETHE_EMU_WITH_MPI
#define OMPI_SKIP_MPICXX 1
#include <mpi.h>
#endif

struct ncclComm {
  int rank = 0;
  int size = 1;
#ifdef LETHE_EMU_WITH_MPI
  MPI_Comm mpi = MPI_COMM_NULL;
#endif
};

namespace {

thread_local std::string t_last_error;

ncclResult_t usage(const std::string& why) {
  t_last_error = why;
  std::fprintf(stderr, "lethe CUDA emulator: NCCL: %s\n", why.c_str());
  return ncclInvalidUsage;
}

size_t type_bytes(ncclDataType_t t) {
  switch (t) {
    case ncclInt8:
    case ncclUint8: return 1;
    case ncclFloat16:
    case ncclBfloat16: return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32: return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64: return 8;
    default: return 0;
  }
}

ncclResult_t check_buffer(const void* p, size_t count, ncclDataType_t t, const char* what) {
  if (count == 0) return ncclSuccess;
  if (!lethe::emu::inside_allocation(p, count * type_bytes(t)))
    return usage(std::string(what) + " buffer is not inside one cudaMalloc block");
  return ncclSuccess;
}

// f16 / bf16 <-> f32 for reductions MPI has no type for.
std::vector<float> widen(const void* p, size_t n, ncclDataType_t t) {
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i)
    out[i] = t == ncclFloat16 ? __half2float(static_cast<const __half*>(p)[i])
                              : __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
  return out;
}
void narrow(const std::vector<float>& v, void* p, ncclDataType_t t) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (t == ncclFloat16)
      static_cast<__half*>(p)[i] = __float2half(v[i]);
    else
      static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16(v[i]);
  }
}

// recv[i] /= size for ncclAvg.
void divide(void* buf, size_t n, ncclDataType_t t, int size) {
  for (size_t i = 0; i < n; ++i) {
    switch (t) {
      case ncclFloat32: static_cast<float*>(buf)[i] /= static_cast<float>(size); break;
      case ncclFloat64: static_cast<double*>(buf)[i] /= size; break;
      case ncclInt32: static_cast<int32_t*>(buf)[i] /= size; break;
      case ncclInt64: static_cast<int64_t*>(buf)[i] /= size; break;
      default: break;
    }
  }
}

#ifdef LETHE_EMU_WITH_MPI
MPI_Datatype mpi_type(ncclDataType_t t) {
  switch (t) {
    case ncclInt8: return MPI_INT8_T;
    case ncclUint8: return MPI_UINT8_T;
    case ncclInt32: return MPI_INT32_T;
    case ncclUint32: return MPI_UINT32_T;
    case ncclInt64: return MPI_INT64_T;
    case ncclUint64: return MPI_UINT64_T;
    case ncclFloat32: return MPI_FLOAT;
    case ncclFloat64: return MPI_DOUBLE;
    default: return MPI_FLOAT;  // f16 / bf16 travel widened to f32
  }
}
MPI_Op mpi_op(ncclRedOp_t op) {
  switch (op) {
    case ncclProd: return MPI_PROD;
    case ncclMax: return MPI_MAX;
    case ncclMin: return MPI_MIN;
    default: return MPI_SUM;  // ncclSum, ncclAvg (divided afterwards)
  }
}
ncclResult_t mpi_ok(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return ncclSuccess;
  t_last_error = std::string(what) + " failed in MPI";
  return ncclSystemError;
}
#endif

bool half_type(ncclDataType_t t) {
  return t == ncclFloat16 || t == ncclBfloat16;
}

ncclResult_t reduce_into(const void* send, void* recv, size_t count, ncclDataType_t t,
                         ncclRedOp_t op, ncclComm_t comm) {
  if (comm->size == 1) {
    if (send != recv) std::memmove(recv, send, count * type_bytes(t));
    return ncclSuccess;
  }
#ifdef LETHE_EMU_WITH_MPI
  if (half_type(t)) {
    std::vector<float> v = widen(send, count, t);
    ncclResult_t r = mpi_ok(MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(count),
                                          MPI_FLOAT, mpi_op(op), comm->mpi),
                            "ncclAllReduce");
    if (op == ncclAvg)
      for (float& x : v) x /= static_cast<float>(comm->size);
    narrow(v, recv, t);
    return r;
  }
  ncclResult_t r =
      mpi_ok(MPI_Allreduce(send == recv ? MPI_IN_PLACE : send, recv, static_cast<int>(count),
                           mpi_type(t), mpi_op(op), comm->mpi),
             "ncclAllReduce");
  if (op == ncclAvg) divide(recv, count, t, comm->size);
  return r;
#else
  (void)op;
  return usage("a communicator of several ranks needs MPI, and this emulator was built without");
#endif
}

}  // namespace

extern "C" {

const char* ncclGetErrorString(ncclResult_t result) {
  switch (result) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error";
    case ncclSystemError: return "unhandled system error (lethe CUDA emulator: MPI failed)";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage (lethe CUDA emulator: see its message on stderr)";
    default: return "unknown result code";
  }
}
const char* ncclGetLastError(ncclComm_t) {
  return t_last_error.c_str();
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  if (!id) return ncclInvalidArgument;
  std::memset(id->internal, 0, sizeof(id->internal));
  std::snprintf(id->internal, sizeof(id->internal), "lethe-emu-nccl:%u",
                static_cast<unsigned>(std::random_device{}()));
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank) {
  if (!comm) return ncclInvalidArgument;
  if (std::strncmp(commId.internal, "lethe-emu-nccl:", 15) != 0)
    return usage("ncclCommInitRank: the unique id was not made by ncclGetUniqueId");
  if (nranks < 1 || rank < 0 || rank >= nranks)
    return usage("ncclCommInitRank: rank " + std::to_string(rank) + " of " +
                 std::to_string(nranks));
  auto* c = new ncclComm();
  c->rank = rank;
  c->size = nranks;
  if (nranks > 1) {
#ifdef LETHE_EMU_WITH_MPI
    int initialized = 0, world = 0, me = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      delete c;
      return usage("ncclCommInitRank with " + std::to_string(nranks) +
                   " ranks: MPI is not initialized (run under mpirun)");
    }
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    if (world != nranks || me != rank) {
      delete c;
      return usage("ncclCommInitRank(rank " + std::to_string(rank) + " of " +
                   std::to_string(nranks) + ") under an MPI world where this is rank " +
                   std::to_string(me) + " of " + std::to_string(world));
    }
    if (MPI_Comm_dup(MPI_COMM_WORLD, &c->mpi) != MPI_SUCCESS) {
      delete c;
      return ncclSystemError;
    }
#else
    delete c;
    return usage("a communicator of several ranks needs MPI, and this emulator was built without");
#endif
  }
  *comm = c;
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (!comm) return ncclSuccess;
#ifdef LETHE_EMU_WITH_MPI
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (comm->mpi != MPI_COMM_NULL && !finalized) MPI_Comm_free(&comm->mpi);
#endif
  delete comm;
  return ncclSuccess;
}

ncclResult_t ncclCommCount(const ncclComm_t comm, int* count) {
  if (!comm || !count) return ncclInvalidArgument;
  *count = comm->size;
  return ncclSuccess;
}
ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank) {
  if (!comm || !rank) return ncclInvalidArgument;
  *rank = comm->rank;
  return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count,
                           ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm, cudaStream_t) {
  if (!comm) return usage("ncclAllReduce on a null communicator");
  if (type_bytes(datatype) == 0) return usage("ncclAllReduce: unsupported data type");
  if (ncclResult_t r = check_buffer(sendbuff, count, datatype, "ncclAllReduce: the send");
      r != ncclSuccess)
    return r;
  if (ncclResult_t r = check_buffer(recvbuff, count, datatype, "ncclAllReduce: the receive");
      r != ncclSuccess)
    return r;
  return reduce_into(sendbuff, recvbuff, count, datatype, op, comm);
}

ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count,
                           ncclDataType_t datatype, int root, ncclComm_t comm, cudaStream_t) {
  if (!comm) return usage("ncclBroadcast on a null communicator");
  if (root < 0 || root >= comm->size) return usage("ncclBroadcast: root out of range");
  if (ncclResult_t r = check_buffer(recvbuff, count, datatype, "ncclBroadcast: the receive");
      r != ncclSuccess)
    return r;
  const size_t bytes = count * type_bytes(datatype);
  if (comm->rank == root && sendbuff != recvbuff) {
    if (ncclResult_t r = check_buffer(sendbuff, count, datatype, "ncclBroadcast: the send");
        r != ncclSuccess)
      return r;
    std::memmove(recvbuff, sendbuff, bytes);
  }
  if (comm->size == 1) return ncclSuccess;
#ifdef LETHE_EMU_WITH_MPI
  return mpi_ok(MPI_Bcast(recvbuff, static_cast<int>(bytes), MPI_BYTE, root, comm->mpi),
                "ncclBroadcast");
#else
  return usage("a communicator of several ranks needs MPI");
#endif
}

ncclResult_t ncclReduceScatter(const void* sendbuff, void* recvbuff, size_t recvcount,
                               ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                               cudaStream_t) {
  if (!comm) return usage("ncclReduceScatter on a null communicator");
  const size_t total = recvcount * static_cast<size_t>(comm->size);
  if (ncclResult_t r = check_buffer(sendbuff, total, datatype, "ncclReduceScatter: the send");
      r != ncclSuccess)
    return r;
  if (ncclResult_t r =
          check_buffer(recvbuff, recvcount, datatype, "ncclReduceScatter: the receive");
      r != ncclSuccess)
    return r;
  const size_t bytes = type_bytes(datatype);
  // All-reduce a copy of the whole buffer, keep this rank's slice: simple, and exact for MPI's
  // own reduction order.
  std::vector<char> all(total * bytes);
  std::memcpy(all.data(), sendbuff, all.size());
  if (ncclResult_t r = reduce_into(all.data(), all.data(), total, datatype, op, comm);
      r != ncclSuccess)
    return r;
  std::memmove(recvbuff, all.data() + static_cast<size_t>(comm->rank) * recvcount * bytes,
               recvcount * bytes);
  return ncclSuccess;
}

ncclResult_t ncclAllGather(const void* sendbuff, void* recvbuff, size_t sendcount,
                           ncclDataType_t datatype, ncclComm_t comm, cudaStream_t) {
  if (!comm) return usage("ncclAllGather on a null communicator");
  const size_t bytes = sendcount * type_bytes(datatype);
  if (ncclResult_t r = check_buffer(sendbuff, sendcount, datatype, "ncclAllGather: the send");
      r != ncclSuccess)
    return r;
  if (ncclResult_t r = check_buffer(recvbuff, sendcount * static_cast<size_t>(comm->size), datatype,
                                    "ncclAllGather: the receive");
      r != ncclSuccess)
    return r;
  if (comm->size == 1) {
    std::memmove(recvbuff, sendbuff, bytes);
    return ncclSuccess;
  }
#ifdef LETHE_EMU_WITH_MPI
  std::vector<char> mine(static_cast<const char*>(sendbuff),
                         static_cast<const char*>(sendbuff) + bytes);
  return mpi_ok(MPI_Allgather(mine.data(), static_cast<int>(bytes), MPI_BYTE, recvbuff,
                              static_cast<int>(bytes), MPI_BYTE, comm->mpi),
                "ncclAllGather");
#else
  return usage("a communicator of several ranks needs MPI");
#endif
}

}  // extern "C"
