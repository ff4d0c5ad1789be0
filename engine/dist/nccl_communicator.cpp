// NCCL for CUDA buffers: one communicator per device over world()'s ranks; rank 0's unique id is
// broadcast over MPI. The raw calls are in kernels/nccl.h.
#ifdef LETHE_WITH_NCCL

#include <cstdlib>

#include "engine/dist/communicator.h"
#include "engine/error.h"
#include "kernels/nccl.h"

namespace lethe::dist {

namespace {

namespace kn = kernels::nccl;

void check_buffer(const Tensor& t, const char* who) {
  LETHE_CHECK(t.defined() && !t.device().is_cpu(), who, ": NCCL takes CUDA tensors, got ",
              t.defined() ? t.str() : std::string("undefined"));
  LETHE_CHECK(t.is_contiguous(), who, ": ", t.str(), " must be contiguous");
}

class Nccl final : public Communicator {
 public:
  Nccl(Communicator& world, int device) : world_(world) {
    // The 128 id bytes travel as doubles (one byte each) over the host all-reduce: rank 0 fills,
    // the others contribute zeros.
    std::vector<char> id;
    if (world.rank() == 0) id = kn::unique_id();
    std::vector<double> bytes(128, 0.0);
    if (world.rank() == 0)
      for (size_t i = 0; i < id.size() && i < bytes.size(); ++i)
        bytes[i] = static_cast<unsigned char>(id[i]);
    world.all_reduce_host(bytes);
    id.assign(bytes.size(), 0);
    for (size_t i = 0; i < bytes.size(); ++i) id[i] = static_cast<char>(static_cast<int>(bytes[i]));
    comm_ = kn::init(id, world.rank(), world.size(), device);
  }
  ~Nccl() override { kn::destroy(comm_); }
  int rank() const override { return world_.rank(); }
  int size() const override { return world_.size(); }
  const char* backend_name() const override { return "nccl"; }
  void all_reduce(Tensor& t, Reduce op) override {
    check_buffer(t, "all_reduce");
    kn::all_reduce(comm_, t.data_ptr(), t.numel(), t.dtype(),
                   op == Reduce::average ? kn::Op::avg : kn::Op::sum);
  }
  void broadcast(Tensor& t, int root) override {
    check_buffer(t, "broadcast");
    kn::broadcast(comm_, t.data_ptr(), t.numel(), t.dtype(), root);
  }
  void reduce_scatter(const Tensor& in, Tensor& out, Reduce op) override {
    check_buffer(in, "reduce_scatter");
    check_buffer(out, "reduce_scatter");
    LETHE_CHECK(in.numel() == out.numel() * size(), "reduce_scatter: ", in.str(), " → ", out.str());
    kn::reduce_scatter(comm_, in.data_ptr(), out.data_ptr(), out.numel(), in.dtype(),
                       op == Reduce::average ? kn::Op::avg : kn::Op::sum);
  }
  void all_gather(const Tensor& in, Tensor& out) override {
    check_buffer(in, "all_gather");
    check_buffer(out, "all_gather");
    LETHE_CHECK(out.numel() == in.numel() * size(), "all_gather: ", in.str(), " → ", out.str());
    kn::all_gather(comm_, in.data_ptr(), out.data_ptr(), in.numel(), in.dtype());
  }
  void barrier() override { kn::barrier(comm_); }
  void all_reduce_host(std::vector<double>& v) override { world_.all_reduce_host(v); }
  std::vector<uint64_t> all_gather_host(uint64_t v) override { return world_.all_gather_host(v); }
  std::vector<std::string> all_gather_bytes(const std::string& mine) override {
    return world_.all_gather_bytes(mine);
  }
  [[noreturn]] void abort(int code) override {
    world_.abort(code);
    std::_Exit(code);
  }

 private:
  Communicator& world_;
  kn::Comm* comm_ = nullptr;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& world, int device) {
  return std::make_unique<Nccl>(world, device);
}

}  // namespace lethe::dist

#endif  // LETHE_WITH_NCCL
