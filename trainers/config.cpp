// Recipes: the schema of every key, YAML flattening, --set overrides and validation.
#include "trainers/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "engine/dist/communicator.h"
#include "engine/error.h"
#include "engine/io/file_util.h"
#include "engine/threads.h"
#include "trainers/methods/method.h"

namespace lethe::trainers {

namespace {

using Type = KeyType;
using Key = KeySpec;

constexpr double kInf = INFINITY;

// The keys of the run itself; the method.* keys come from the method files (methods/*.cpp), whose
// defaults apply per method (docs/methods.md) and are not schema defaults: run.json records the
// values used.
const std::vector<Key>& base_schema() {
  static const std::vector<Key> keys = {
      {"model.path", Type::path, nullptr, "directory of the HF checkpoint to train (required)"},
      {"model.device", Type::str, "cpu", "cpu, cuda or cuda:N"},
      {"model.dtype", Type::choice, "f32",
       "GEMM precision: f32, or bf16 operands with f32 accumulation", "f32|bf16"},
      {"model.reference", Type::path, nullptr,
       "frozen reference model for KL/NPO terms (default: a copy of model.path)"},
      {"model.tokenizer", Type::path, nullptr, "tokenizer directory (default: model.path)"},
      {"data.forget", Type::path, nullptr, "forget set (unlearn)"},
      {"data.retain", Type::path, nullptr, "retain set (unlearn)"},
      {"data.train", Type::path, nullptr, "training set (finetune)"},
      {"data.format", Type::choice, "tofu", "format of the data files",
       "tofu|pku|truthfulqa|muse|jsonl|tokenized"},
      {"data.forget_format", Type::choice, nullptr, "format of data.forget (default: data.format)",
       "tofu|pku|truthfulqa|muse|jsonl|tokenized"},
      {"data.retain_format", Type::choice, nullptr, "format of data.retain (default: data.format)",
       "tofu|pku|truthfulqa|muse|jsonl|tokenized"},
      {"data.template", Type::str, "",
       "prompt template with {question} and {answer}, or a chat format: llama3_chat, "
       "llama2_chat, qwen2_chat ('' = the format's)"},
      {"data.max_length", Type::integer, "512", "truncation in tokens", "", 2, 1 << 20},
      {"data.add_eos", Type::flag, "true", "append EOS to answers"},
      {"data.tokenization", Type::choice, "separate",
       "prompt and answer tokenized apart (exact label boundary) or as one text (the reference "
       "code's way)",
       "separate|joint"},
      {"data.shuffle", Type::flag, "true", "shuffle the forget/train set each epoch"},
      {"data.pairing", Type::choice, "random", "how retain samples pair with forget batches",
       "random|sequential"},
      {"trainer.optimizer", Type::choice, "adamw", "optimizer", "adamw|sgd"},
      {"trainer.lr", Type::num, "1e-5", "learning rate", "", 0, kInf},
      {"trainer.weight_decay", Type::num, "0.01",
       "weight decay (not on biases and LayerNorm weights)", "", 0, kInf},
      {"trainer.beta1", Type::num, "0.9", "AdamW beta1", "", 0, 0.999999},
      {"trainer.beta2", Type::num, "0.999", "AdamW beta2", "", 0, 0.999999999},
      {"trainer.eps", Type::num, "1e-8", "AdamW eps", "", 1e-30, 1},
      {"trainer.momentum", Type::num, "0", "SGD momentum", "", 0, 1},
      {"trainer.batch_size", Type::integer, "4", "samples per micro-batch (forget and retain each)",
       "", 1, 1 << 20},
      {"trainer.grad_accum", Type::integer, "8", "micro-batches per optimizer step", "", 1,
       1 << 20},
      {"trainer.epochs", Type::num, "10", "epochs over the forget/train set", "", 0, 1e6},
      {"trainer.max_steps", Type::integer, "0", "optimizer steps (0 = from epochs)", "", 0, 1e12},
      {"trainer.warmup_steps", Type::integer, "0", "linear warm-up steps", "", 0, 1e12},
      {"trainer.warmup_epochs", Type::num, "0",
       "warm-up in epochs (open-unlearning: 1); used when warmup_steps is 0", "", 0, 1e6},
      {"trainer.scheduler", Type::choice, "linear", "learning-rate schedule",
       "constant|linear|cosine"},
      {"trainer.max_grad_norm", Type::num, "1.0", "global gradient clipping (0 = off)", "", 0,
       kInf},
      {"trainer.seed", Type::integer, "0", "seed of shuffling, pairing and dropout", "", 0, 1e18},
      {"trainer.threads", Type::integer, "0", "CPU threads (0 = OpenMP's default)", "", 0, 4096},
      {"trainer.save_every_steps", Type::integer, "0", "checkpoint every N steps (0 = at the end)",
       "", 0, 1e12},
      {"trainer.resume", Type::flag, "false", "continue from output.dir/checkpoint"},
      {"trainer.zero1", Type::flag, "false",
       "data parallel: shard the optimizer state across ranks (ZeRO-1)"},
      {"trainer.log_every", Type::integer, "1", "steps between progress lines", "", 1, 1e12},
      {"eval.every_steps", Type::integer, "0", "evaluate every N steps (0 = off)", "", 0, 1e12},
      {"eval.forget", Type::path, nullptr,
       "held-out forget set (default: data.forget); TOFU forget*_perturbed for tofu metrics"},
      {"eval.retain", Type::path, nullptr,
       "held-out retain set (default: data.retain / data.train)"},
      {"eval.max_samples", Type::integer, "0",
       "samples per evaluation set (0 = all; 300 = the legacy TOFU code's cut)", "", 0, 1e9},
      {"eval.real_authors", Type::path, nullptr, "TOFU real_authors_perturbed file"},
      {"eval.world_facts", Type::path, nullptr, "TOFU world_facts_perturbed file"},
      {"eval.retain_reference", Type::path, nullptr,
       "retain-only model (directory) or its eval.json, for forget quality"},
      {"eval.metrics", Type::choice, "loss", "what the training loop's hook measures", "loss|tofu"},
      {"eval.select", Type::choice, "score",
       "output.keep: best selects by this: score (forget − retain NLL), model_utility, "
       "forget_quality",
       "score|model_utility|forget_quality"},
      {"eval.batch_size", Type::integer, "16", "evaluation batch size", "", 1, 1 << 20},
      {"eval.max_new_tokens", Type::integer, "200", "greedy answer length cap (TOFU: 200)", "", 1,
       1 << 20},
      {"eval.format", Type::choice, "tofu", "format of eval.mia.* and eval.perplexity files",
       "tofu|pku|truthfulqa|muse|jsonl"},
      {"eval.perplexity", Type::path, nullptr, "perplexity of this set's labelled tokens"},
      {"eval.mia.forget", Type::path, nullptr, "membership inference: member texts (forget set)"},
      {"eval.mia.holdout", Type::path, nullptr,
       "membership inference: non-member texts (holdout set)"},
      {"eval.mia.reference", Type::path, nullptr,
       "reference model (directory) of the reference attack (retain or starting model)"},
      {"eval.mia.k", Type::num, "0.4", "Min-K % and Min-K %++ fraction", "", 1e-9, 1},
      {"eval.muse.verbmem", Type::path, nullptr, "MUSE verbmem file (prompt, gt)"},
      {"eval.muse.knowmem_forget", Type::path, nullptr,
       "MUSE knowmem forget QA (question, answer)"},
      {"eval.muse.knowmem_retain", Type::path, nullptr,
       "MUSE knowmem retain QA (question, answer)"},
      {"eval.muse.knowmem_forget_icl", Type::path, nullptr,
       "in-context examples for knowmem_forget"},
      {"eval.muse.knowmem_retain_icl", Type::path, nullptr,
       "in-context examples for knowmem_retain"},
      {"eval.muse.privleak_forget", Type::path, nullptr, "MUSE privleak forget texts"},
      {"eval.muse.privleak_holdout", Type::path, nullptr, "MUSE privleak holdout texts"},
      {"eval.muse.auc_retrain", Type::num, "0.4772",
       "PrivLeak's retrained AUC (News 0.4772, Books 0.5393, or your retrained model's)", "", 1e-9,
       1},
      {"eval.muse.verbmem_max_new_tokens", Type::integer, "128", "VerbMem continuation length", "",
       1, 1 << 20},
      {"eval.muse.knowmem_max_new_tokens", Type::integer, "32", "KnowMem answer length cap", "", 1,
       1 << 20},
      {"eval.harmful.prompts", Type::path, nullptr,
       "held-out harmful prompts (PKU-SafeRLHF JSONL, or objects with \"question\")"},
      {"eval.harmful.classifier", Type::path, nullptr,
       "classifier directory (lethe finetune with model.head: classifier)"},
      {"eval.harmful.before", Type::path, nullptr,
       "the model before unlearning (directory): its harmful rate is reported beside"},
      {"eval.harmful.label", Type::integer, "1", "the classifier's class that counts as harmful",
       "", 0, 1 << 20},
      {"eval.harmful.max_new_tokens", Type::integer, "128", "response length cap", "", 1, 1 << 20},
      {"model.adapter", Type::path, nullptr,
       "a LoRA adapter (PEFT layout) on model.path: trained further with lora.enabled, else "
       "merged into the weights first"},
      {"lora.enabled", Type::flag, "false",
       "train LoRA adapters on frozen base weights (docs/training.md, LoRA)"},
      {"lora.r", Type::integer, "8", "LoRA rank", "", 1, 1 << 16},
      {"lora.alpha", Type::num, "16", "LoRA alpha (scaling alpha / r)", "", 1e-12, kInf},
      {"lora.dropout", Type::num, "0", "dropout on the adapter's input", "", 0, 0.999},
      {"lora.targets", Type::str, "q_proj,v_proj",
       "layers with adapters: OPT q_proj, k_proj, v_proj, out_proj, fc1, fc2; Llama q_proj, "
       "k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"},
      {"lora.init", Type::choice, "kaiming",
       "A's init (B is zero): PEFT's default kaiming-uniform, or gaussian", "kaiming|gaussian"},
      {"model.head", Type::choice, "lm",
       "lethe finetune trains a language model (lm) or a sequence classifier", "lm|classifier"},
      {"model.labels", Type::str, "safe,harmful", "classifier class names, comma-separated"},
      {"output.dir", Type::str, nullptr, "output directory (required)"},
      {"output.format", Type::choice, "full",
       "what is saved: the whole model (LoRA merged), or the adapter alone (PEFT layout)",
       "full|adapter"},
      {"output.dtype", Type::choice, "f32", "stored dtype of the weights", "f32|f16|bf16"},
      {"output.keep", Type::choice, "last", "which checkpoint output.dir holds at the end",
       "last|best"},
  };
  return keys;
}

// Bumped by config_schema_changed (a method registered at run time): schema() is rebuilt.
int schema_generation = 0;

// method.name, then every method's keys (a key several methods share once, as its first method
// declares it; register_method keeps their types and ranges equal), in the place they had in the
// recipe's order: after the model.* keys.
const std::vector<Key>& schema() {
  static std::vector<Key> keys;
  static int built = -1;
  if (built == schema_generation) return keys;
  keys.clear();
  std::string names;
  for (const MethodSpec& m : method_specs()) names += (names.empty() ? "" : "|") + m.name;
  bool placed = false;
  for (const Key& k : base_schema()) {
    if (!placed && k.name.rfind("data.", 0) == 0) {
      placed = true;
      keys.push_back({"method.name", Type::choice, nullptr,
                      "unlearning method (required for unlearn)", names});
      for (const MethodSpec& m : method_specs())
        for (const Key& mk : m.keys) {
          const std::string name = "method." + mk.name;
          bool seen = false;
          for (const Key& have : keys) seen = seen || have.name == name;
          if (seen) continue;
          Key k2 = mk;
          k2.name = name;
          k2.def = nullptr;
          keys.push_back(k2);
        }
    }
    keys.push_back(k);
  }
  built = schema_generation;
  return keys;
}

const Key* find_key(const std::string& name) {
  for (const Key& k : schema())
    if (name == k.name) return &k;
  return nullptr;
}

std::string schema_default(const std::string& name) {
  const Key* k = find_key(name);
  return k && k->def ? k->def : "";
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string unknown_key_message(const std::string& where, const std::string& key) {
  std::string best;
  size_t best_d = 1000;
  for (const Key& k : schema()) {
    size_t d = edit_distance(key, k.name);
    if (d < best_d) best_d = d, best = k.name;
  }
  std::string msg = where + ": unknown key '" + key + "'";
  if (best_d <= 4) msg += " (did you mean '" + best + "'?)";
  return msg + "; `lethe unlearn --keys` lists every key";
}

// Parses `text` as a YAML value (for --set and for typed checks).
YAML::Node parse_value(const std::string& text) {
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception&) {
    return YAML::Node(text);
  }
}

// A leaf value as text: a scalar as written, a list of scalars as "[a, b]". Anything deeper is no
// value of any key (and an alias cycle must not be walked).
std::string scalar_text(const YAML::Node& n, const std::string& where, const std::string& key) {
  if (n.IsScalar()) return n.Scalar();
  if (n.IsNull()) return "";
  LETHE_CHECK(n.IsSequence(), where, ": ", key, " must be a value or a list of values");
  std::string out = "[";
  for (size_t i = 0; i < n.size(); ++i) {
    LETHE_CHECK(n[i].IsScalar(), where, ": ", key, " must be a list of plain values");
    out += (i ? ", " : "") + n[i].Scalar();
  }
  return out + "]";
}

bool is_key_prefix(const std::string& prefix) {
  for (const Key& k : schema())
    if (std::string(k.name).rfind(prefix + ".", 0) == 0) return true;
  return false;
}

// A character a recipe value may not hold: C0 controls other than tab and newline, and DEL. (A NUL
// cut messages short; others hide in paths and templates.)
bool is_control(unsigned char c) {
  return (c < 0x20 && c != '\t' && c != '\n') || c == 0x7f;
}

std::string control_name(unsigned char c) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "U+%04X", static_cast<unsigned>(c));
  return buf;
}

