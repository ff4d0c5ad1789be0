// CausalLM's shared parts and the family dispatch of load_causal_lm.
#include "models/causal_lm.h"

#include <filesystem>
#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/io/json.h"
#include "engine/ops.h"

#include "engine/io/file_util.h"
#include "models/llama/llama_model.h"
#include "models/opt/opt_config.h"
#include "models/opt/opt_model.h"
#include "models/opt/opt_weights.h"

namespace lethe::models {

Tensor CausalLM::logits(const Tensor& ids, const Tensor& attention_mask,
                        const ForwardOptions& options) const {
  return linear(hidden_states(ids, attention_mask, options), lm_head_weight());
}

Tensor CausalLM::apply_linear(const std::string& name, const Tensor& x, const Tensor& w,
                              const Tensor& b) const {
  return linear_fn_ ? linear_fn_(name, x, w, b) : linear(x, w, b);
}

Tensor CausalLM::apply_linear_relu(const std::string& name, const Tensor& x, const Tensor& w,
                                   const Tensor& b) const {
  return linear_fn_ ? relu(linear_fn_(name, x, w, b)) : linear_relu(x, w, b);
}

namespace {

void check_ids_mask(const Tensor& t, const char* what, const char* who = "CausalLM") {
  LETHE_CHECK(t.defined(), who, ": ", what, " is undefined");
  LETHE_CHECK(t.dtype() == DType::i64 && t.dim() == 2, who, ": ", what,
              " must be i64 [batch, seq], got ", t.str());
}

}  // namespace

ForwardInputs check_forward_inputs(const Tensor& ids, const Tensor& mask, int64_t past,
                                   int64_t vocab_size, const char* who) {
  check_ids_mask(ids, "ids", who);
  check_ids_mask(mask, "attention_mask", who);
  ForwardInputs in;
  in.batch = ids.size(0);
  in.tokens = ids.size(1);
  in.past = past;
  const int64_t B = in.batch, T = in.tokens, Tk = past + T;
  LETHE_CHECK(mask.size(0) == B && mask.size(1) == Tk, who, ": attention_mask ", mask.str(),
              " must have shape [", B, ", ", Tk, "] (ids ", ids.str(), ", cached tokens ", past,
              ")");
  LETHE_CHECK(T > 0, who, ": ids ", ids.str(), " hold no tokens");
  in.ids = ids.to_int_vector();
  in.mask = mask.to_int_vector();
  for (size_t i = 0; i < in.ids.size(); ++i)
    LETHE_CHECK(in.ids[i] >= 0 && in.ids[i] < vocab_size, who, ": token id ", in.ids[i], " at [",
                i / T, ", ", i % T, "] is outside the vocabulary [0, ", vocab_size, ")");
  for (size_t i = 0; i < in.mask.size(); ++i)
    LETHE_CHECK(in.mask[i] == 0 || in.mask[i] == 1, who, ": attention_mask[", i / Tk, ", ", i % Tk,
                "] = ", in.mask[i], " (must be 0 or 1)");
  return in;
}

Tensor CausalLM::loss(const Tensor& ids, const Tensor& attention_mask, const Tensor& labels_in,
                      const ForwardOptions& options) const {
  check_ids_mask(ids, "ids");
  Tensor labels = labels_in;
  if (!labels.defined()) {
    std::vector<int64_t> l = ids.to_int_vector();
    const std::vector<int64_t> m = attention_mask.to_int_vector();
    LETHE_CHECK(m.size() == l.size(), "CausalLM::loss: attention_mask ", attention_mask.str(),
                " must have the shape of ids ", ids.str());
    // -100 on padding and on each row's first real token: with right or no padding this is HF's
    // recipe (labels[:, 0] is never a target); with left padding it drops the term predicting
    // the first token from a pad position, whose output is meaningless (see docs/opt.md).
    const size_t T = static_cast<size_t>(ids.size(1));
    bool seen = false;  // a real token earlier in this row
    for (size_t i = 0; i < l.size(); ++i) {
      if (i % T == 0) seen = false;
      if (m[i] == 0 || !seen) l[i] = -100;
      seen = seen || m[i] != 0;
    }
    labels = Tensor::from_vector(l, ids.shape(), DType::i64);
  }
  check_ids_mask(labels, "labels");
  LETHE_CHECK(labels.shape() == ids.shape(), "CausalLM::loss: labels ", labels.str(),
              " must have the shape of ids ", ids.str());
  LETHE_CHECK(ids.size(1) >= 2, "CausalLM::loss: sequences need at least 2 tokens, got ",
              ids.str());
  // The fused head (linear_cross_entropy): the [B, T, V] logits are never held. Mean over the
  // valid targets, counted on the host where the labels are; 0 when there is none.
  const Tensor targets = shift_labels(labels);
  int64_t valid = 0;
  for (int64_t t : targets.to_int_vector()) valid += t != -100;
  LinearCrossEntropyOptions ce;
  ce.ignore_index = -100;
  const Tensor total = linear_cross_entropy(hidden_states(ids, attention_mask, options),
                                            lm_head_weight(), targets, ce);
  return scale(total, valid ? 1.0 / static_cast<double>(valid) : 0.0);
}

Tensor CausalLM::token_logprobs(const Tensor& ids, const Tensor& attention_mask) const {
  check_ids_mask(ids, "ids");
  check_ids_mask(attention_mask, "attention_mask");
  const int64_t B = ids.size(0), T = ids.size(1);
  LETHE_CHECK(attention_mask.shape() == ids.shape(), "CausalLM::token_logprobs: attention_mask ",
              attention_mask.str(), " must have the shape of ids ", ids.str());
  if (T < 2) return Tensor::zeros({B, 0});
  NoGradGuard no_grad;
  const Tensor hidden = hidden_states(ids, attention_mask, ForwardOptions{});
  std::vector<int64_t> tg = ids.to_int_vector();
  const std::vector<int64_t> m = attention_mask.to_int_vector();
  std::vector<int64_t> targets(static_cast<size_t>(B * (T - 1)));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t + 1 < T; ++t) {
      const bool ok = m[b * T + t] && m[b * T + t + 1];
      targets[b * (T - 1) + t] = ok ? tg[b * T + t + 1] : -100;
    }
  Tensor tgt = Tensor::from_vector(targets, {B, T - 1}, DType::i64);  // host: no device sync
  return linear_token_logprobs(hidden.slice(1, 0, T - 1), lm_head_weight(), tgt, -100)
      .to(Device::cpu());
}

