// MPI (OpenMPI) for CPU buffers: MPI_COMM_WORLD, in-place collectives in chunks below INT_MAX.
#ifdef LETHE_WITH_MPI

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdio>

#include "engine/autograd.h"
#include "engine/dist/communicator.h"
#include "engine/error.h"
#include "engine/ops.h"

namespace lethe::dist {

namespace {

constexpr int64_t kChunk = int64_t{1} << 30;  // elements per MPI call (counts are int)

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  LETHE_FAIL("MPI ", what, " failed: ", std::string(msg, static_cast<size_t>(len)));
}

MPI_Datatype mpi_type(const Tensor& t, const char* who) {
  LETHE_CHECK(t.defined() && t.device().is_cpu(), who, ": MPI takes CPU tensors, got ",
              t.defined() ? t.str() : std::string("undefined"), " (GPU buffers go through NCCL)");
  LETHE_CHECK(t.is_contiguous(), who, ": ", t.str(), " must be contiguous");
  if (t.dtype() == DType::f32) return MPI_FLOAT;
  if (t.dtype() == DType::f64) return MPI_DOUBLE;
  LETHE_FAIL(who, ": ", t.str(), " must be f32 or f64");
}

class MpiWorld final : public Communicator {
 public:
  MpiWorld() {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
      int provided = 0;
      check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    }
    // Errors come back as codes (turned into lethe::Error), not as an abort inside MPI.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* backend_name() const override { return "mpi"; }