// The recipe's text, for checks yaml-cpp does not make: each scalar's quotes closed, every key
// once, no control characters.
struct RecipeText {
  const std::string& text;
  const std::string& where;
  std::map<std::string, int> seen;  // dotted key or section -> line (1-based)

  std::string at(const YAML::Mark& m) const { return at_line(m.line + 1); }
  std::string at_line(int line) const { return where + ":" + std::to_string(line); }

  // yaml-cpp accepts a quoted scalar that runs to the end of the file; its value then carries
  // whatever followed (a trailing newline became a space in a path).
  void check_quotes(const YAML::Node& n, const std::string& key) const {
    const YAML::Mark m = n.Mark();
    if (m.pos < 0 || static_cast<size_t>(m.pos) >= text.size()) return;
    const char q = text[static_cast<size_t>(m.pos)];
    if (q != '"' && q != '\'') return;
    for (size_t i = static_cast<size_t>(m.pos) + 1; i < text.size(); ++i) {
      if (q == '"' && text[i] == '\\') {
        ++i;
        continue;
      }
      if (text[i] != q) continue;
      if (q == '\'' && i + 1 < text.size() && text[i + 1] == '\'') {
        ++i;  // '' is a quote inside a single-quoted scalar
        continue;
      }
      return;
    }
    throw UsageError(at(m) + ": " + key + ": the quoted value is never closed (a " +
                     (q == '"' ? "\"" : "'") + " is missing)");
  }

