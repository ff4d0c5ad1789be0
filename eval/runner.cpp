// TOFU evaluation runs: splits from the recipe, the retain reference, eval.json / eval.csv / table.
#include "eval/runner.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "engine/dist/communicator.h"
#include "engine/error.h"
#include "engine/io/file_util.h"
#include "engine/io/json.h"
#include "engine/ops.h"
#include "eval/classifier.h"
#include "eval/stats.h"
#include "models/lora.h"
#include "models/sequence_classifier.h"
#include "trainers/data/dataset.h"

namespace fs = std::filesystem;

namespace lethe::eval {

namespace {

struct SplitFile {
  const char* key;  // for messages
  std::string EvalSettings::*path;
  TofuSplit split;
};
constexpr SplitFile kSplits[] = {
    {"eval.forget", &EvalSettings::tofu_forget, TofuSplit::forget},
    {"eval.retain", &EvalSettings::tofu_retain, TofuSplit::retain},
    {"eval.real_authors", &EvalSettings::real_authors, TofuSplit::real_authors},
    {"eval.world_facts", &EvalSettings::world_facts, TofuSplit::world_facts}};

TofuOptions options_of(const EvalSettings& c, bool generate) {
  TofuOptions o;
  o.batch_size = c.batch_size;
  o.max_new_tokens = c.max_new_tokens;
  o.max_samples = c.max_samples;
  o.prompt_template = c.prompt_template;
  o.max_length = c.max_length;
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

std::string fmt2(double v) {
  if (!std::isfinite(v)) return "–";
  char b[32];
  std::snprintf(b, sizeof b, "%.2f", v);
  return b;
}

nlohmann::ordered_json nums(const std::vector<double>& v) {
  nlohmann::ordered_json a = nlohmann::ordered_json::array();
  for (double x : v)
    a.push_back(std::isfinite(x) ? nlohmann::ordered_json(x) : nlohmann::ordered_json(nullptr));
  return a;
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  int64_t n = 0;
  for (double x : v)
    if (std::isfinite(x)) s += x, ++n;
  return n ? s / static_cast<double>(n) : std::nan("");
}

// Samples of an eval.* text file (eval.format, data.template, no EOS: every labelled token is
// a token of the text) and the labelled text each scores, decoded.
struct TextSet {
  std::vector<trainers::data::Sample> samples;
  std::vector<std::string> texts;
};
TextSet text_set(const EvalSettings& c, const std::string& path, const tokenizer::Tokenizer& tok) {
  trainers::data::SampleOptions so;
  so.format = c.text_format;
  so.prompt_template = c.prompt_template;
  so.max_length = c.max_length;
  so.add_eos = false;
  so.tokenization = c.tokenization;
  std::vector<trainers::data::Record> records = trainers::data::load_records(path, so.format);
  const int64_t cap = c.max_samples;
  if (cap > 0 && records.size() > static_cast<size_t>(cap))
    records.resize(static_cast<size_t>(cap));
  TextSet t;
  t.samples = trainers::data::make_samples(records, so, tok);
  for (const trainers::data::Sample& s : t.samples) {
    std::vector<int64_t> ids;
    for (int64_t l : s.labels)
      if (l != -100) ids.push_back(l);
    t.texts.push_back(tok.decode(ids, /*skip_special=*/true));
  }
  return t;
}

std::vector<trainers::data::Record> muse_records(const std::string& path) {
  return trainers::data::load_records(path, trainers::data::Format::muse);
}

std::string fmt_p(double v) {
  if (v < 0) return "–";
  char b[32];
  std::snprintf(b, sizeof b, v < 1e-3 ? "%.2e" : "%.4f", v);
  return b;
}

}  // namespace

TofuReport run_tofu(const models::CausalLM& model, const tokenizer::Tokenizer& tokenizer,
                    const EvalSettings& c, const std::vector<double>* reference_forget,
                    bool generate) {
  TofuReport rep;
  const TofuOptions o = options_of(c, generate);
  for (const SplitFile& k : kSplits) {
    if ((c.*k.path).empty()) continue;
    const std::vector<trainers::data::Record> records =
        trainers::data::load_records(c.*k.path, trainers::data::Format::tofu);
    rep.splits.push_back(evaluate_tofu_split(model, tokenizer, records, k.split, o));
  }
  rep.summary = summarize_tofu(rep.splits, reference_forget);
  return rep;
}

trainers::EvalHook tofu_step_metrics(const trainers::Config& config) {
  const EvalSettings c = settings_of(config);
  if (c.every_steps == 0 || !c.tofu_metrics) return nullptr;
  LETHE_CHECK(c.any_tofu(), c.source,
              ": eval.metrics: tofu needs TOFU *_perturbed files in eval.forget, eval.retain, "
              "eval.real_authors or eval.world_facts");
  std::shared_ptr<tokenizer::Tokenizer> tok = tokenizer::load_tokenizer(c.tokenizer);
  auto reference = std::make_shared<std::vector<double>>(reference_truth_ratios(c, *tok));
  return [c, tok, reference](models::CausalLM& model) {
    // Data-parallel inside (parallel.h): every rank scores and generates its block of each split
    // and all get the same numbers.
    const TofuReport rep = run_tofu(model, *tok, c, reference->empty() ? nullptr : reference.get());
    trainers::StepMetrics m;
    m.model_utility = rep.summary.model_utility;
    m.forget_quality = rep.summary.forget_quality;
    for (const TofuSplitResult& r : rep.splits)
      if (r.split == TofuSplit::forget) m.forget_rouge = r.rouge;
    return m;
  };
}

std::vector<double> reference_truth_ratios(const EvalSettings& c, const tokenizer::Tokenizer& tok) {
  if (c.retain_reference.empty()) return {};
  const std::string& ref = c.retain_reference;
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
  LETHE_CHECK(!c.tofu_forget.empty(), c.source,
              ": eval.retain_reference is a model, so eval.forget is needed to evaluate it");
  io::require_directory(ref, "eval.retain_reference");
  const auto model = models::load_causal_lm(ref, Device::parse(c.device), {models::none_trainable});
  const std::vector<trainers::data::Record> records =
      trainers::data::load_records(c.tofu_forget, trainers::data::Format::tofu);
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

std::optional<MiaReport> run_mia(const models::CausalLM& model, const tokenizer::Tokenizer& tok,
                                 const EvalSettings& c) {
  if (c.mia_forget.empty()) return std::nullopt;
  MiaReport r;
  r.k = c.mia_k;
  const int64_t bs = c.batch_size;
  const TextSet forget = text_set(c, c.mia_forget, tok);
  const TextSet holdout = text_set(c, c.mia_holdout, tok);
  const auto fs_ = token_stats(model, forget.samples, bs, true);
  const auto hs = token_stats(model, holdout.samples, bs, true);
  std::vector<TokenStats> fref, href;
  const bool has_ref = !c.mia_reference.empty();
  if (has_ref) {
    io::require_directory(c.mia_reference, "eval.mia.reference");
    const auto ref =
        models::load_causal_lm(c.mia_reference, model.device(), {models::none_trainable});
    LETHE_CHECK(ref->vocab_size() == model.vocab_size(), "eval.mia.reference ", c.mia_reference,
                ": the reference model's vocabulary (", ref->vocab_size(),
                ") differs from the evaluated model's (", model.vocab_size(), ")");
    fref = token_stats(*ref, forget.samples, bs, false);
    href = token_stats(*ref, holdout.samples, bs, false);
  }
  r.forget = text_scores(fs_, forget.texts, has_ref ? &fref : nullptr, r.k);
  r.holdout = text_scores(hs, holdout.texts, has_ref ? &href : nullptr, r.k);
  r.forget_texts = forget.texts;
  r.holdout_texts = holdout.texts;
  for (Attack a :
       {Attack::loss, Attack::zlib, Attack::min_k, Attack::min_k_plus_plus, Attack::reference}) {
    if (a == Attack::reference && !has_ref) continue;
    r.auc.emplace_back(a, roc_auc(r.forget.of(a), r.holdout.of(a)));
  }
  return r;
}

std::optional<MuseReport> run_muse(const models::CausalLM& model, const tokenizer::Tokenizer& tok,
                                   const EvalSettings& c) {
  const bool any = !c.verbmem.empty() || !c.knowmem_forget.empty() || !c.knowmem_retain.empty() ||
                   !c.privleak_forget.empty();
  if (!any) return std::nullopt;
  MuseOptions o;
  o.batch_size = c.batch_size;
  o.verbmem_max_new_tokens = c.verbmem_max_new_tokens;
  o.knowmem_max_new_tokens = c.knowmem_max_new_tokens;
  o.k = c.mia_k;
  o.auc_retrain = c.auc_retrain;
  o.max_length = c.max_length;
  o.max_samples = c.max_samples;
  MuseReport r;
  if (!c.verbmem.empty()) r.verbmem = muse_verbmem(model, tok, muse_records(c.verbmem), o);
  auto knowmem = [&](const std::string& qa, const std::string& icl) {
    const std::vector<trainers::data::Record> shots =
        icl.empty() ? std::vector<trainers::data::Record>{} : muse_records(icl);
    return muse_knowmem(model, tok, muse_records(qa), shots, o);
  };
  if (!c.knowmem_forget.empty()) r.knowmem_forget = knowmem(c.knowmem_forget, c.knowmem_forget_icl);
  if (!c.knowmem_retain.empty()) r.knowmem_retain = knowmem(c.knowmem_retain, c.knowmem_retain_icl);
  if (!c.privleak_forget.empty())
    r.privleak = muse_privleak(model, tok, muse_records(c.privleak_forget),
                               muse_records(c.privleak_holdout), o);
  return r;
}

std::optional<HarmfulReport> run_harmful(const models::CausalLM& model,
                                         const tokenizer::Tokenizer& tok, const EvalSettings& c) {
  if (c.harmful_prompts.empty()) return std::nullopt;
  const std::string& cdir = c.harmful_classifier;
  const Classifier judge = load_classifier(cdir, model.device());
  const models::SequenceClassifier& classifier = *judge.model;
  HarmfulOptions o;
  o.batch_size = c.batch_size;
  o.max_new_tokens = c.harmful_max_new_tokens;
  o.max_length = c.max_length;
  o.prompt_template = c.prompt_template;
  o.harmful_label = c.harmful_label;
  o.max_samples = c.max_samples;
  LETHE_CHECK(o.harmful_label < static_cast<int64_t>(classifier.labels().size()), c.source,
              ": eval.harmful.label ", o.harmful_label, " is not a class of ", cdir, " (",
              classifier.labels().size(), " labels)");
  const std::vector<std::string> prompts = load_prompts(c.harmful_prompts);
  HarmfulReport r;
  r.label = classifier.labels()[static_cast<size_t>(o.harmful_label)];
  r.after = harmful_rate(model, tok, classifier, *judge.tokenizer, prompts, o);
  if (!c.harmful_before.empty()) {
    io::require_directory(c.harmful_before, "eval.harmful.before");
    const auto before =
        models::load_causal_lm(c.harmful_before, model.device(), {models::none_trainable});
    r.before = harmful_rate(*before, tok, classifier, *judge.tokenizer, prompts, o);
  }
  return r;
}

std::optional<PerplexityReport> run_perplexity(const models::CausalLM& model,
                                               const tokenizer::Tokenizer& tok,
                                               const EvalSettings& c) {
  if (c.perplexity.empty()) return std::nullopt;
  const TextSet set = text_set(c, c.perplexity, tok);
  return PerplexityReport{c.perplexity,
                          perplexity(token_stats(model, set.samples, c.batch_size, false))};
}

namespace {

nlohmann::ordered_json scores_json(const TextScores& s, const std::vector<std::string>& texts,
                                   bool has_ref) {
  nlohmann::ordered_json a = nlohmann::ordered_json::array();
  for (size_t i = 0; i < texts.size(); ++i) {
    nlohmann::ordered_json e = {
        {"text", texts[i]},         {"loss", num(s.loss[i])},
        {"zlib", num(s.zlib[i])},   {"zlib_bytes", s.zlib_bytes[i]},
        {"min_k", num(s.min_k[i])}, {"min_k_plus_plus", num(s.min_k_plus_plus[i])}};
    if (has_ref) e["reference"] = num(s.reference[i]);
    e["exact_memorization"] = num(s.exact_memorization[i]);
    e["extraction_strength"] = num(s.extraction_strength[i]);
    a.push_back(e);
  }
  return a;
}

nlohmann::ordered_json generations_json(const GenerationScores& g) {
  nlohmann::ordered_json samples = nlohmann::ordered_json::array();
  for (size_t i = 0; i < g.generated.size(); ++i)
    samples.push_back({{"prompt", g.prompts[i]},
                       {"target", g.targets[i]},
                       {"generated", g.generated[i]},
                       {"rouge_l_f1", num(g.rouge_f1[i])}});
  return {{"rouge_l_f1", num(g.mean)}, {"samples", samples}};
}

nlohmann::ordered_json harmful_json(const HarmfulResult& h) {
  nlohmann::ordered_json samples = nlohmann::ordered_json::array();
  for (size_t i = 0; i < h.prompts.size(); ++i)
    samples.push_back({{"prompt", h.prompts[i]},
                       {"response", h.responses[i]},
                       {"p_harmful", num(h.p_harmful[i])},
                       {"harmful", static_cast<bool>(h.harmful[i])}});
  return {{"harmful_rate", num(h.rate)}, {"samples", samples}};
}

}  // namespace

nlohmann::ordered_json report_json(const EvalReport& r, const std::string& model_path) {
  nlohmann::ordered_json j;
  if (!r.tofu.splits.empty()) {
    j = report_json(r.tofu, model_path);
  } else {
    j["model"] = model_path;
  }
  if (r.mia) {
    const bool has_ref = !r.mia->forget.reference.empty();
    nlohmann::ordered_json auc;
    for (const auto& [a, v] : r.mia->auc) auc[attack_name(a)] = num(v);
    j["mia"] = {
        {"k", r.mia->k},
        {"orientation",
         "roc_auc_score(labels, scores) with forget = 0, holdout = 1 and each score signed so "
         "that higher means less likely a member (open-unlearning): a memorised forget set gives "
         "AUC near 1, an unlearned one near 0.5"},
        {"auc", auc},
        {"exact_memorization",
         {{"forget", num(mean_of(r.mia->forget.exact_memorization))},
          {"holdout", num(mean_of(r.mia->holdout.exact_memorization))}}},
        {"extraction_strength",
         {{"forget", num(mean_of(r.mia->forget.extraction_strength))},
          {"holdout", num(mean_of(r.mia->holdout.extraction_strength))}}},
        {"forget", scores_json(r.mia->forget, r.mia->forget_texts, has_ref)},
        {"holdout", scores_json(r.mia->holdout, r.mia->holdout_texts, has_ref)}};
  }
  if (r.muse) {
    nlohmann::ordered_json m;
    if (r.muse->verbmem) m["verbmem"] = generations_json(*r.muse->verbmem);
    if (r.muse->knowmem_forget) m["knowmem_forget"] = generations_json(*r.muse->knowmem_forget);
    if (r.muse->knowmem_retain) m["knowmem_retain"] = generations_json(*r.muse->knowmem_retain);
    if (r.muse->privleak) {
      const PrivLeakResult& p = *r.muse->privleak;
      m["privleak"] = {{"privleak", num(p.privleak)},
                       {"auc", num(p.auc)},
                       {"auc_retrain", num(p.auc_retrain)},
                       {"orientation",
                        "roc_auc_score with forget = 0, holdout = 1 on the Min-k % log-prob "
                        "(not negated, as MUSE): a memorised forget set gives AUC near 0"},
                       {"forget_scores", nums(p.forget_scores)},
                       {"holdout_scores", nums(p.holdout_scores)}};
    }
    j["muse"] = m;
  }
  if (r.harmful) {
    j["harmful"] = {{"label", r.harmful->label}, {"after", harmful_json(r.harmful->after)}};
    if (r.harmful->before) j["harmful"]["before"] = harmful_json(*r.harmful->before);
  }
  if (r.perplexity) {
    const Perplexity& p = r.perplexity->result;
    j["perplexity"] = {{"path", r.perplexity->path},
                       {"perplexity", num(p.perplexity)},
                       {"nll_sum", num(p.nll_sum)},
                       {"tokens", p.tokens},
                       {"per_text", nums(p.per_text)}};
  }
  return j;
}

std::string report_markdown(const EvalReport& r) {
  std::ostringstream out;
  auto section = [&] {
    if (out.tellp() > 0) out << "\n";
  };
  if (!r.tofu.splits.empty()) out << report_markdown(r.tofu);
  if (r.mia) {
    section();
    out << "| membership inference (k " << fmt2(r.mia->k)
        << ") | AUC forget vs holdout |\n|---|---|\n";
    for (const auto& [a, v] : r.mia->auc)
      out << "| " << attack_name(a) << " | " << fmt(v) << " |\n";
    out << "\nexact memorisation " << fmt(mean_of(r.mia->forget.exact_memorization)) << " (holdout "
        << fmt(mean_of(r.mia->holdout.exact_memorization)) << "), extraction strength "
        << fmt(mean_of(r.mia->forget.extraction_strength)) << " (holdout "
        << fmt(mean_of(r.mia->holdout.extraction_strength)) << ")\n";
  }
  if (r.muse) {
    section();
    out << "| MUSE | value |\n|---|---|\n";
    if (r.muse->verbmem)
      out << "| VerbMem (ROUGE-L F1) | " << fmt2(r.muse->verbmem->mean) << " |\n";
    if (r.muse->knowmem_forget)
      out << "| KnowMem forget (ROUGE-L F1) | " << fmt2(r.muse->knowmem_forget->mean) << " |\n";
    if (r.muse->knowmem_retain)
      out << "| KnowMem retain (ROUGE-L F1) | " << fmt2(r.muse->knowmem_retain->mean) << " |\n";
    if (r.muse->privleak)
      out << "| PrivLeak (AUC " << fmt(r.muse->privleak->auc) << ") | "
          << fmt2(r.muse->privleak->privleak) << " |\n";
  }
  if (r.harmful) {
    section();
    out << "harmful rate (" << r.harmful->label << ") " << fmt(r.harmful->after.rate);
    if (r.harmful->before) out << ", before unlearning " << fmt(r.harmful->before->rate);
    out << " over " << r.harmful->after.prompts.size() << " prompts\n";
  }
  if (r.perplexity) {
    section();
    out << "perplexity " << fmt(r.perplexity->result.perplexity) << " ("
        << r.perplexity->result.tokens << " tokens of " << r.perplexity->path << ")\n";
  }
  return out.str();
}

std::string report_csv(const EvalReport& r) {
  std::ostringstream out;
  if (!r.tofu.splits.empty()) {
    out << report_csv(r.tofu);
  } else {
    out << "split,probability,rouge_l_recall,truth_ratio\n";
  }
  if (r.mia) {
    for (const auto& [a, v] : r.mia->auc)
      out << "mia,auc_" << attack_name(a) << ',' << fmt(v) << ",\n";
    out << "mia,exact_memorization_forget," << fmt(mean_of(r.mia->forget.exact_memorization))
        << ",\n";
    out << "mia,extraction_strength_forget," << fmt(mean_of(r.mia->forget.extraction_strength))
        << ",\n";
  }
  if (r.muse) {
    if (r.muse->verbmem) out << "muse,verbmem_rouge_l_f1," << fmt2(r.muse->verbmem->mean) << ",\n";
    if (r.muse->knowmem_forget)
      out << "muse,knowmem_forget_rouge_l_f1," << fmt2(r.muse->knowmem_forget->mean) << ",\n";
    if (r.muse->knowmem_retain)
      out << "muse,knowmem_retain_rouge_l_f1," << fmt2(r.muse->knowmem_retain->mean) << ",\n";
    if (r.muse->privleak) {
      out << "muse,privleak," << fmt2(r.muse->privleak->privleak) << ",\n";
      out << "muse,privleak_auc," << fmt(r.muse->privleak->auc) << ",\n";
    }
  }
  if (r.harmful) {
    out << "harmful,rate_after," << fmt(r.harmful->after.rate) << ",\n";
    if (r.harmful->before) out << "harmful,rate_before," << fmt(r.harmful->before->rate) << ",\n";
  }
  if (r.perplexity)
    out << "perplexity,perplexity," << fmt(r.perplexity->result.perplexity) << ",\n";
  return out.str();
}

EvalReport run_eval(const trainers::Config& config) {
  check_same_recipe_on_every_rank(config);  // under mpirun: one recipe, or no rank starts
  const EvalSettings c = settings_of(config);
  for (const SplitFile& k : kSplits)
    if (!(c.*k.path).empty()) io::require_regular_file(c.*k.path, k.key);
  const std::pair<const std::string&, const char*> files[] = {
      {c.mia_forget, "eval.mia.forget"},
      {c.mia_holdout, "eval.mia.holdout"},
      {c.perplexity, "eval.perplexity"},
      {c.verbmem, "eval.muse.verbmem"},
      {c.knowmem_forget, "eval.muse.knowmem_forget"},
      {c.knowmem_retain, "eval.muse.knowmem_retain"},
      {c.knowmem_forget_icl, "eval.muse.knowmem_forget_icl"},
      {c.knowmem_retain_icl, "eval.muse.knowmem_retain_icl"},
      {c.privleak_forget, "eval.muse.privleak_forget"},
      {c.privleak_holdout, "eval.muse.privleak_holdout"},
      {c.harmful_prompts, "eval.harmful.prompts"}};
  for (const auto& [path, key] : files)
    if (!path.empty()) io::require_regular_file(path, key);
  const std::pair<const std::string&, const char*> dirs[] = {
      {c.mia_reference, "eval.mia.reference"},
      {c.harmful_classifier, "eval.harmful.classifier"},
      {c.harmful_before, "eval.harmful.before"}};
  for (const auto& [path, key] : dirs)
    if (!path.empty()) io::require_directory(path, key);
  io::require_directory(c.model_path, "model.path");
  set_matmul_precision(c.bf16 ? MatmulPrecision::bf16 : MatmulPrecision::f32);
  const auto tok = tokenizer::load_tokenizer(c.tokenizer);
  const bool tofu = c.any_tofu();
  const std::vector<double> reference =
      tofu ? reference_truth_ratios(c, *tok) : std::vector<double>{};
  const auto model =
      models::load_causal_lm(c.model_path, Device::parse(c.device), {models::none_trainable});
  // A LoRA adapter on model.path (model.adapter) is evaluated attached, without merging.
  std::unique_ptr<models::LoraAdapter> adapter;
  if (!c.adapter.empty()) {
    adapter = models::LoraAdapter::load(*model, c.adapter, false);
    model->set_linear_fn(adapter->hook());
  }
  EvalReport rep;
  if (tofu) rep.tofu = run_tofu(*model, *tok, c, reference.empty() ? nullptr : &reference);
  rep.mia = run_mia(*model, *tok, c);
  rep.muse = run_muse(*model, *tok, c);
  rep.harmful = run_harmful(*model, *tok, c);
  rep.perplexity = run_perplexity(*model, *tok, c);
  if (dist::world().rank() == 0) {  // under mpirun every rank holds the whole report
    const fs::path out = c.output_dir;
    fs::create_directories(out);
    io::write_json_file((out / "eval.json").string(), report_json(rep, c.model_path));
    io::write_file_atomic((out / "eval.csv").string(), report_csv(rep));
  }
  return rep;
}

}  // namespace lethe::eval
