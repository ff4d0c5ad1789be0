// MUSE metrics: prompts built as MUSE builds them, greedy continuations, ROUGE-L F1, Min-K % AUC.
#include "eval/muse.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"
#include "eval/scoring.h"
#include "eval/stats.h"
#include "eval/text_metrics.h"

namespace lethe::eval {

namespace {

constexpr const char* kVerb = "\"prompt\" and \"gt\"";
constexpr const char* kQa = "\"question\" and \"answer\"";

// The MUSE reader maps {"prompt","gt"} and {"question","answer"} to question/answer; a record
// with only "text" has neither.
const std::string& field(const trainers::data::Record& r, const char* name, const char* what,
                         const char* expected) {
  auto it = r.fields.find(name);
  LETHE_CHECK(it != r.fields.end(), r.source, ": a MUSE ", what, " record needs ", expected,
              " (this one has only \"text\")");
  return it->second;
}

std::vector<trainers::data::Record> first_n(const std::vector<trainers::data::Record>& records,
                                            int64_t n) {
  if (n <= 0 || records.size() <= static_cast<size_t>(n)) return records;
  return {records.begin(), records.begin() + n};
}

}  // namespace

std::string knowmem_cut(std::string s) {
  const size_t blank = s.find("\n\n");
  if (blank != std::string::npos) s.resize(blank);
  const size_t q = s.find("Question");
  if (q != std::string::npos) s.resize(q);
  return s;
}

GenerationScores muse_verbmem(const models::CausalLM& model, const tokenizer::Tokenizer& tok,
                              const std::vector<trainers::data::Record>& all,
                              const MuseOptions& o) {
  const std::vector<trainers::data::Record> records = first_n(all, o.max_samples);
  LETHE_CHECK(!records.empty(), "MUSE VerbMem: no records");
  std::vector<std::vector<int64_t>> prompts;
  std::vector<std::string> prompt_texts, targets;
  for (const trainers::data::Record& r : records) {
    const std::string& prompt = field(r, "question", "VerbMem", kVerb);
    const std::string& gt = field(r, "answer", "VerbMem", kVerb);
    prompts.push_back(tok.encode(prompt, /*add_bos=*/true));
    std::vector<int64_t> gt_ids = tok.encode(gt, /*add_bos=*/false);
    if (gt_ids.size() > static_cast<size_t>(o.verbmem_max_new_tokens))
      gt_ids.resize(static_cast<size_t>(o.verbmem_max_new_tokens));
    prompt_texts.push_back(prompt);
    targets.push_back(tok.decode(gt_ids, /*skip_special=*/true));
  }
  GenerationScores g;
  g.prompts = std::move(prompt_texts);
  g.targets = std::move(targets);
  const auto toks = greedy_continuations(model, prompts, o.batch_size, o.verbmem_max_new_tokens);
  double sum = 0;
  for (size_t i = 0; i < toks.size(); ++i) {
    g.generated.push_back(tok.decode(toks[i], /*skip_special=*/true));
    g.rouge_f1.push_back(100.0 * rouge_l(g.targets[i], g.generated[i], false).fmeasure);
    sum += g.rouge_f1.back();
  }
  g.mean = sum / static_cast<double>(g.rouge_f1.size());
  return g;
}

GenerationScores muse_knowmem(const models::CausalLM& model, const tokenizer::Tokenizer& tok,
                              const std::vector<trainers::data::Record>& all,
                              const std::vector<trainers::data::Record>& in_context,
                              const MuseOptions& o) {
  const std::vector<trainers::data::Record> records = first_n(all, o.max_samples);
  LETHE_CHECK(!records.empty(), "MUSE KnowMem: no records");
  std::string shots;
  for (const trainers::data::Record& r : in_context)
    shots += "Question: " + field(r, "question", "KnowMem in-context", kQa) +
             "\nAnswer: " + field(r, "answer", "KnowMem in-context", kQa) + "\n\n";
  std::vector<std::vector<int64_t>> prompts;
  GenerationScores g;
  for (const trainers::data::Record& r : records) {
    const std::string prompt =
        shots + "Question: " + field(r, "question", "KnowMem", kQa) + "\nAnswer: ";
    prompts.push_back(tok.encode(prompt, /*add_bos=*/true));
    g.prompts.push_back(prompt);
    g.targets.push_back(field(r, "answer", "KnowMem", kQa));
  }
  const auto toks = greedy_continuations(model, prompts, o.batch_size, o.knowmem_max_new_tokens);
  double sum = 0;
  for (size_t i = 0; i < toks.size(); ++i) {
    g.generated.push_back(knowmem_cut(tok.decode(toks[i], /*skip_special=*/true)));
    g.rouge_f1.push_back(100.0 * rouge_l(g.targets[i], g.generated[i], false).fmeasure);
    sum += g.rouge_f1.back();
  }
  g.mean = sum / static_cast<double>(g.rouge_f1.size());
  return g;
}

PrivLeakResult muse_privleak(const models::CausalLM& model, const tokenizer::Tokenizer& tok,
                             const std::vector<trainers::data::Record>& forget,
                             const std::vector<trainers::data::Record>& holdout,
                             const MuseOptions& o) {
  LETHE_CHECK(o.auc_retrain > 0 && o.auc_retrain <= 1, "MUSE PrivLeak: auc_retrain ", o.auc_retrain,
              " is not in (0, 1]");
  trainers::data::SampleOptions so;
  so.format = trainers::data::Format::muse;
  so.max_length = o.max_length;
  so.add_eos = false;
  auto scores = [&](const std::vector<trainers::data::Record>& all, const char* which) {
    const std::vector<trainers::data::Record> records = first_n(all, o.max_samples);
    LETHE_CHECK(!records.empty(), "MUSE PrivLeak: the ", which, " set has no records");
    const std::vector<trainers::data::Sample> samples =
        trainers::data::make_samples(records, so, tok);
    std::vector<double> out;
    for (const TokenStats& s : token_stats(model, samples, o.batch_size, false)) {
      std::vector<double> lp = s.logprob;
      const size_t m =
          std::max<size_t>(1, static_cast<size_t>(o.k * static_cast<double>(lp.size())));
      std::partial_sort(lp.begin(), lp.begin() + static_cast<std::ptrdiff_t>(m), lp.end());
      double sum = 0;
      for (size_t i = 0; i < m; ++i) sum += lp[i];
      out.push_back(sum / static_cast<double>(m));
    }
    return out;
  };
  PrivLeakResult r;
  r.forget_scores = scores(forget, "forget");
  r.holdout_scores = scores(holdout, "holdout");
  r.auc = roc_auc(r.forget_scores, r.holdout_scores);
  r.auc_retrain = o.auc_retrain;
  r.privleak = (r.auc - o.auc_retrain) / o.auc_retrain * 100.0;
  return r;
}

}  // namespace lethe::eval