  void check_chars(const std::string& value, const YAML::Mark& m, const std::string& key) const {
    for (unsigned char c : value)
      if (is_control(c))
        throw UsageError(at(m) + ": " + key + ": the value holds the control character " +
                         control_name(c));
  }

  void once(const std::string& key, const YAML::Mark& m, const char* what) {
    auto [it, fresh] = seen.emplace(key, m.line + 1);
    if (!fresh)
      throw UsageError(at(m) + ": " + what + " '" + key + "' is given twice (first at line " +
                       std::to_string(it->second) + "); give each once");
  }
};

// Walks a YAML mapping, emitting dotted keys for leaves (scalars and sequences).
void flatten(const YAML::Node& node, const std::string& prefix, RecipeText& rt,
             std::map<std::string, std::string>& out) {
  const std::string& where = rt.where;
  for (const auto& kv : node) {
    LETHE_CHECK(kv.first.IsScalar(), where, ": a key under '", prefix.empty() ? "(top)" : prefix,
                "' is not a plain name");
    if (prefix.empty() && kv.first.Scalar() == "defaults") continue;  // read by read_recipe
    const std::string key = prefix.empty() ? kv.first.Scalar() : prefix + "." + kv.first.Scalar();
    rt.check_chars(kv.first.Scalar(), kv.first.Mark(), key);
    if (kv.second.IsMap()) {
      LETHE_CHECK(is_key_prefix(key), unknown_key_message(where, key));  // bounds the recursion
      rt.once(key, kv.first.Mark(), "section");
      flatten(kv.second, key, rt, out);
    } else {
      LETHE_CHECK(find_key(key) != nullptr, unknown_key_message(where, key));
      rt.once(key, kv.first.Mark(), "key");
      if (kv.second.IsScalar()) rt.check_quotes(kv.second, key);
      if (kv.second.IsSequence())
        for (const auto& item : kv.second)
          if (item.IsScalar()) rt.check_quotes(item, key);
      out[key] = scalar_text(kv.second, where, key);
      rt.check_chars(out[key], kv.second.Mark(), key);
    }
  }
}

