// The op-test harness: random inputs, finite-difference gradient checks, backend comparisons.
#include "op_harness.h"

#include "kernels/backend.h"
#include "tests/common/compare.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <sstream>

namespace lethe::testing {

std::vector<OpCase>& op_table() {
  static std::vector<OpCase> table;
  return table;
}

bool register_cases(std::vector<OpCase> cases) {
  for (auto& c : cases) op_table().push_back(std::move(c));
  return true;
}

static uint64_t name_seed(const std::string& s) {
  return std::hash<std::string>{}(s) | 1;
}

static std::vector<std::vector<double>> host_inputs(const OpCase& c) {
  std::vector<std::vector<double>> values;
  uint64_t seed = name_seed(c.name);
  for (size_t i = 0; i < c.input_shapes.size(); ++i) {
    int64_t n = shape_numel(c.input_shapes[i]);
    std::vector<double> v(static_cast<size_t>(n));
    if (n) kernels::cpu_backend().fill_normal(DType::f64, v.data(), n, seed + i, 0, 0.0, 1.0);
    values.push_back(std::move(v));
  }
  if (c.prepare) c.prepare(values);
  return values;
}

std::vector<Tensor> make_inputs(const OpCase& c, DType dtype, Device device, bool requires_grad) {
  auto values = host_inputs(c);
  std::vector<Tensor> ts;
  for (size_t i = 0; i < values.size(); ++i) {
    Tensor t = Tensor::from_vector(values[i], c.input_shapes[i], dtype, device);
    bool check = c.check_grad.empty() || c.check_grad[i];
    if (requires_grad && check) t.set_requires_grad(true);
    ts.push_back(t);
  }
  return ts;
}

// L = sum(out * r) with a fixed random r, so every output element matters.
static Tensor projection_for(const Tensor& out, uint64_t seed) {
  Tensor r = Tensor::empty(out.shape(), DType::f64, Device::cpu());
  if (r.numel())
    kernels::cpu_backend().fill_normal(DType::f64, r.data_ptr(), r.numel(), seed, 0, 0, 1);
  return r.to(out.dtype()).to(out.device());
}

static double projected(const OpCase& c, const std::vector<Tensor>& inputs, const Tensor& r) {
  NoGradGuard ng;
  Tensor out = c.fn(inputs);
  auto o = out.to_double_vector();
  auto rv = r.to_double_vector();
  double acc = 0;
  for (size_t i = 0; i < o.size(); ++i) acc += o[i] * rv[i];
  return acc;
}

std::string gradcheck(const OpCase& c) {
  std::vector<Tensor> inputs = make_inputs(c, DType::f64, Device::cpu(), true);
  Tensor out = c.fn(inputs);
  if (!out.requires_grad()) return "output does not require grad";
  Tensor r = projection_for(out, name_seed(c.name) ^ 0x5eed);
  out.backward(r);

  std::ostringstream err;
  double worst = 0;
  bool failed = false;
  int64_t compared = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].requires_grad()) continue;
    Tensor g = inputs[i].grad();
    std::vector<double> analytic =
        g.defined() ? g.to_double_vector() : std::vector<double>(inputs[i].numel(), 0.0);
    if (static_cast<int64_t>(analytic.size()) != inputs[i].numel())
      return "input " + std::to_string(i) + ": gradient has " + std::to_string(analytic.size()) +
             " elements, input " + std::to_string(inputs[i].numel());
    double* x = inputs[i].data<double>();
    for (int64_t j = 0; j < inputs[i].numel(); ++j) {
      double saved = x[j];
      x[j] = saved + c.eps;
      double fp = projected(c, inputs, r);
      x[j] = saved - c.eps;
      double fm = projected(c, inputs, r);
      x[j] = saved;
      double numeric = (fp - fm) / (2 * c.eps);
      ++compared;
      // within() is false for NaN/Inf on either side, so a NaN gradient fails the row.
      if (within(analytic[j], numeric, c.atol, c.rtol)) continue;
      const double diff = std::abs(analytic[j] - numeric);
      if (!failed || !(diff <= worst)) {  // keep the worst; a NaN diff is the worst of all
        worst = diff;
        err.str("");
        err << "input " << i << " element " << j << ": analytic " << analytic[j] << " vs numeric "
            << numeric;
      }
      failed = true;
    }
  }
  if (compared == 0) return "no input element was checked";
  return err.str();
}

std::string compare_backends(const OpCase& c, Device device, double tol) {
  auto run = [&](Device d, std::vector<std::vector<double>>& grads) {
    std::vector<Tensor> inputs = make_inputs(c, DType::f32, d, true);
    Tensor out = c.fn(inputs);
    if (out.requires_grad()) {
      Tensor r = projection_for(out, name_seed(c.name) ^ 0x5eed);
      out.backward(r);
      for (auto& t : inputs)
        grads.push_back(t.grad().defined() ? t.grad().to_double_vector() : std::vector<double>());
    }
    return out.to_double_vector();
  };
  std::vector<std::vector<double>> g_cpu, g_dev;
  auto o_cpu = run(Device::cpu(), g_cpu);
  auto o_dev = run(device, g_dev);
  auto rel_err = [](const std::vector<double>& a, const std::vector<double>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      num += (a[i] - b[i]) * (a[i] - b[i]);
      den += b[i] * b[i];
    }
    return std::sqrt(num / std::max(den, 1e-30));
  };
  std::ostringstream err;
  if (o_cpu.size() != o_dev.size()) return "output sizes differ";
  double e = rel_err(o_dev, o_cpu);
  if (!(e <= tol)) err << "output rel. error " << e << "; ";
  // Every input that asked for a gradient must have one, of its size, on both devices: a missing
  // device gradient must not compare as "no error over zero elements".
  if (g_cpu.size() != g_dev.size())
    return err.str() + "gradient lists differ in length (cpu " + std::to_string(g_cpu.size()) +
           ", device " + std::to_string(g_dev.size()) + ")";
  const bool any_grad = c.check_grad.empty() || std::find(c.check_grad.begin(), c.check_grad.end(),
                                                          true) != c.check_grad.end();
  if (any_grad && g_cpu.empty()) return err.str() + "output does not require grad";
  for (size_t i = 0; i < g_cpu.size(); ++i) {
    const bool wanted = c.check_grad.empty() || c.check_grad[i];
    const size_t numel = static_cast<size_t>(shape_numel(c.input_shapes[i]));
    if (g_cpu[i].size() != g_dev[i].size() || (wanted && g_dev[i].size() != numel)) {
      err << "grad " << i << ": cpu has " << g_cpu[i].size() << " elements, device "
          << g_dev[i].size() << ", input " << numel << "; ";
      continue;
    }
    double ge = rel_err(g_dev[i], g_cpu[i]);
    if (!(ge <= tol)) err << "grad " << i << " rel. error " << ge << "; ";
  }
  return err.str();
}

}  // namespace lethe::testing
