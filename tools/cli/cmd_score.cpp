// `lethe score`: per-token log-probabilities of texts under an OPT model, as JSON Lines.
// Must not train or change the model; it runs the forward pass only (no autograd graph).
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/error.h"
#include "models/causal_lm.h"
#include "models/tokenizer/tokenizer.h"
#include "tools/cli/cli_util.h"
#include "tools/cli/commands.h"

namespace lethe::cli {

namespace {

struct ScoreOptions {
  std::string model;
  std::vector<std::string> texts;
  std::string input;
  std::string input_ids;
  std::string device = "cpu";
  std::string dtype = "f32";
  bool no_bos = false;
};

void run_score(const ScoreOptions& o) {
  LETHE_CHECK(!o.texts.empty() || !o.input.empty() || !o.input_ids.empty(),
              "no texts given: pass them as arguments, with --input FILE (one JSON string per "
              "line) or --input-ids FILE (one JSON array of ids per line)");
  std::vector<std::vector<int64_t>> rows;
  if (!o.texts.empty() || !o.input.empty()) {
    std::unique_ptr<tokenizer::Tokenizer> tok = tokenizer::load_tokenizer(o.model);
    for (const std::string& text : gather_texts(o.texts, o.input))
      rows.push_back(tok->encode(text, !o.no_bos));
  }
  if (!o.input_ids.empty()) {
    std::vector<std::vector<int64_t>> more = read_id_lines(o.input_ids, "--input-ids");
    rows.insert(rows.end(), more.begin(), more.end());
  }

  Device device = Device::parse(o.device);
  ScopedMatmulPrecision precision(o.dtype);
  const std::unique_ptr<models::CausalLM> model =
      models::load_causal_lm(o.model, device, {models::none_trainable});
  // Everything that can be checked is checked before the first row is scored, so a bad row late
  // in a file does not fail after the earlier rows' work.
  const int64_t max_positions = model->max_positions();
  const int64_t vocab = model->vocab_size();
  for (size_t r = 0; r < rows.size(); ++r) {
    const int64_t n = static_cast<int64_t>(rows[r].size());
    LETHE_CHECK(n <= max_positions, "score: input ", r + 1, " has ", n,
                " tokens, more than the model's max_position_embeddings ", max_positions);
    for (int64_t id : rows[r])
      LETHE_CHECK(id >= 0 && id < vocab, "score: input ", r + 1, ": token id ", id,
                  " is outside the model's vocabulary [0, ", vocab, ")");
  }
  NoGradGuard no_grad;
  for (size_t r = 0; r < rows.size(); ++r) {
    const std::vector<int64_t>& ids = rows[r];
    std::vector<float> logprobs;
    // One sequence at a time: no padding, so the numbers do not depend on the other inputs.
    if (ids.size() >= 2) {
      int64_t n = static_cast<int64_t>(ids.size());
      Tensor t = Tensor::from_vector(ids, {1, n}, DType::i64, device);
      Tensor mask = Tensor::ones({1, n}, DType::i64, device);
      logprobs = model->token_logprobs(t, mask).to_float_vector();
    }
    // Finite weights can still overflow (activations past f32's range): never print null.
    for (size_t i = 0; i < logprobs.size(); ++i)
      LETHE_CHECK(std::isfinite(logprobs[i]), "score: input ", r + 1,
                  ": the log-probability of token ", i + 1, " is ", logprobs[i],
                  " (the model's activations overflowed)");
    emit(nlohmann::ordered_json{{"ids", ids}, {"logprobs", logprobs}});
  }
}

}  // namespace

void add_score_command(CLI::App& app) {
  auto o = std::make_shared<ScoreOptions>();
  CLI::App* cmd =
      app.add_subcommand("score", "Per-token log-probs of texts: {\"ids\",\"logprobs\"} per text");
  cmd->add_option("--model", o->model, "Model directory (config.json, safetensors, tokenizer)")
      ->required();
  cmd->add_option("texts", o->texts, "Texts to score");
  cmd->add_option("--input", o->input, "File with one JSON string per line; - reads stdin");
  cmd->add_option("--input-ids", o->input_ids,
                  "File with one JSON array of token ids per line (no tokenizer needed)");
  cmd->add_option("--device", o->device, "cpu or cuda[:N]")
      ->check(device_validator())
      ->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "f32, or bf16 (bf16 matmul operands, f32 accumulation)")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  cmd->add_flag("--no-bos", o->no_bos, "Do not prepend the BOS token to texts");
  cmd->callback([o] { run_score(*o); });
}

}  // namespace lethe::cli