constexpr size_t kMaxRecipeBytes = 16 << 20;
constexpr size_t kMaxDefaultsDepth = 16;

// A `defaults:` entry: the path as written (relative to the directory of the recipe naming it)
// and its line.
struct DefaultRef {
  std::string path;
  int line;
};

// The top-level `defaults:` of a recipe: one path or a list of paths. An empty value names none.
std::vector<DefaultRef> defaults_list(const YAML::Node& key, const YAML::Node& value,
                                      RecipeText& rt) {
  rt.once("defaults", key.Mark(), "key");
  if (value.IsNull()) return {};
  LETHE_USAGE_CHECK(value.IsScalar() || value.IsSequence(), rt.at(key.Mark()),
                    ": defaults must be a recipe path or a list of them, like "
                    "defaults: [../base/tofu_unlearn.yaml]");
  std::vector<YAML::Node> items;
  if (value.IsScalar())
    items.push_back(value);
  else
    for (const auto& item : value) items.push_back(item);
  std::vector<DefaultRef> out;
  for (const YAML::Node& item : items) {
    const YAML::Mark m = item.Mark().line >= 0 ? item.Mark() : key.Mark();
    LETHE_USAGE_CHECK(item.IsScalar() && !item.Scalar().empty(), rt.at(m),
                      ": defaults: each entry is the path of a recipe");
    rt.check_quotes(item, "defaults");
    rt.check_chars(item.Scalar(), m, "defaults");
    out.push_back({item.Scalar(), m.line + 1});
  }
  return out;
}

