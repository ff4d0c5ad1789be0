// The op-test table (in the spirit of ggml's test-backend-ops): every op is a few OpCase rows;
// one harness runs each row as (1) an f64 finite-difference gradient check, (2) backend vs CPU.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"

namespace lethe::testing {

struct OpCase {
  std::string name;                 // e.g. "matmul [3,5]@[5,4]" — unique, used as the test name
  std::vector<Shape> input_shapes;  // random float inputs (standard normal, seeded)
  // Builds the op's output from the inputs (f64 in the gradient check, f32 for backend checks).
  std::function<Tensor(const std::vector<Tensor>&)> fn;
  // Optional: rewrites the random inputs in place before use (e.g. make them positive), given
  // host values per input. Runs before the tensors are built.
  std::function<void(std::vector<std::vector<double>>&)> prepare;
  // Which inputs get a gradient check (default: all).
  std::vector<bool> check_grad;
  // PyTorch gradcheck defaults.
  double eps = 1e-6, atol = 1e-5, rtol = 1e-3;
};

// Every registered case. Register from any test file with a static initializer:
//   static const bool registered = lethe::testing::register_cases({...});
std::vector<OpCase>& op_table();
bool register_cases(std::vector<OpCase> cases);

// Random inputs for a case (seeded by the case name), converted to dtype on device.
std::vector<Tensor> make_inputs(const OpCase& c, DType dtype, Device device, bool requires_grad);

// Mode 1: analytic gradients of sum(out * r) (r a fixed random projection) against central
// differences in f64. Returns "" on success, else a description of the worst mismatch.
std::string gradcheck(const OpCase& c);

// Mode 2: the op on `device` vs on the CPU in f32 (outputs and gradients); "" on success.
std::string compare_backends(const OpCase& c, Device device, double tol = 1e-4);

}  // namespace lethe::testing
