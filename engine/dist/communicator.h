// Collectives across the processes of a data-parallel run (docs/distributed.md): a communicator
// with rank, size, all-reduce, broadcast, reduce-scatter, all-gather and barrier. Two real
// implementations — MPI for CPU buffers (OpenMPI, launched by `mpirun`) and NCCL for CUDA buffers
// (its unique id broadcast over MPI) — and a single process (rank 0 of 1) that needs neither.
// Never home-made collectives: this file only forwards to those engines.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace lethe::dist {

enum class Reduce { sum, average };

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const char* backend_name() const = 0;  // "single", "mpi", "nccl"

  // In place over a contiguous f32/f64 tensor (CPU for MPI, CUDA for NCCL).
  virtual void all_reduce(Tensor& t, Reduce op = Reduce::sum) = 0;
  virtual void broadcast(Tensor& t, int root) = 0;
  // in [size · n] → out [n]: this rank's block of the element-wise reduction.
  virtual void reduce_scatter(const Tensor& in, Tensor& out, Reduce op = Reduce::sum) = 0;
  // in [n] → out [size · n]: rank r's `in` at block r.
  virtual void all_gather(const Tensor& in, Tensor& out) = 0;
  virtual void barrier() = 0;

  // Host numbers (losses, counts): element-wise sums over the ranks, in place.
  virtual void all_reduce_host(std::vector<double>& values) = 0;
  // One number from every rank, in rank order (configuration checks).
  virtual std::vector<uint64_t> all_gather_host(uint64_t value) = 0;
  // Every rank's bytes, in rank order (per-sample evaluation results).
  virtual std::vector<std::string> all_gather_bytes(const std::string& mine) = 0;

  // Every rank's [begin, end) range of `buf` (contiguous, 1-D) sent to all ranks: after the call
  // buf holds each owner's values everywhere (ZeRO-1's weight gather; ranges may differ in size).
  void all_gather_ranges(Tensor& buf, const std::vector<std::pair<int64_t, int64_t>>& ranges);
  // The element-wise sum over the ranks of `buf` (contiguous, 1-D), delivered only into this
  // rank's range: ranges[r] must be consecutive and cover buf (ZeRO-1's gradient reduction).
  // Elsewhere buf is left as it was.
  virtual void reduce_scatter_ranges(Tensor& buf,
                                     const std::vector<std::pair<int64_t, int64_t>>& ranges);

  // Stops every rank (after an error on this one): MPI_Abort under mpirun; exit otherwise.
  [[noreturn]] virtual void abort(int code) = 0;
};

// This process's rank among those on its machine (OpenMPI's OMPI_COMM_WORLD_LOCAL_RANK, or a PMI
// launcher's MPI_LOCALRANKID); 0 without a launcher. The GPU a rank uses by default.
int local_rank();

// True when this process was started by mpirun/mpiexec (OpenMPI's or a PMI launcher's variables).
bool launched_by_mpi();
// Whether this build has MPI (OpenMPI from Debian) and NCCL (the CUDA toolkit's).
bool built_with_mpi();
bool built_with_nccl();

// The process's communicator for CPU buffers: MPI's world under mpirun, else a single process.
// Created on first use (MPI_Init_thread); a launch under mpirun in a build without MPI is an error.
Communicator& world();

// A NCCL communicator over world()'s ranks for CUDA buffers on `device`: rank 0 creates the unique
// id and broadcasts it over world(). Throws when the build has no NCCL.
std::unique_ptr<Communicator> make_nccl(int device);

// The communicator for buffers on `device`: world() on CPU, a NCCL one on CUDA when size > 1.
Communicator& for_device(Device device);

// MPI_Finalize when MPI was initialised (the CLI calls it before a normal exit).
void finalize();

}  // namespace lethe::dist