// What tells two spellings of one file apart from two files: the path with symlinks, '.' and '..'
// resolved (as far as it exists), else the absolute path as written.
std::string file_identity(const std::string& path) {
  std::error_code ec;
  const std::filesystem::path p = std::filesystem::weakly_canonical(path, ec);
  if (!ec) return p.string();
  return std::filesystem::absolute(path, ec).lexically_normal().string();
}

// Reads the recipe `path` (its text already read) into `values`: first each of its defaults, in
// order, each read the same way (with defaults of its own), then the recipe's own keys over
// theirs. `origin` gets "file:line" of each value kept, for its type check. `chain` holds the
// identity and name of every file being read, the outermost first; a default already in it is a
// cycle. Every error names the file it is in and, where it has one, its line.
void read_recipe(const std::string& path, const std::string& text,
                 std::vector<std::pair<std::string, std::string>>& chain,
                 std::map<std::string, std::string>& values,
                 std::map<std::string, std::string>& origin) {
  RecipeText rt{text, path, {}};
  std::map<std::string, std::string> own;
  std::vector<DefaultRef> defaults;
  // A control character outside the values checked below (a comment, a key, or where yaml-cpp
  // stopped reading): named by its line.
  auto check_raw = [&] {
    int line = 1;
    for (unsigned char c : text) {
      if (c == '\n') ++line;
      if (is_control(c) && c != '\r')
        throw UsageError(path + ":" + std::to_string(line) +
                         ": the recipe holds the control character " + control_name(c));
    }
  };
  try {
    const std::vector<YAML::Node> docs = YAML::LoadAll(text);
    if (docs.size() > 1) {
      // Named by its '---' line: the last one at or before the second document's content.
      std::vector<size_t> starts = {0};
      for (size_t i = 0; i < text.size(); ++i)
        if (text[i] == '\n') starts.push_back(i + 1);
      const int content = docs[1].Mark().line;
      int line = content >= 0 ? content : static_cast<int>(starts.size()) - 1;
      for (int l = std::min(line, static_cast<int>(starts.size()) - 1); l >= 0; --l)
        if (text.compare(starts[static_cast<size_t>(l)], 3, "---") == 0) {
          line = l;
          break;
        }
      throw UsageError(path + ":" + std::to_string(line + 1) +
                       ": a second YAML document (after '---'); a recipe is one document");
    }
    const YAML::Node root = docs.empty() ? YAML::Node() : docs[0];
    LETHE_CHECK(root.IsMap() || root.IsNull(), path,
                ": a recipe is a mapping of sections (model:, method:, data:, trainer:, eval:, "
                "output:)");
    if (root.IsMap()) {
      flatten(root, "", rt, own);
      for (const auto& kv : root)
        if (kv.first.IsScalar() && kv.first.Scalar() == "defaults")
          defaults = defaults_list(kv.first, kv.second, rt);
    }
  } catch (const YAML::Exception& e) {
    check_raw();
    throw Error(path + ": invalid YAML: " + e.what());
  }
  check_raw();
  // The defaults are read after this file checks out, each outside this file's YAML handler: an
  // error in a default names the default.
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  for (const DefaultRef& d : defaults) {
    const std::string where = path + ":" + std::to_string(d.line) + ": defaults '" + d.path + "'";
    const std::string base = (dir / d.path).lexically_normal().string();
    const std::string id = file_identity(base);
    std::string names;
    for (const auto& [file_id, name] : chain) names += name + " -> ";
    for (const auto& [file_id, name] : chain)
      if (file_id == id) throw UsageError(where + ": an include cycle: " + names + base);
    if (chain.size() >= kMaxDefaultsDepth)
      throw UsageError(where + ": defaults nest more than " + std::to_string(kMaxDefaultsDepth) +
                       " deep: " + names + base);
    std::string base_text;
    try {
      base_text = io::read_text_file(base, kMaxRecipeBytes);
    } catch (const Error& e) {
      throw UsageError(where + ": " + e.what());
    }
    chain.emplace_back(id, base);
    read_recipe(base, base_text, chain, values, origin);
    chain.pop_back();
  }
  for (auto& [k, v] : own) {
    values[k] = std::move(v);
    origin[k] = rt.at_line(rt.seen.at(k));
  }
}

bool parse_bool(const std::string& s, bool& out) {
  if (s == "true" || s == "True" || s == "yes" || s == "on" || s == "1") return out = true, true;
  if (s == "false" || s == "False" || s == "no" || s == "off" || s == "0") return out = false, true;
  return false;
}

