// `lethe tokenize`: text -> token ids (or ids -> text with --decode) with a model's tokenizer.
// Must not load model weights: --model may be a directory holding only tokenizer files.
#include <memory>
#include <string>
#include <vector>

#include "engine/error.h"
#include "models/tokenizer/tokenizer.h"
#include "tools/cli/cli_util.h"
#include "tools/cli/commands.h"

namespace lethe::cli {

namespace {

struct TokenizeOptions {
  std::string model;
  std::vector<std::string> args;  // texts, or ids with --decode
  std::string input;
  bool decode = false;
  bool no_bos = false;
  bool skip_special = false;
};

void run_tokenize(const TokenizeOptions& o) {
  std::unique_ptr<tokenizer::Tokenizer> tok = tokenizer::load_tokenizer(o.model);
  if (o.decode) {
    std::vector<std::vector<int64_t>> rows;
    if (!o.args.empty()) {
      std::vector<int64_t> ids;
      for (const std::string& a : o.args) ids.push_back(parse_token_id(a, "--decode"));
      rows.push_back(ids);
    }
    if (!o.input.empty()) {
      std::vector<std::vector<int64_t>> more = read_id_lines(o.input, "--input");
      rows.insert(rows.end(), more.begin(), more.end());
    }
    LETHE_CHECK(!o.args.empty() || !o.input.empty(),
                "--decode needs token ids as arguments or --input FILE (a JSON array per line)");
    // An id outside the vocabulary has no text: an error naming it, not an empty string.
    for (size_t r = 0; r < rows.size(); ++r)
      for (int64_t id : rows[r])
        LETHE_CHECK(id >= 0 && id < tok->vocab_size(), "--decode: token id ", id,
                    " is outside the vocabulary [0, ", tok->vocab_size(), ")",
                    o.args.empty() ? " (" + o.input + " row " + std::to_string(r + 1) + ")" : "");
    for (const auto& ids : rows)
      emit(nlohmann::ordered_json{{"ids", ids}, {"text", tok->decode(ids, o.skip_special)}});
    return;
  }
  for (const std::string& text : gather_texts(o.args, o.input))
    emit(nlohmann::ordered_json{{"text", text}, {"ids", tok->encode(text, !o.no_bos)}});
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto o = std::make_shared<TokenizeOptions>();
  CLI::App* cmd = app.add_subcommand(
      "tokenize", "Encode texts to token ids ({\"text\",\"ids\"} per text), or decode ids");
  cmd->add_option("--model", o->model,
                  "Model or tokenizer directory (tokenizer.json, vocab.json + merges.txt, or "
                  "tokenizer.model)")
      ->required();
  cmd->add_option("args", o->args, "Texts to encode (token ids with --decode)");
  cmd->add_option("--input", o->input,
                  "File with one JSON string per line (a JSON array of ids with --decode); - "
                  "reads stdin");
  cmd->add_flag("--decode", o->decode, "Decode token ids to text ({\"ids\",\"text\"})");
  cmd->add_flag("--no-bos", o->no_bos, "Do not prepend the BOS token when encoding");
  cmd->add_flag("--skip-special", o->skip_special, "Drop special tokens when decoding");
  cmd->callback([o] { run_tokenize(*o); });
}

}  // namespace lethe::cli