  void all_reduce(Tensor& t, Reduce op) override {
    const MPI_Datatype type = mpi_type(t, "all_reduce");
    const size_t es = t.dtype() == DType::f32 ? 4 : 8;
    char* p = static_cast<char*>(t.data_ptr());
    for (int64_t off = 0; off < t.numel(); off += kChunk) {
      const int n = static_cast<int>(std::min(kChunk, t.numel() - off));
      check(MPI_Allreduce(MPI_IN_PLACE, p + off * static_cast<int64_t>(es), n, type, MPI_SUM,
                          MPI_COMM_WORLD),
            "MPI_Allreduce");
    }
    if (op == Reduce::average && size_ > 1) t.copy_(scale_copy(t, 1.0 / size_));
  }
  void broadcast(Tensor& t, int root) override {
    const MPI_Datatype type = mpi_type(t, "broadcast");
    LETHE_CHECK(root >= 0 && root < size_, "broadcast: root ", root, " of ", size_, " ranks");
    const size_t es = t.dtype() == DType::f32 ? 4 : 8;
    char* p = static_cast<char*>(t.data_ptr());
    for (int64_t off = 0; off < t.numel(); off += kChunk) {
      const int n = static_cast<int>(std::min(kChunk, t.numel() - off));
      check(MPI_Bcast(p + off * static_cast<int64_t>(es), n, type, root, MPI_COMM_WORLD),
            "MPI_Bcast");
    }
  }
  void reduce_scatter(const Tensor& in, Tensor& out, Reduce op) override {
    const MPI_Datatype type = mpi_type(in, "reduce_scatter");
    LETHE_CHECK(mpi_type(out, "reduce_scatter") == type && in.numel() == out.numel() * size_ &&
                    out.numel() <= INT_MAX,
                "reduce_scatter: ", in.str(), " → ", out.str(), " over ", size_, " ranks");
    check(MPI_Reduce_scatter_block(in.data_ptr(), out.data_ptr(), static_cast<int>(out.numel()),
                                   type, MPI_SUM, MPI_COMM_WORLD),
          "MPI_Reduce_scatter_block");
    if (op == Reduce::average && size_ > 1) out.copy_(scale_copy(out, 1.0 / size_));
  }
  // MPI_Reduce_scatter with per-rank counts: no padded copy of the buffer.
  void reduce_scatter_ranges(Tensor& buf,
                             const std::vector<std::pair<int64_t, int64_t>>& ranges) override {
    const MPI_Datatype type = mpi_type(buf, "reduce_scatter_ranges");
    LETHE_CHECK(static_cast<int>(ranges.size()) == size_ && buf.dim() == 1,
                "reduce_scatter_ranges: ", ranges.size(), " ranges for ", size_, " ranks over ",
                buf.str());
    std::vector<int> counts;
    int64_t at = 0;
    for (const auto& [b, e] : ranges) {
      LETHE_CHECK(b == at && e >= b && e - b <= INT_MAX,
                  "reduce_scatter_ranges: ranges must be consecutive and below 2^31 elements");
      counts.push_back(static_cast<int>(e - b));
      at = e;
    }
    LETHE_CHECK(at == buf.numel(), "reduce_scatter_ranges: the ranges cover ", at, " of ",
                buf.numel(), " elements");
    const auto [b, e] = ranges[static_cast<size_t>(rank_)];
    Tensor mine = Tensor::empty({e - b}, buf.dtype());
    double unused = 0;  // a valid receive pointer for an empty range
    check(MPI_Reduce_scatter(buf.data_ptr(), e > b ? mine.data_ptr() : &unused, counts.data(), type,
                             MPI_SUM, MPI_COMM_WORLD),
          "MPI_Reduce_scatter");
    if (e > b) buf.slice(0, b, e).copy_(mine);
  }
  void all_gather(const Tensor& in, Tensor& out) override {
    const MPI_Datatype type = mpi_type(in, "all_gather");
    LETHE_CHECK(mpi_type(out, "all_gather") == type && out.numel() == in.numel() * size_ &&
                    in.numel() <= INT_MAX,
                "all_gather: ", in.str(), " → ", out.str(), " over ", size_, " ranks");
    check(MPI_Allgather(in.data_ptr(), static_cast<int>(in.numel()), type, out.data_ptr(),
                        static_cast<int>(in.numel()), type, MPI_COMM_WORLD),
          "MPI_Allgather");
  }
  void barrier() override { check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }
  void all_reduce_host(std::vector<double>& v) override {
    if (v.empty()) return;
    check(MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_DOUBLE, MPI_SUM,
                        MPI_COMM_WORLD),
          "MPI_Allreduce");
  }
  std::vector<uint64_t> all_gather_host(uint64_t value) override {
    std::vector<uint64_t> out(static_cast<size_t>(size_));
    check(MPI_Allgather(&value, 1, MPI_UINT64_T, out.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD),
          "MPI_Allgather");
    return out;
  }
  std::vector<std::string> all_gather_bytes(const std::string& mine) override {
    const std::vector<uint64_t> sizes = all_gather_host(mine.size());
    std::vector<int> counts(static_cast<size_t>(size_)), displs(static_cast<size_t>(size_));
    int64_t total = 0;
    for (int r = 0; r < size_; ++r) {
      LETHE_CHECK(total + static_cast<int64_t>(sizes[static_cast<size_t>(r)]) <= INT_MAX,
                  "all_gather_bytes: more than 2 GiB in one gather");
      counts[static_cast<size_t>(r)] = static_cast<int>(sizes[static_cast<size_t>(r)]);
      displs[static_cast<size_t>(r)] = static_cast<int>(total);
      total += static_cast<int64_t>(sizes[static_cast<size_t>(r)]);
    }
    std::string all(static_cast<size_t>(total), '\0');
    check(MPI_Allgatherv(mine.data(), static_cast<int>(mine.size()), MPI_CHAR, all.data(),
                         counts.data(), displs.data(), MPI_CHAR, MPI_COMM_WORLD),
          "MPI_Allgatherv");
    std::vector<std::string> out;
    for (int r = 0; r < size_; ++r)
      out.push_back(all.substr(static_cast<size_t>(displs[static_cast<size_t>(r)]),
                               static_cast<size_t>(counts[static_cast<size_t>(r)])));
    return out;
  }
  [[noreturn]] void abort(int code) override {
    std::fflush(nullptr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

 private:
  static Tensor scale_copy(const Tensor& t, double s) {
    NoGradGuard ng;
    return lethe::scale(t.detach(), s);
  }
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_world() {
  return std::make_unique<MpiWorld>();
}

void finalize_mpi() {
  int inited = 0, finalized = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&finalized);
  if (inited && !finalized) MPI_Finalize();
}

}  // namespace lethe::dist

#endif  // LETHE_WITH_MPI