bool parse_double(const std::string& s, double& out) {
  if (s.empty()) return false;
  std::istringstream in(s);
  in >> out;
  return !in.fail() && in.peek() == std::char_traits<char>::eof();
}

bool parse_int(const std::string& s, int64_t& out) {
  double d;
  if (!parse_double(s, d) || !std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9e18)
    return false;
  out = static_cast<int64_t>(d);
  return true;
}

std::vector<double> parse_list(const std::string& where, const std::string& key,
                               const std::string& text) {
  YAML::Node n;
  try {
    n = parse_value(text);
  } catch (const YAML::Exception& e) {
    throw Error(where + ": " + key + ": " + e.what());
  }
  LETHE_CHECK(n.IsSequence(), where, ": ", key,
              " must be a list of numbers like [0.5, 1, 1], got '", text, "'");
  std::vector<double> out;
  for (const auto& item : n) {
    double d;
    LETHE_CHECK(item.IsScalar() && parse_double(item.Scalar(), d) && std::isfinite(d), where, ": ",
                key, " must be a list of finite numbers, got '", text, "'");
    out.push_back(d);
  }
  return out;
}

void check_value(const std::string& where, const Key& k, const std::string& v) {
  const std::string key = k.name;
  switch (k.type) {
    case Type::str: return;
    case Type::path:
      LETHE_CHECK(!v.empty(), where, ": ", key, " is empty");
      return;  // existence is checked when the run starts (after every key is known)
    case Type::flag: {
      bool b;
      LETHE_CHECK(parse_bool(v, b), where, ": ", key, " must be true or false, got '", v, "'");
      return;
    }
    case Type::num: {
      double d;
      LETHE_CHECK(parse_double(v, d) && std::isfinite(d), where, ": ", key,
                  " must be a finite number, got '", v, "'");
      LETHE_CHECK(d >= k.lo && d <= k.hi, where, ": ", key, " = ", v, " is out of range [", k.lo,
                  ", ", k.hi, "]");
      return;
    }
    case Type::integer: {
      int64_t i;
      LETHE_CHECK(parse_int(v, i), where, ": ", key, " must be an integer, got '", v, "'");
      LETHE_CHECK(static_cast<double>(i) >= k.lo && static_cast<double>(i) <= k.hi, where, ": ",
                  key, " = ", v, " is out of range [", k.lo, ", ", k.hi, "]");
      return;
    }
    case Type::choice: {
      std::string choices = k.choices;
      std::string padded = "|" + choices + "|";
      LETHE_CHECK(padded.find("|" + v + "|") != std::string::npos, where, ": ", key, " = '", v,
                  "' is not one of ", choices);
      return;
    }
    case Type::nums: {
      const size_t n = parse_list(where, key, v).size();
      LETHE_CHECK(k.count == 0 || n == k.count, where, ": ", key, " needs ", k.count, " numbers (",
                  k.help, "), got ", v);
      return;
    }
  }
}

void finish(std::map<std::string, std::string>& values, const std::string& where, RunKind kind);

}  // namespace

// ---- Config -----------------------------------------------------------------------------------

bool Config::has(const std::string& key) const {
  return values_.count(key) > 0;
}

std::string Config::str(const std::string& key) const {
  auto it = values_.find(key);
  LETHE_CHECK(it != values_.end(), source_, ": ", key, " is not set");
  return it->second;
}

double Config::num(const std::string& key) const {
  double d = 0;
  const std::string v = str(key);
  LETHE_CHECK(parse_double(v, d), source_, ": ", key, " must be a number, got '", v, "'");
  return d;
}

int64_t Config::integer(const std::string& key) const {
  int64_t i = 0;
  const std::string v = str(key);
  LETHE_CHECK(parse_int(v, i), source_, ": ", key, " must be an integer, got '", v, "'");
  return i;
}

bool Config::flag(const std::string& key) const {
  bool b = false;
  const std::string v = str(key);
  LETHE_CHECK(parse_bool(v, b), source_, ": ", key, " must be true or false, got '", v, "'");
  return b;
}

std::vector<double> Config::nums(const std::string& key) const {
  return parse_list(source_, key, str(key));
}

double Config::num_or(const std::string& key, double fallback) const {
  return has(key) ? num(key) : fallback;
}
int64_t Config::integer_or(const std::string& key, int64_t fallback) const {
  return has(key) ? integer(key) : fallback;
}
bool Config::flag_or(const std::string& key, bool fallback) const {
  return has(key) ? flag(key) : fallback;
}
std::string Config::str_or(const std::string& key, const std::string& fallback) const {
  return has(key) ? str(key) : fallback;
}

void Config::set(const std::string& key, const std::string& value) {
  const Key* k = find_key(key);
  LETHE_CHECK(k != nullptr, unknown_key_message(source_, key));
  check_value(source_, *k, value);
  values_[key] = value;
}

