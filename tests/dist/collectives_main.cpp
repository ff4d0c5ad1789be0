// Run under mpirun -np N: every collective of lethe::dist::world() on CPU buffers against values
// each rank can compute alone. Exit 0 when all hold; otherwise a message naming the check.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/dist/communicator.h"
#include "engine/tensor.h"

using lethe::Tensor;
namespace dist = lethe::dist;

namespace {

int failures = 0;
void expect(bool ok, const std::string& what, int rank) {
  if (!ok) {
    std::fprintf(stderr, "rank %d: FAILED %s\n", rank, what.c_str());
    ++failures;
  }
}

}  // namespace

// --cuda: the NCCL communicator of each rank's GPU (cuda:<local rank>) — all-reduce (sum,
// average; f32, f64), broadcast, reduce-scatter and all-gather of CUDA tensors against the values
// each rank computes alone. Under the CUDA emulator (mpirun -np 2 and 3 in `make test`) NCCL runs
// over MPI; on a GPU machine tools/gpu_check.sh runs it.
int nccl_check() {
  const lethe::Device gpu = lethe::Device::cuda(dist::local_rank());
  auto c = dist::make_nccl(gpu.index);
  const int r = c->rank(), n = c->size();
  expect(std::string(c->backend_name()) == "nccl", "backend is nccl", r);
  for (lethe::DType dt : {lethe::DType::f32, lethe::DType::f64}) {
    std::vector<double> v(37);
    for (size_t i = 0; i < v.size(); ++i) v[i] = (r + 1) * 0.5 + static_cast<double>(i);
    Tensor t = Tensor::from_vector(v, {37}, dt).to(gpu);
    c->all_reduce(t, dist::Reduce::sum);
    Tensor a = Tensor::from_vector(v, {37}, dt).to(gpu);
    c->all_reduce(a, dist::Reduce::average);
    const std::vector<double> got = t.to_double_vector(), avg = a.to_double_vector();
    bool ok = got.size() == v.size() && avg.size() == v.size();
    for (size_t i = 0; ok && i < got.size(); ++i) {
      const double want = 0.5 * n * (n + 1) / 2.0 + n * static_cast<double>(i);
      ok = std::fabs(got[i] - want) <= 1e-5 * std::fabs(want) &&
           std::fabs(avg[i] - want / n) <= 1e-5 * std::fabs(want / n);
    }
    expect(ok, std::string("nccl all_reduce sum/average ") + lethe::dtype_name(dt), r);
  }
  Tensor b = Tensor::full({5}, r == n - 1 ? 7.0 : -1.0).to(gpu);
  c->broadcast(b, n - 1);
  expect(b.to_double_vector() == std::vector<double>(5, 7.0), "nccl broadcast", r);
  std::vector<double> in(static_cast<size_t>(3 * n));
  for (int k = 0; k < n; ++k)
    for (int j = 0; j < 3; ++j) in[static_cast<size_t>(k * 3 + j)] = r + k;
  Tensor out = Tensor::zeros({3}).to(gpu);
  c->reduce_scatter(Tensor::from_vector(in, {3 * n}).to(gpu), out, dist::Reduce::sum);
  expect(out.to_double_vector() == std::vector<double>(3, n * (n - 1) / 2.0 + n * r),
         "nccl reduce_scatter", r);
  Tensor g = Tensor::zeros({2 * n}).to(gpu);
  c->all_gather(Tensor::from_vector(std::vector<double>{1.0 * r, 10.0 * r}, {2}).to(gpu), g);
  bool ok = true;
  const std::vector<double> gv = g.to_double_vector();
  for (int k = 0; k < n; ++k) ok = ok && gv[2 * k] == k && gv[2 * k + 1] == 10 * k;
  expect(ok, "nccl all_gather", r);
  c->barrier();
  std::printf("nccl rank %d of %d: %s\n", r, n, failures ? "FAILED" : "ok");
  return failures ? 1 : 0;
}

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--cuda") {
    try {
      const int rc = nccl_check();
      dist::finalize();
      return rc;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
      return 1;
    }
  }
  try {
    dist::Communicator& w = dist::world();
    const int r = w.rank(), n = w.size();
    expect(std::string(w.backend_name()) == "mpi", "backend is mpi", r);
    expect(n >= 2, "at least two ranks", r);
    // all_reduce sum / average, f32 and f64, odd length (chunking is for > 2^30).
    for (lethe::DType dt : {lethe::DType::f32, lethe::DType::f64}) {
      std::vector<double> v(37);
      for (size_t i = 0; i < v.size(); ++i) v[i] = (r + 1) * 0.5 + static_cast<double>(i);
      Tensor t = Tensor::from_vector(v, {37}, dt);
      w.all_reduce(t, dist::Reduce::sum);
      const std::vector<double> got = t.to_double_vector();
      bool ok = true;
      for (size_t i = 0; i < got.size(); ++i) {
        const double want = 0.5 * n * (n + 1) / 2.0 + n * static_cast<double>(i);
        ok = ok && std::fabs(got[i] - want) <= 1e-5 * std::fabs(want);
      }
      expect(ok, "all_reduce sum", r);
      Tensor a = Tensor::from_vector(v, {37}, dt);
      w.all_reduce(a, dist::Reduce::average);
      expect(std::fabs(a.to_double_vector()[3] - (0.5 * (n + 1) / 2.0 + 3)) < 1e-5,
             "all_reduce average", r);
    }
    // broadcast from the last rank.
    Tensor b = Tensor::full({5}, r == n - 1 ? 7.0 : -1.0);
    w.broadcast(b, n - 1);
    expect(b.to_double_vector() == std::vector<double>(5, 7.0), "broadcast", r);
    // reduce_scatter: block k of rank r's input is r + k; rank k receives Σ_r (r + k).
    std::vector<double> in(static_cast<size_t>(3 * n));
    for (int k = 0; k < n; ++k)
      for (int j = 0; j < 3; ++j) in[static_cast<size_t>(k * 3 + j)] = r + k;
    Tensor out = Tensor::zeros({3});
    w.reduce_scatter(Tensor::from_vector(in, {3 * n}), out, dist::Reduce::sum);
    expect(out.to_double_vector() == std::vector<double>(3, n * (n - 1) / 2.0 + n * r),
           "reduce_scatter", r);
    // all_gather: rank k contributes {k, 10k}.
    Tensor g = Tensor::zeros({2 * n});
    w.all_gather(Tensor::from_vector(std::vector<double>{1.0 * r, 10.0 * r}, {2}), g);
    bool ok = true;
    for (int k = 0; k < n; ++k)
      ok = ok && g.to_double_vector()[2 * k] == k && g.to_double_vector()[2 * k + 1] == 10 * k;
    expect(ok, "all_gather", r);
    // all_gather_ranges with unequal ranges: rank k owns [k·4, min(10, k·4 + 4)).
    Tensor buf = Tensor::full({10}, -5.0);
    std::vector<std::pair<int64_t, int64_t>> ranges;
    for (int k = 0; k < n; ++k)
      ranges.emplace_back(std::min<int64_t>(10, k * 4), std::min<int64_t>(10, k * 4 + 4));
    for (int64_t i = ranges[static_cast<size_t>(r)].first;
         i < ranges[static_cast<size_t>(r)].second; ++i)
      buf.select(0, i).fill_(static_cast<double>(i));
    w.all_gather_ranges(buf, ranges);
    ok = true;
    for (int64_t i = 0; i < std::min<int64_t>(10, 4 * n); ++i)
      ok = ok && buf.to_double_vector()[static_cast<size_t>(i)] == static_cast<double>(i);
    expect(ok, "all_gather_ranges", r);
    // reduce_scatter_ranges (MPI's per-rank counts), consecutive unequal ranges over 10 elements:
    // this rank's range holds the sum, the rest is untouched.
    {
      std::vector<std::pair<int64_t, int64_t>> rs;
      for (int k = 0; k < n; ++k)
        rs.emplace_back(k == 0 ? 0 : std::min<int64_t>(10, 3 + 2 * k),
                        k == n - 1 ? 10 : std::min<int64_t>(10, 5 + 2 * k));
      Tensor x = Tensor::full({10}, r + 1.0);
      w.reduce_scatter_ranges(x, rs);
      const std::vector<double> v = x.to_double_vector();
      bool good = true;
      for (int64_t i = 0; i < 10; ++i) {
        const bool mine =
            i >= rs[static_cast<size_t>(r)].first && i < rs[static_cast<size_t>(r)].second;
        good = good && v[static_cast<size_t>(i)] == (mine ? n * (n + 1) / 2.0 : r + 1.0);
      }
      expect(good, "reduce_scatter_ranges", r);
    }
    // Host values.
    std::vector<double> h = {1.0, static_cast<double>(r)};
    w.all_reduce_host(h);
    expect(h[0] == n && h[1] == n * (n - 1) / 2.0, "all_reduce_host", r);
    const std::vector<uint64_t> ids = w.all_gather_host(100 + static_cast<uint64_t>(r));
    expect(ids.size() == static_cast<size_t>(n) && ids.back() == 100 + static_cast<uint64_t>(n - 1),
           "all_gather_host", r);
    w.barrier();
    // A CUDA tensor is refused by name (CPU build: the device cannot even be made, so only the
    // dtype check is exercised here).
    try {
      Tensor i64 = Tensor::zeros({2}, lethe::DType::i64);
      w.all_reduce(i64);
      expect(false, "i64 all_reduce refused", r);
    } catch (const std::exception& e) {
      expect(std::string(e.what()).find("f32 or f64") != std::string::npos,
             "i64 all_reduce error names the dtypes", r);
    }
    std::printf("rank %d of %d: %s\n", r, n, failures ? "FAILED" : "ok");
    dist::finalize();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return failures ? 1 : 0;
}