Tensor shift_labels(const Tensor& labels) {
  LETHE_CHECK(labels.defined() && labels.dtype() == DType::i64 && labels.dim() == 2,
              "shift_labels: labels must be i64 [batch, seq], got ",
              labels.defined() ? labels.str() : std::string("undefined"));
  const int64_t B = labels.size(0), T = labels.size(1);
  const std::vector<int64_t> l = labels.to_int_vector();
  std::vector<int64_t> out(l.size(), -100);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t + 1 < T; ++t) out[b * T + t] = l[b * T + t + 1];
  return Tensor::from_vector(out, {B, T}, DType::i64);
}

std::string model_family(const std::string& dir) {
  std::string file = dir;
  if (io::file_kind(dir) == io::FileKind::directory) {
    file = (std::filesystem::path(dir) / "config.json").string();
    LETHE_CHECK(io::file_kind(file) != io::FileKind::missing, dir,
                ": no config.json in this directory");
  }
  const nlohmann::json j = io::read_json_file(file);
  LETHE_CHECK(j.is_object(), file, ": expected a JSON object");
  auto it = j.find("model_type");
  LETHE_CHECK(it != j.end() && it->is_string(), file,
              ": field 'model_type' is missing or not a string; lethe reads \"opt\", \"llama\", "
              "\"qwen2\" and \"mistral\" models");
  const std::string type = it->get<std::string>();
  if (type == "opt") return "opt";
  if (type == "llama" || type == "qwen2" || type == "mistral") return "llama";
  LETHE_FAIL(file, ": field 'model_type': \"", type,
             "\" is not a family lethe supports (\"opt\", \"llama\", \"qwen2\", \"mistral\")");
}

std::vector<std::pair<std::string, Shape>> declared_parameters(const std::string& dir) {
  std::vector<std::pair<std::string, Shape>> out;
  const std::vector<ParamSpec> specs = model_family(dir) == "opt"
                                           ? opt_parameter_specs(load_opt_config(dir))
                                           : llama_parameter_specs(load_llama_config(dir));
  for (const ParamSpec& p : specs) out.emplace_back(p.name, p.shape);
  return out;
}

std::unique_ptr<CausalLM> load_causal_lm(const std::string& dir, Device device,
                                         const ModelOptions& options,
                                         const std::function<void(const std::string&)>& warn) {
  if (model_family(dir) == "llama") {
    LlamaLoadOptions lo;
    lo.warn = warn;
    return std::make_unique<LlamaModel>(LlamaModel::load(dir, device, lo, options));
  }
  OptLoadOptions lo;
  lo.warn = warn;
  return std::make_unique<OptModel>(OptModel::load(dir, device, lo, options));
}

}  // namespace lethe::models