namespace {

constexpr const char* kEvalSets[] = {"eval.forget",
                                     "eval.retain",
                                     "eval.real_authors",
                                     "eval.world_facts",
                                     "eval.mia.forget",
                                     "eval.perplexity",
                                     "eval.muse.verbmem",
                                     "eval.muse.knowmem_forget",
                                     "eval.muse.knowmem_retain",
                                     "eval.muse.privleak_forget",
                                     "eval.harmful.prompts"};

// Nothing a user gives lethe is written by the run: output.dir must lie apart from every input
// path (the model, reference, adapter, tokenizer, data files, eval sets and references), compared
// resolved, and must be a directory lethe can write — found before any work (docs/cli.md).
void check_output_apart(const std::map<std::string, std::string>& values,
                        const std::string& where) {
  const std::string out = values.at("output.dir");
  for (const Key& k : schema()) {
    auto it = values.find(k.name);
    if (k.type != Type::path || it == values.end() || it->second.empty()) continue;
    const io::PathRelation r = io::path_relation(out, it->second);
    if (r == io::PathRelation::apart) continue;
    const char* how = io::path_relation_words(r);
    throw UsageError(where + ": output.dir (" + out + ") " + how + " " + k.name + " (" +
                     it->second +
                     "): a run never writes where its inputs are; choose another output.dir");
  }
  io::require_writable_directory(out, where + ": output.dir");
}

void finish(std::map<std::string, std::string>& values, const std::string& where, RunKind kind) {
  for (const Key& k : schema()) {
    auto it = values.find(k.name);
    if (it == values.end()) {
      if (k.def) values[k.name] = k.def;
      continue;
    }
    check_value(where, k, it->second);
  }
  auto require = [&](const char* key, const char* why) {
    LETHE_CHECK(values.count(key) && !values[key].empty(), where, ": ", key, " is required ", why);
  };
  require("model.path", "(the model to train)");
  require("output.dir", "(where the result goes)");
  if (kind == RunKind::eval) {
    auto pair = [&](const char* a, const char* b) {
      LETHE_CHECK(values.count(a) == values.count(b), where, ": ", a, " and ", b, " go together (",
                  values.count(a) ? b : a, " is missing)");
    };
    pair("eval.mia.forget", "eval.mia.holdout");
    pair("eval.muse.privleak_forget", "eval.muse.privleak_holdout");
    pair("eval.harmful.prompts", "eval.harmful.classifier");
    bool any = false;
    for (const char* k : kEvalSets) any = any || values.count(k);
    LETHE_CHECK(any, where,
                ": lethe eval needs at least one set: eval.forget, eval.retain, "
                "eval.real_authors, eval.world_facts (TOFU), eval.mia.forget + eval.mia.holdout, "
                "eval.muse.*, eval.harmful.prompts + eval.harmful.classifier, eval.perplexity");
    for (const char* k : {"method.name", "data.forget", "data.retain", "data.train"})
      LETHE_CHECK(!values.count(k), where, ": ", k,
                  " is for lethe unlearn/finetune; lethe eval reads eval.* sets");
  } else if (kind == RunKind::unlearn) {
    require("method.name", "for lethe unlearn");
    require("data.forget", "for lethe unlearn");
    LETHE_CHECK(!values.count("data.train"), where,
                ": data.train is for lethe finetune; lethe unlearn reads data.forget and "
                "data.retain");
    const MethodSpec* m = find_method(values["method.name"]);
    if (m && m->needs_retain) require("data.retain", "by this method");
  } else {
    require("data.train", "for lethe finetune");
    if (values["model.head"] == "classifier")
      LETHE_CHECK(values["data.format"] == "pku" || values["data.format"] == "jsonl", where,
                  ": model.head classifier reads data.format pku (both responses, labelled by "
                  "safety) or jsonl ({\"text\", \"label\"}), not ",
                  values["data.format"]);
    LETHE_CHECK(!values.count("method.name"), where,
                ": method.name is for lethe unlearn; lethe finetune trains with the NLL");
  }
  if (kind != RunKind::eval) {
    LETHE_CHECK(values["output.format"] != "adapter" || values["lora.enabled"] == "true", where,
                ": output.format adapter needs lora.enabled: true (a full run has no adapter)");
    if (values["lora.enabled"] != "true")
      for (const char* k : {"lora.r", "lora.alpha", "lora.dropout", "lora.targets", "lora.init"})
        LETHE_CHECK(values[k] == schema_default(k), where, ": ", k,
                    " is set but lora.enabled is false (set lora.enabled: true)");
    LETHE_CHECK(values["model.head"] != "classifier" || values["lora.enabled"] != "true", where,
                ": model.head classifier trains without LoRA");
  }
  int64_t threads = 0;
  parse_int(values["trainer.threads"], threads);
  LETHE_USAGE_CHECK(threads <= max_cpu_threads(), where, ": trainer.threads = ", threads,
                    " is more than ", max_cpu_threads(),
                    " (at most 4 threads per hardware thread of this machine)");
  check_output_apart(values, where);
}

}  // namespace

