// TOFU evaluation runs: splits from the recipe, the retain reference, eval.json / eval.csv / table.
#include "trainers/eval/runner.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "engine/error.h"
#include "engine/io/file_util.h"
#include "engine/io/json.h"
#include "engine/ops.h"

namespace fs = std::filesystem;

namespace lethe::trainers::eval {

namespace {

struct SplitKey {
  const char* key;
  TofuSplit split;
};
constexpr SplitKey kSplits[] = {{"eval.forget", TofuSplit::forget},
                                {"eval.retain", TofuSplit::retain},
                                {"eval.real_authors", TofuSplit::real_authors},
                                {"eval.world_facts", TofuSplit::world_facts}};

TofuOptions options_of(const Config& c, bool generate) {
  TofuOptions o;
  o.batch_size = c.integer("eval.batch_size");
  o.max_new_tokens = c.integer("eval.max_new_tokens");
  o.max_samples = c.integer("eval.max_samples");
  o.prompt_template = c.str("data.template");
  o.max_length = c.integer("data.max_length");
  o.generate = generate;
  return o;
}

nlohmann::json num(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

std::string fmt(double v) {
  if (!std::isfinite(v)) return "–";
  char b[32];
  std::snprintf(b, sizeof b, "%.4f", v);
  return b;
}

std::string fmt_p(double v) {
  if (v < 0) return "–";
  char b[32];
  std::snprintf(b, sizeof b, v < 1e-3 ? "%.2e" : "%.4f", v);
  return b;
}

}  // namespace

TofuReport run_tofu(const models::CausalLM& model, const tokenizer::Tokenizer& tokenizer,
                    const Config& c, const std::vector<double>* reference_forget, bool generate) {
  TofuReport rep;
  const TofuOptions o = options_of(c, generate);
  for (const SplitKey& k : kSplits) {
    if (!c.has(k.key)) continue;
    const std::vector<data::Record> records = data::load_records(c.str(k.key), data::Format::tofu);
    rep.splits.push_back(evaluate_tofu_split(model, tokenizer, records, k.split, o));
  }
  rep.summary = summarize_tofu(rep.splits, reference_forget);
  return rep;
}

std::vector<double> reference_truth_ratios(const Config& c, const tokenizer::Tokenizer& tok) {
  if (!c.has("eval.retain_reference")) return {};
  const std::string ref = c.str("eval.retain_reference");
  std::string json_path;
  if (io::file_kind(ref) == io::FileKind::regular)
    json_path = ref;
  else if (io::file_kind((fs::path(ref) / "eval.json").string()) == io::FileKind::regular)
    json_path = (fs::path(ref) / "eval.json").string();
  if (!json_path.empty()) {
    const nlohmann::json j = io::read_json_file(json_path);
    std::vector<double> out;
    try {
      for (const nlohmann::json& s : j.at("splits").at("forget").at("samples"))
        out.push_back(s.at("truth_ratio").get<double>());
    } catch (const nlohmann::json::exception& e) {
      throw Error(json_path +
                  ": no forget truth ratios (splits.forget.samples[].truth_ratio): " + e.what());
    }
    LETHE_CHECK(!out.empty(), json_path, ": the forget split has no samples");
    return out;
  }
  // A model directory: evaluate its forget split (no generation needed for truth ratios).
  LETHE_CHECK(c.has("eval.forget"), c.source(),
              ": eval.retain_reference is a model, so eval.forget is needed to evaluate it");
  io::require_directory(ref, "eval.retain_reference");
  const auto model =
      models::load_causal_lm(ref, Device::parse(c.str("model.device")), {models::none_trainable});
  const std::vector<data::Record> records =
      data::load_records(c.str("eval.forget"), data::Format::tofu);
  return evaluate_tofu_split(*model, tok, records, TofuSplit::forget, options_of(c, false))
      .truth_ratio;
}

nlohmann::ordered_json report_json(const TofuReport& r, const std::string& model_path) {
  nlohmann::ordered_json j;
  j["benchmark"] = "tofu";
  j["model"] = model_path;
  j["summary"] = {
      {"forget_quality", r.summary.forget_quality >= 0 ? nlohmann::json(r.summary.forget_quality)
                                                       : nlohmann::json(nullptr)},
      {"ks_statistic", r.summary.ks_statistic >= 0 ? nlohmann::json(r.summary.ks_statistic)
                                                   : nlohmann::json(nullptr)},
      {"model_utility", num(r.summary.model_utility)},
      {"model_utility_terms", r.summary.utility_terms}};
  nlohmann::ordered_json splits;
  for (const TofuSplitResult& s : r.splits) {
    nlohmann::ordered_json sj;
    sj["aggregate"] = {
        {"probability", num(s.prob)},
        {"rouge_l_recall", num(s.rouge)},
        {"truth_ratio", num(s.truth)},
        {"truth_ratio_aggregation",
         s.split == TofuSplit::forget ? "mean(min(R, 1/R))" : "mean(max(0, 1 - R))"}};
    nlohmann::ordered_json samples = nlohmann::ordered_json::array();
    for (size_t i = 0; i < s.questions.size(); ++i)
      samples.push_back({{"question", s.questions[i]},
                         {"answer", s.answers[i]},
                         {"generated", s.generated[i]},
                         {"answer_probability", num(s.answer_prob[i])},
                         {"probability", num(s.probability[i])},
                         {"rouge_l_recall", num(s.rouge_recall[i])},
                         {"truth_ratio", num(s.truth_ratio[i])}});
    sj["samples"] = samples;
    splits[tofu_split_name(s.split)] = sj;
  }
  j["splits"] = splits;
  return j;
}

std::string report_markdown(const TofuReport& r) {
  std::ostringstream out;
  out << "| split | probability | ROUGE-L recall | truth ratio |\n|---|---|---|---|\n";
  for (const TofuSplitResult& s : r.splits)
    out << "| " << tofu_split_name(s.split) << " | " << fmt(s.prob) << " | " << fmt(s.rouge)
        << " | " << fmt(s.truth) << " |\n";
  out << "\nforget quality " << fmt_p(r.summary.forget_quality) << ", model utility "
      << fmt(r.summary.model_utility) << " (harmonic mean of " << r.summary.utility_terms
      << " values)\n";
  return out.str();
}

std::string report_csv(const TofuReport& r) {
  std::ostringstream out;
  out << "split,probability,rouge_l_recall,truth_ratio\n";
  for (const TofuSplitResult& s : r.splits)
    out << tofu_split_name(s.split) << ',' << fmt(s.prob) << ',' << fmt(s.rouge) << ','
        << fmt(s.truth) << '\n';
  out << "summary,forget_quality," << fmt_p(r.summary.forget_quality) << ",\n";
  out << "summary,model_utility," << fmt(r.summary.model_utility) << ",\n";
  return out.str();
}

TofuReport run_eval(const Config& c) {
  for (const SplitKey& k : kSplits)
    if (c.has(k.key)) io::require_regular_file(c.str(k.key), k.key);
  io::require_directory(c.str("model.path"), "model.path");
  set_matmul_precision(c.str("model.dtype") == "bf16" ? MatmulPrecision::bf16
                                                      : MatmulPrecision::f32);
  const auto tok = tokenizer::load_tokenizer(c.str_or("model.tokenizer", c.str("model.path")));
  const std::vector<double> reference = reference_truth_ratios(c, *tok);
  const auto model = models::load_causal_lm(
      c.str("model.path"), Device::parse(c.str("model.device")), {models::none_trainable});
  TofuReport rep = run_tofu(*model, *tok, c, reference.empty() ? nullptr : &reference);
  const fs::path out = c.str("output.dir");
  fs::create_directories(out);
  io::write_json_file((out / "eval.json").string(), report_json(rep, c.str("model.path")));
  io::write_file_atomic((out / "eval.csv").string(), report_csv(rep));
  return rep;
}

}  // namespace lethe::trainers::eval
