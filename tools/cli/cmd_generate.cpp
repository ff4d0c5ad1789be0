// `lethe generate`: continue prompts with an OPT model (greedy or sampled), as JSON Lines.
// Must not train or change the model; decoding is the family's CausalLM::generate with its KV
// cache.
#include <memory>
#include <string>
#include <vector>

#include "engine/error.h"
#include "models/causal_lm.h"
#include "models/tokenizer/tokenizer.h"
#include "tools/cli/cli_util.h"
#include "tools/cli/commands.h"

namespace lethe::cli {

namespace {

struct GenerateCliOptions {
  std::string model;
  std::vector<std::string> prompts;
  std::string input;
  std::string input_ids;
  int64_t max_new_tokens = 32;
  double temperature = 0.0;
  double top_p = 1.0;
  int64_t top_k = 0;
  uint64_t seed = 0;
  std::string device = "cpu";
  std::string dtype = "f32";
  bool no_bos = false;
};

void run_generate(const GenerateCliOptions& o) {
  bool has_texts = !o.prompts.empty() || !o.input.empty();
  LETHE_CHECK(has_texts || !o.input_ids.empty(),
              "no prompt given: pass --prompt TEXT, --input FILE (one JSON string per line) or "
              "--input-ids FILE (one JSON array of ids per line)");
  // Texts need the tokenizer; ids alone do not, and then "text" is null when there is none.
  std::unique_ptr<tokenizer::Tokenizer> tok;
  if (has_texts) {
    tok = tokenizer::load_tokenizer(o.model);
  } else {
    try {
      tok = tokenizer::load_tokenizer(o.model);
    } catch (const Error& e) {
      note(std::string("no tokenizer, \"text\" will be null: ") + e.what());
    }
  }
  std::vector<std::vector<int64_t>> prompts;
  if (has_texts)
    for (const std::string& text : gather_texts(o.prompts, o.input))
      prompts.push_back(tok->encode(text, !o.no_bos));
  if (!o.input_ids.empty()) {
    std::vector<std::vector<int64_t>> more = read_id_lines(o.input_ids, "--input-ids");
    prompts.insert(prompts.end(), more.begin(), more.end());
  }
  for (const auto& p : prompts)
    LETHE_CHECK(!p.empty(), "generate: a prompt has no tokens (an empty text with --no-bos?)");

  models::GenerateOptions g;
  g.max_new_tokens = o.max_new_tokens;
  g.do_sample = o.temperature > 0;
  g.temperature = g.do_sample ? o.temperature : 1.0;
  g.top_k = o.top_k;
  g.top_p = o.top_p;
  g.seed = o.seed;
  if (!g.do_sample && (o.top_k != 0 || o.top_p != 1.0))
    note("--top-k/--top-p apply only when sampling (--temperature > 0); decoding greedily");

  Device device = Device::parse(o.device);
  ScopedMatmulPrecision precision(o.dtype);
  const std::unique_ptr<models::CausalLM> model =
      models::load_causal_lm(o.model, device, {models::none_trainable});
  // Refuse what cannot fit before generating anything: a prompt that would run past the model's
  // positions would otherwise fail after the earlier prompts' work (and print nothing for it).
  const int64_t max_positions = model->max_positions();
  for (size_t i = 0; i < prompts.size(); ++i) {
    const int64_t n = static_cast<int64_t>(prompts[i].size());
    LETHE_CHECK(n + o.max_new_tokens <= max_positions, "generate: prompt ", i + 1, " has ", n,
                " tokens; with --max-new-tokens ", o.max_new_tokens, " it needs ",
                n + o.max_new_tokens, " positions, but the model has max_position_embeddings ",
                max_positions, " (shorten the prompt or lower --max-new-tokens to at most ",
                std::max<int64_t>(0, max_positions - n), ")");
  }
  for (const std::vector<int64_t>& prompt : prompts) {
    // One prompt at a time (no padding): a prompt's output does not depend on the others.
    int64_t n = static_cast<int64_t>(prompt.size());
    Tensor ids = Tensor::from_vector(prompt, {1, n}, DType::i64, device);
    Tensor mask = Tensor::ones({1, n}, DType::i64, device);
    models::GenerateResult r = model->generate(ids, mask, g);
    const std::vector<int64_t>& out = r.tokens.at(0);
    nlohmann::ordered_json line{{"prompt_ids", prompt}, {"ids", out}};
    line["text"] = tok ? nlohmann::ordered_json(tok->decode(out, /*skip_special=*/true))
                       : nlohmann::ordered_json(nullptr);
    emit(line);
  }
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto o = std::make_shared<GenerateCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "generate", "Continue prompts: {\"prompt_ids\",\"ids\",\"text\"} per prompt");
  cmd->add_option("--model", o->model, "Model directory (config.json, safetensors, tokenizer)")
      ->required();
  cmd->add_option("--prompt", o->prompts, "A prompt (repeatable)");
  cmd->add_option("--input", o->input, "File with one JSON prompt string per line; - reads stdin");
  cmd->add_option("--input-ids", o->input_ids,
                  "File with one JSON array of prompt token ids per line");
  cmd->add_option("--max-new-tokens", o->max_new_tokens, "Tokens to generate at most")
      ->check(integer_in(0, int64_t{1} << 24))
      ->capture_default_str();
  cmd->add_option("--temperature", o->temperature, "0 = greedy; > 0 samples")
      ->check(number_in(0, 1000))
      ->capture_default_str();
  cmd->add_option("--top-p", o->top_p, "Nucleus sampling mass in (0, 1]")
      ->check(number_in(0, 1, /*lo_open=*/true))
      ->capture_default_str();
  cmd->add_option("--top-k", o->top_k, "Sample among the k most likely tokens (0 = all)")
      ->check(integer_in(0, int64_t{1} << 24))
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "Sampling seed")
      ->check(seed_validator())
      ->capture_default_str();
  cmd->add_option("--device", o->device, "cpu or cuda[:N]")
      ->check(device_validator())
      ->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "f32, or bf16 (bf16 matmul operands, f32 accumulation)")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  cmd->add_flag("--no-bos", o->no_bos, "Do not prepend the BOS token to prompts");
  cmd->callback([o] { run_generate(*o); });
}

}  // namespace lethe::cli