Config make_config(const std::map<std::string, std::string>& given, RunKind kind) {
  Config c;
  c.source_ = "(recipe)";
  c.kind_ = kind;
  std::map<std::string, std::string> values;
  for (const auto& [k, v] : given) {
    LETHE_CHECK(find_key(k) != nullptr, unknown_key_message(c.source_, k));
    values[k] = v;
  }
  finish(values, c.source_, kind);
  c.values_ = std::move(values);
  return c;
}

Config load_config(const std::string& recipe_path, const std::vector<std::string>& overrides,
                   RunKind kind) {
  Config c;
  c.kind_ = kind;
  c.source_ = recipe_path.empty() ? std::string("(no recipe)") : recipe_path;
  std::map<std::string, std::string> values;
  std::map<std::string, std::string> origin;  // key -> "file:line" of a value from a recipe file
  if (!recipe_path.empty()) {
    std::vector<std::pair<std::string, std::string>> chain = {
        {file_identity(recipe_path), recipe_path}};
    read_recipe(recipe_path, io::read_text_file(recipe_path, kMaxRecipeBytes), chain, values,
                origin);
  }
  for (const std::string& o : overrides) {
    const size_t eq = o.find('=');
    LETHE_CHECK(eq != std::string::npos && eq > 0, "--set '", o, "': expected key=value");
    const std::string key = o.substr(0, eq);
    LETHE_CHECK(find_key(key) != nullptr, unknown_key_message("--set", key));
    // The text after '=' is the value as written (a template may hold ": " or "{"); only a
    // list is parsed, as YAML flow: --set method.epsilons=[0.5,1,1].
    const std::string text = o.substr(eq + 1);
    for (unsigned char c : text)
      LETHE_USAGE_CHECK(!is_control(c), "--set ", key, ": the value holds the control character ",
                        control_name(c));
    values[key] =
        !text.empty() && text[0] == '[' ? scalar_text(parse_value(text), "--set", key) : text;
    origin.erase(key);
  }
  // A value from a recipe file is checked against its key's type naming the file and line it is
  // written on (a base's or the recipe's); --set values and the rest are checked by finish().
  for (const auto& [key, where] : origin) check_value(where, *find_key(key), values.at(key));
  finish(values, c.source_, kind);
  c.values_ = std::move(values);
  return c;
}

void check_same_recipe_on_every_rank(const Config& cfg) {
  dist::Communicator& comm = dist::world();
  if (comm.size() < 2) return;
  uint64_t h = 1469598103934665603ull;  // FNV-1a of the resolved keys
  for (const auto& [k, v] : cfg.values())
    for (const std::string& part : {k, std::string("="), v, std::string("\n")})
      for (unsigned char c : part) h = (h ^ c) * 1099511628211ull;
  const std::vector<uint64_t> all = comm.all_gather_host(h);
  for (size_t r = 1; r < all.size(); ++r)
    LETHE_USAGE_CHECK(all[r] == all[0], cfg.source(), ": rank ", r,
                      "'s resolved recipe differs from rank 0's (the same recipe and --set keys "
                      "on every rank; run.json lists the resolved keys)");
}

std::string describe_schema() {
  std::ostringstream out;
  for (const Key& k : schema()) {
    std::string type;
    switch (k.type) {
      case Type::str: type = "string"; break;
      case Type::num: type = "number"; break;
      case Type::integer: type = "integer"; break;
      case Type::flag: type = "true|false"; break;
      case Type::choice: type = k.choices; break;
      case Type::nums: type = "list of numbers"; break;
      case Type::path: type = "path"; break;
    }
    out << k.name << "  (" << type;
    if (k.def) out << ", default " << (*k.def ? k.def : "''");
    out << ")  " << k.help;
    // A method's key: which methods read it, with each one's default.
    if (k.name.rfind("method.", 0) == 0 && k.name != "method.name") {
      std::string by;
      for (const MethodSpec& m : method_specs())
        for (const Key& mk : m.keys)
          if ("method." + mk.name == k.name)
            by += (by.empty() ? "" : ", ") + m.name +
                  (mk.def ? std::string(" ") + (*mk.def ? mk.def : "''") : std::string());
      out << " [" << by << "]";
    }
    out << '\n';
  }
  return out.str();
}

std::vector<double> parse_number_list(const std::string& where, const std::string& key,
                                      const std::string& text) {
  return parse_list(where, key, text);
}

void config_schema_changed() {
  ++schema_generation;
}

}  // namespace lethe::trainers
