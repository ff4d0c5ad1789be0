// The single-process communicator, the launcher detection, the MPI/NCCL factories' dispatch.
#include "engine/dist/communicator.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>

#include "engine/error.h"

namespace lethe::dist {

// Defined in mpi_communicator.cpp / nccl_communicator.cpp when built with them.
std::unique_ptr<Communicator> make_mpi_world();
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& world, int device);
void finalize_mpi();

namespace {

class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const char* backend_name() const override { return "single"; }
  void all_reduce(Tensor&, Reduce) override {}
  void broadcast(Tensor&, int root) override {
    LETHE_CHECK(root == 0, "broadcast: root ", root, " in a single process");
  }
  void reduce_scatter(const Tensor& in, Tensor& out, Reduce) override {
    LETHE_CHECK(in.numel() == out.numel(), "reduce_scatter: ", in.str(), " → ", out.str());
    out.copy_(in);
  }
  void all_gather(const Tensor& in, Tensor& out) override {
    LETHE_CHECK(in.numel() == out.numel(), "all_gather: ", in.str(), " → ", out.str());
    out.copy_(in);
  }
  void barrier() override {}
  void all_reduce_host(std::vector<double>&) override {}
  std::vector<uint64_t> all_gather_host(uint64_t v) override { return {v}; }
  std::vector<std::string> all_gather_bytes(const std::string& mine) override { return {mine}; }
  [[noreturn]] void abort(int code) override { std::_Exit(code); }
};

std::recursive_mutex g_mutex;
std::unique_ptr<Communicator> g_world;
std::map<int, std::unique_ptr<Communicator>> g_nccl;

}  // namespace

void Communicator::all_gather_ranges(Tensor& buf,
                                     const std::vector<std::pair<int64_t, int64_t>>& ranges) {
  LETHE_CHECK(static_cast<int>(ranges.size()) == size(), "all_gather_ranges: ", ranges.size(),
              " ranges for ", size(), " ranks");
  LETHE_CHECK(buf.dim() == 1 && buf.is_contiguous(), "all_gather_ranges: ", buf.str(),
              " must be 1-D and contiguous");
  for (int r = 0; r < size(); ++r) {
    const auto [begin, end] = ranges[static_cast<size_t>(r)];
    LETHE_CHECK(0 <= begin && begin <= end && end <= buf.numel(), "all_gather_ranges: range [",
                begin, ", ", end, ") of rank ", r, " outside ", buf.str());
    if (end == begin) continue;
    Tensor part = buf.slice(0, begin, end);
    broadcast(part, r);
  }
}

int local_rank() {
  for (const char* v : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"})
    if (const char* s = std::getenv(v)) return std::atoi(s);
  return 0;
}

void Communicator::reduce_scatter_ranges(Tensor& buf,
                                         const std::vector<std::pair<int64_t, int64_t>>& ranges) {
  LETHE_CHECK(static_cast<int>(ranges.size()) == size(), "reduce_scatter_ranges: ", ranges.size(),
              " ranges for ", size(), " ranks");
  LETHE_CHECK(buf.dim() == 1 && buf.is_contiguous(), "reduce_scatter_ranges: ", buf.str(),
              " must be 1-D and contiguous");
  // Generic: equal blocks of the longest range, padded with zeros, through reduce_scatter.
  int64_t block = 0, at = 0;
  for (const auto& [b, e] : ranges) {
    LETHE_CHECK(b == at && e >= b, "reduce_scatter_ranges: ranges must be consecutive");
    block = std::max(block, e - b);
    at = e;
  }
  LETHE_CHECK(at == buf.numel(), "reduce_scatter_ranges: the ranges cover ", at, " of ",
              buf.numel(), " elements");
  if (size() == 1) return;
  Tensor in = Tensor::zeros({block * size()}, buf.dtype(), buf.device());
  for (int r = 0; r < size(); ++r) {
    const auto [b, e] = ranges[static_cast<size_t>(r)];
    if (e > b) in.slice(0, r * block, r * block + (e - b)).copy_(buf.slice(0, b, e));
  }
  Tensor out = Tensor::zeros({block}, buf.dtype(), buf.device());
  reduce_scatter(in, out, Reduce::sum);
  const auto [b, e] = ranges[static_cast<size_t>(rank())];
  if (e > b) buf.slice(0, b, e).copy_(out.slice(0, 0, e - b));
}

bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}

bool built_with_mpi() {
#ifdef LETHE_WITH_MPI
  return true;
#else
  return false;
#endif
}

bool built_with_nccl() {
#ifdef LETHE_WITH_NCCL
  return true;
#else
  return false;
#endif
}

Communicator& world() {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (!g_world) {
    if (launched_by_mpi()) {
#ifdef LETHE_WITH_MPI
      g_world = make_mpi_world();
#else
      LETHE_FAIL(
          "this process was started by mpirun, but lethe was built without MPI (install "
          "libopenmpi-dev with tools/install-deps.sh and rebuild)");
#endif
    } else {
      g_world = std::make_unique<SingleProcess>();
    }
  }
  return *g_world;
}

std::unique_ptr<Communicator> make_nccl(int device) {
#ifdef LETHE_WITH_NCCL
  return make_nccl_communicator(world(), device);
#else
  LETHE_FAIL("NCCL: this build has no NCCL (a CUDA build finds the toolkit's libnccl); device ",
             device);
#endif
}

Communicator& for_device(Device device) {
  Communicator& w = world();
  if (device.is_cpu() || w.size() == 1) return w;
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  auto it = g_nccl.find(device.index);
  if (it == g_nccl.end()) it = g_nccl.emplace(device.index, make_nccl(device.index)).first;
  return *it->second;
}

void finalize() {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  g_nccl.clear();
#ifdef LETHE_WITH_MPI
  if (g_world && std::string(g_world->backend_name()) == "mpi") finalize_mpi();
#endif
}

}  // namespace lethe::dist
