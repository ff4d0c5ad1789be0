// Op-table rows for elementwise, reduction, view, concat, dropout, matmul and linear ops.
#include "op_harness.h"

namespace lethe::testing {
namespace {

using V = std::vector<Tensor>;
using H = std::vector<std::vector<double>>;

void make_positive(H& h) {
  for (auto& v : h)
    for (double& x : v) x = 0.5 + std::abs(x);
}
// Moves values away from relu's kink so central differences are valid.
void away_from_zero(H& h) {
  for (auto& v : h)
    for (double& x : v) x = x >= 0 ? x + 0.1 : x - 0.1;
}

const bool registered = register_cases({
    {"add [3,5]+[3,5]", {{3, 5}, {3, 5}}, [](const V& x) { return add(x[0], x[1]); }},
    {"add broadcast [2,3,4]+[4]", {{2, 3, 4}, {4}}, [](const V& x) { return add(x[0], x[1]); }},
    {"add broadcast [3,1]+[1,5]", {{3, 1}, {1, 5}}, [](const V& x) { return x[0] + x[1]; }},
    {"sub [7]-[7]", {{7}, {7}}, [](const V& x) { return sub(x[0], x[1]); }},
    {"mul [2,3,5]*[3,1]", {{2, 3, 5}, {3, 1}}, [](const V& x) { return mul(x[0], x[1]); }},
    {"div [4,3]/[4,3]",
     {{4, 3}, {4, 3}},
     [](const V& x) { return div(x[0], x[1]); },
     make_positive},
    {"scale [5,3]", {{5, 3}}, [](const V& x) { return scale(x[0], -2.5); }},
    {"add_scalar [5]", {{5}}, [](const V& x) { return add_scalar(x[0], 3.0); }},
    {"neg [3,3]", {{3, 3}}, [](const V& x) { return -x[0]; }},
    {"relu [6,7]", {{6, 7}}, [](const V& x) { return relu(x[0]); }, away_from_zero},
    {"gelu [6,7]", {{6, 7}}, [](const V& x) { return gelu(x[0]); }},
    {"exp [4,5]", {{4, 5}}, [](const V& x) { return exp(x[0]); }},
    {"log [4,5]", {{4, 5}}, [](const V& x) { return log(x[0]); }, make_positive},
    {"sqrt [9]", {{9}}, [](const V& x) { return sqrt(x[0]); }, make_positive},
    {"square [3,4]", {{3, 4}}, [](const V& x) { return square(x[0]); }},
    {"tanh [3,4]", {{3, 4}}, [](const V& x) { return tanh(x[0]); }},
    {"sigmoid [3,4]", {{3, 4}}, [](const V& x) { return sigmoid(x[0]); }},
    {"log_sigmoid [3,4]", {{3, 4}}, [](const V& x) { return log_sigmoid(scale(x[0], 8.0)); }},
    {"silu [5,7]", {{5, 7}}, [](const V& x) { return silu(scale(x[0], 4.0)); }},
    {"dropout p=0.3 [5,7]", {{5, 7}}, [](const V& x) { return dropout(x[0], 0.3, true, 42); }},
    {"sum all [3,4,5]", {{3, 4, 5}}, [](const V& x) { return sum(x[0]); }},
    {"sum dim1 [3,4,5]", {{3, 4, 5}}, [](const V& x) { return sum(x[0], 1); }},
    {"sum dim-1 keepdim [3,4,5]", {{3, 4, 5}}, [](const V& x) { return sum(x[0], -1, true); }},
    {"mean all [7,3]", {{7, 3}}, [](const V& x) { return mean(x[0]); }},
    {"mean dim0 [7,3]", {{7, 3}}, [](const V& x) { return mean(x[0], 0); }},
    {"concat dim1", {{2, 3}, {2, 5}, {2, 1}}, [](const V& x) { return concat(x, 1); }},
    {"concat dim0", {{2, 3}, {4, 3}}, [](const V& x) { return concat(x, 0); }},
    {"views permute+slice+reshape",
     {{2, 3, 4}},
     [](const V& x) {
       return x[0].permute({2, 0, 1}).slice(0, 1, 4, 2).reshape({-1, 3}).transpose(0, 1);
     }},
    {"select+unsqueeze+expand",
     {{3, 4}},
     [](const V& x) {
       return x[0].select(0, 1).unsqueeze(0).expand({5, 4});
     }},
    {"clone of transpose", {{3, 4}}, [](const V& x) { return x[0].transpose(0, 1).clone(); }},
    {"contiguous of transpose",
     {{3, 4}},
     [](const V& x) { return x[0].transpose(0, 1).contiguous(); }},
    {"view [3,4] as [2,6]",
     {{3, 4}},
     [](const V& x) {
       return x[0].view({2, 6});
     }},
    {"squeeze dim1 [3,1,4]", {{3, 1, 4}}, [](const V& x) { return x[0].squeeze(1); }},
    {"sum_to_shape [2,3,4] to [3,1]",
     {{2, 3, 4}},
     [](const V& x) {
       return sum_to_shape(x[0], {3, 1});
     }},
    {"sum_to_shape [2,3] to [2,3] (identity)",
     {{2, 3}},
     [](const V& x) {
       return sum_to_shape(x[0], {2, 3});
     }},
    // to(dtype) through f32 and back: f32 rounding (~6e-8 relative) over a step of 1e-3 gives
    // central differences accurate to ~1e-4 relative, hence eps and the tolerances of this row.
    {"to(dtype) f64 to f32 to f64",
     {{4, 3}},
     [](const V& x) { return x[0].to(DType::f32).to(DType::f64).to(x[0].dtype()); },
     nullptr,
     {},
     1e-3,
     1e-3,
     1e-3},
    {"matmul [3,5]@[5,4]", {{3, 5}, {5, 4}}, [](const V& x) { return matmul(x[0], x[1]); }},
    {"matmul batched [2,3,5]@[2,5,7]",
     {{2, 3, 5}, {2, 5, 7}},
     [](const V& x) { return matmul(x[0], x[1]); }},
    {"matmul broadcast [2,2,3,5]@[5,4]",
     {{2, 2, 3, 5}, {5, 4}},
     [](const V& x) { return matmul(x[0], x[1]); }},
    {"matmul transposed operands",
     {{5, 3}, {4, 5}},
     [](const V& x) { return matmul(x[0].transpose(0, 1), x[1].transpose(0, 1)); }},
    {"linear [2,3,7]x[5,7]+[5]",
     {{2, 3, 7}, {5, 7}, {5}},
     [](const V& x) { return linear(x[0], x[1], x[2]); }},
    {"linear no bias [4,9]x[1,9]", {{4, 9}, {1, 9}}, [](const V& x) { return linear(x[0], x[1]); }},
    {"linear_relu [2,3,7]x[5,7]+[5]",
     {{2, 3, 7}, {5, 7}, {5}},
     [](const V& x) { return linear_relu(x[0], x[1], x[2]); }},
    {"linear_relu no bias [4,9]x[6,9]",
     {{4, 9}, {6, 9}},
     [](const V& x) { return linear_relu(x[0], x[1]); }},
    // LoRA: x shared by both paths (one gradient, accumulated in one buffer), and a separate
    // x_lora (the dropout case); odd sizes, rank 3, scale 1.7.
    {"lora_linear shared x [2,3,7] w[5,7]+b a[3,7] b[5,3]",
     {{2, 3, 7}, {5, 7}, {5}, {3, 7}, {5, 3}},
     [](const V& x) { return lora_linear(x[0], x[1], x[2], x[0], x[3], x[4], 1.7); }},
    {"lora_linear separate x_lora, no bias [4,9] w[6,9] a[2,9] b[6,2]",
     {{4, 9}, {6, 9}, {4, 9}, {2, 9}, {6, 2}},
     [](const V& x) { return lora_linear(x[0], x[1], Tensor(), x[2], x[3], x[4], -0.6); }},
    {"composite mlp",
     {{3, 6}, {8, 6}, {8}, {2, 8}},
     [](const V& x) { return linear(relu(linear(x[0], x[1], x[2])), x[3]); },
     away_from_zero},
});

}  // namespace
}  // namespace lethe::testing
