// Op-table rows for embedding, cross_entropy (every mode × reduction × weights, ignore_index,
// odd vocab sizes, sharp logits), token_logprobs and kl_div. Integer inputs are captured constants.
#include <string>

#include "op_harness.h"

namespace lethe::testing {
namespace {

using V = std::vector<Tensor>;

constexpr int64_t kIgnore = -100;

// Deterministic targets in [0, vocab) for `lead` positions, every 4th (offset by 1) ignored;
// with empty_row, the second row (of the last dim) is entirely ignored.
Tensor make_targets(const Shape& lead, int64_t vocab, int64_t ignore = kIgnore,
                    bool empty_row = false) {
  int64_t n = shape_numel(lead);
  int64_t T = lead.empty() ? 1 : lead.back();
  std::vector<int64_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    t[i] = (i * 5 + 3) % vocab;
    if (i % 4 == 1) t[i] = ignore;
    if (empty_row && i / T == 1) t[i] = ignore;
  }
  return Tensor::from_vector(t, lead, DType::i64);
}

// Weights in [-1.75, 1.75], a third of them negative (gradient ascent), f32 as the op requires.
Tensor make_weights(const Shape& lead, bool negative) {
  int64_t n = shape_numel(lead);
  std::vector<double> w(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    w[i] = 0.25 + 0.5 * static_cast<double>(i % 4);
    if (negative && i % 3 == 0) w[i] = -w[i];
  }
  return Tensor::from_vector(w, lead, DType::f32);
}

const char* red_name(Reduction r) {
  switch (r) {
    case Reduction::none: return "none";
    case Reduction::token_mean: return "token_mean";
    case Reduction::sample_mean: return "sample_mean";
    case Reduction::sequence_sum: return "sequence_sum";
  }
  return "?";
}

// Captured constants live on the CPU; the backend comparison runs the rows on other devices,
// so each lambda moves them next to its float input.
Tensor on(const Tensor& t, const Tensor& like) {
  return t.to(like.device());
}
CrossEntropyOptions on(CrossEntropyOptions o, const Tensor& like) {
  if (o.weights.defined()) o.weights = o.weights.to(like.device());
  return o;
}

// The loss modes every cross-entropy row family covers.
struct Mode {
  LossMode mode;
  double c;
  const char* name;
};
const Mode kModes[] = {{LossMode::nll, 1.0, "nll"},
                       {LossMode::unlikelihood, 0.5, "ul c=0.5"},
                       {LossMode::unlikelihood, 1.0, "ul c=1"}};

std::vector<OpCase> cross_entropy_cases() {
  std::vector<OpCase> cases;
  const Reduction reds[] = {Reduction::none, Reduction::token_mean, Reduction::sample_mean,
                            Reduction::sequence_sum};
  int i = 0;
  for (const Mode& m : kModes) {
    for (Reduction red : reds) {
      for (int w = 0; w < 3; ++w) {  // 0: no weights, 1: positive, 2: with negatives
        Shape shape = i % 2 ? Shape{3, 4, 13} : Shape{2, 5, 7};
        double sharp = i % 3 == 0 ? 5.0 : 1.0;
        Shape lead(shape.begin(), shape.end() - 1);
        CrossEntropyOptions o;
        o.mode = m.mode;
        o.unlikelihood_c = m.c;
        o.reduction = red;
        if (w) o.weights = make_weights(lead, w == 2);
        Tensor targets = make_targets(lead, shape.back(), kIgnore, red == Reduction::sample_mean);
        std::string name = std::string("cross_entropy ") + m.name + " " + red_name(red) +
                           (w == 0   ? ""
                            : w == 1 ? " weighted"
                                     : " weighted-negative") +
                           " " + shape_str(shape) + (sharp != 1.0 ? " x5" : "");
        cases.push_back({name, {shape}, [targets, o, sharp](const V& x) {
                           return cross_entropy(sharp != 1.0 ? scale(x[0], sharp) : x[0],
                                                on(targets, x[0]), on(o, x[0]));
                         }});
        ++i;
      }
    }
  }
  {  // ignore_index that is also a class id
    CrossEntropyOptions o;
    o.ignore_index = 0;
    Tensor targets = make_targets({4, 3}, 5, 0);
    cases.push_back({"cross_entropy ignore_index=0 [4,3,5]", {{4, 3, 5}}, [targets, o](const V& x) {
                       return cross_entropy(x[0], on(targets, x[0]), on(o, x[0]));
                     }});
  }
  {  // 2-D logits, and 1-D logits with a 0-d target
    Tensor targets = make_targets({6}, 11);
    cases.push_back({"cross_entropy [6,11] token_mean", {{6, 11}}, [targets](const V& x) {
                       return cross_entropy(x[0], on(targets, x[0]));
                     }});
    Tensor t0 = Tensor::from_vector(std::vector<int64_t>{2}, {}, DType::i64);
    cases.push_back({"cross_entropy [7] scalar target", {{7}}, [t0](const V& x) {
                       return cross_entropy(x[0], on(t0, x[0]));
                     }});
  }
  {  // 3-D targets with per-row reductions
    Tensor targets = make_targets({2, 2, 3}, 7);
    CrossEntropyOptions o;
    o.reduction = Reduction::sample_mean;
    cases.push_back(
        {"cross_entropy sample_mean 3-D targets [2,2,3,7]",
         {{2, 2, 3, 7}},
         [targets, o](const V& x) { return cross_entropy(x[0], on(targets, x[0]), on(o, x[0])); }});
    o.reduction = Reduction::sequence_sum;
    o.mode = LossMode::unlikelihood;
    cases.push_back(
        {"cross_entropy ul sequence_sum 3-D targets [2,2,3,7]",
         {{2, 2, 3, 7}},
         [targets, o](const V& x) { return cross_entropy(x[0], on(targets, x[0]), on(o, x[0])); }});
  }
  {  // non-contiguous logits
    Tensor targets = make_targets({3, 4}, 9);
    cases.push_back({"cross_entropy transposed logits [4,3,9]", {{4, 3, 9}}, [targets](const V& x) {
                       CrossEntropyOptions o;
                       o.reduction = Reduction::none;
                       return cross_entropy(x[0].transpose(0, 1), on(targets, x[0]), o);
                     }});
  }
  return cases;
}

std::vector<OpCase> other_cases() {
  std::vector<OpCase> cases;
  // ---- embedding
  Tensor ids_a = Tensor::from_vector(std::vector<int64_t>{0, 3, 3, 6, 1, 3}, {2, 3}, DType::i64);
  cases.push_back({"embedding [7,5] repeated ids", {{7, 5}}, [ids_a](const V& x) {
                     return embedding(x[0], on(ids_a, x[0]));
                   }});
  Tensor ids_b = Tensor::from_vector(std::vector<int64_t>{4, 0, 4, 2, 2, 2, 1, 0}, {8}, DType::i64);
  cases.push_back({"embedding [5,3] 1-D ids", {{5, 3}}, [ids_b](const V& x) {
                     return embedding(x[0], on(ids_b, x[0]));
                   }});
  // With padding_idx the padding row gets no gradient, so finite differences of the raw op would
  // disagree there by design (the zero gradient itself is checked against PyTorch in
  // losses_test.cpp). Here the outputs at padding positions are masked out, so every table row —
  // the padding row included — must have the central-difference gradient.
  auto padded = [](int64_t rows, int64_t dim, std::vector<int64_t> ids, Shape ids_shape,
                   int64_t pad) {
    int64_t wrapped = pad < 0 ? pad + rows : pad;
    std::vector<double> keep;
    for (int64_t id : ids)
      for (int64_t e = 0; e < dim; ++e) keep.push_back(id == wrapped ? 0.0 : 1.0);
    Shape out_shape = ids_shape;
    out_shape.push_back(dim);
    Tensor t = Tensor::from_vector(ids, ids_shape, DType::i64);
    Tensor mask = Tensor::from_vector(keep, out_shape, DType::f64);
    return [t, mask, pad](const V& x) {
      return mul(embedding(x[0], on(t, x[0]), pad), on(mask.to(x[0].dtype()), x[0]));
    };
  };
  cases.push_back({"embedding padding_idx=2 [6,4]",
                   {{6, 4}},
                   padded(6, 4, {2, 1, 2, 5, 0, 2, 3, 1, 1}, {3, 3}, 2)});
  cases.push_back(
      {"embedding padding_idx=-1 [5,3]", {{5, 3}}, padded(5, 3, {4, 0, 4, 2, 3, 3}, {6}, -1)});

  // ---- token_logprobs
  Tensor t1 = make_targets({2, 4}, 7);
  cases.push_back({"token_logprobs [2,4,7]", {{2, 4, 7}}, [t1](const V& x) {
                     return token_logprobs(x[0], on(t1, x[0]));
                   }});
  Tensor t2 = make_targets({5}, 13);
  cases.push_back({"token_logprobs [5,13] x5", {{5, 13}}, [t2](const V& x) {
                     return token_logprobs(scale(x[0], 5.0), on(t2, x[0]));
                   }});

  // ---- kl_div (both inputs require grad)
  cases.push_back(
      {"kl_div [3,7]", {{3, 7}, {3, 7}}, [](const V& x) { return kl_div(x[0], x[1]); }});
  cases.push_back({"kl_div [2,3,13] x5", {{2, 3, 13}, {2, 3, 13}}, [](const V& x) {
                     return kl_div(scale(x[0], 5.0), scale(x[1], 5.0));
                   }});
  cases.push_back({"kl_div [4,11] mean", {{4, 11}, {4, 11}}, [](const V& x) {
                     return mean(kl_div(x[0], x[1]));
                   }});
  OpCase only_x{
      "kl_div [3,5] logits only", {{3, 5}, {3, 5}}, [](const V& x) { return kl_div(x[0], x[1]); }};
  only_x.check_grad = {false, true};
  cases.push_back(only_x);
  return cases;
}

// The fused head: every mode × scalar/per-token × weights, chunks of 1, 3 and all rows, an
// ignore_index that is a class id. Inputs: hidden states x and the head weight w (both checked).
std::vector<OpCase> fused_head_cases() {
  std::vector<OpCase> cases;
  int i = 0;
  for (const Mode& m : kModes) {
    for (bool per_token : {false, true}) {
      for (int w = 0; w < 3; ++w) {
        const Shape lead = i % 2 ? Shape{3, 4} : Shape{2, 5};
        const int64_t E = i % 2 ? 6 : 5, vocab = i % 2 ? 13 : 7;
        LinearCrossEntropyOptions o;
        o.mode = m.mode;
        o.unlikelihood_c = m.c;
        o.per_token = per_token;
        o.chunk_rows = i % 3 == 0 ? 1 : (i % 3 == 1 ? 3 : 0);
        if (w) o.weights = make_weights(lead, w == 2);
        Tensor targets = make_targets(lead, vocab);
        std::string name = std::string("linear_cross_entropy ") + m.name +
                           (per_token ? " per-token" : " sum") +
                           (w == 0   ? ""
                            : w == 1 ? " weighted"
                                     : " weighted-negative") +
                           " chunk " + std::to_string(o.chunk_rows) + " x" + shape_str(lead) +
                           " w[" + std::to_string(vocab) + "," + std::to_string(E) + "]";
        Shape xs = lead;
        xs.push_back(E);
        cases.push_back({name, {xs, {vocab, E}}, [targets, o](const V& x) {
                           LinearCrossEntropyOptions oo = o;
                           if (oo.weights.defined()) oo.weights = on(oo.weights, x[0]);
                           return linear_cross_entropy(x[0], x[1], on(targets, x[0]), oo);
                         }});
        ++i;
      }
    }
  }
  {
    LinearCrossEntropyOptions o;
    o.ignore_index = 0;
    o.chunk_rows = 2;
    Tensor targets = make_targets({4, 3}, 5, 0);
    cases.push_back({"linear_cross_entropy ignore_index=0 x[4,3,4] w[5,4]",
                     {{4, 3, 4}, {5, 4}},
                     [targets, o](const V& x) {
                       return linear_cross_entropy(x[0], x[1], on(targets, x[0]), o);
                     }});
  }
  {
    Tensor targets = make_targets({2, 6}, 9);
    cases.push_back(
        {"linear_token_logprobs x[2,6,5] w[9,5]", {{2, 6, 5}, {9, 5}}, [targets](const V& x) {
           return linear_token_logprobs(x[0], x[1], on(targets, x[0]));
         }});
  }
  return cases;
}

const bool registered = register_cases(cross_entropy_cases()) && register_cases(other_cases()) &&
                        register_cases(fused_head_cases());

}  // namespace
}  // namespace lethe::testing
