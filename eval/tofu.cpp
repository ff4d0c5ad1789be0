// TOFU metrics on a CausalLM: batched answer scoring, greedy generation, the truth ratio.
#include "eval/tofu.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/autograd.h"
#include "engine/error.h"
#include "eval/parallel.h"
#include "eval/scoring.h"
#include "eval/stats.h"
#include "eval/text_metrics.h"
#include "trainers/batch.h"
#include "trainers/objectives.h"

namespace lethe::eval {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Length-normalised probability exp(−ℓ/|y|) of each sample's answer, in batches.
std::vector<double> answer_probabilities_local(const models::CausalLM& model,
                                               const std::vector<trainers::data::Sample>& samples,
                                               int64_t batch_size) {
  NoGradGuard ng;
  std::vector<double> out;
  out.reserve(samples.size());
  trainers::for_each_batch(
      samples, batch_size, model.batch_pad_id(), [&](const trainers::MicroBatch& mb, size_t) {
        const Tensor logits = model.logits(mb.ids, mb.mask);
        const std::vector<double> nll =
            trainers::sequence_nll(logits, mb.targets.to(model.device())).to_double_vector();
        for (size_t r = 0; r < mb.answer_tokens.size(); ++r) {
          const double n = static_cast<double>(mb.answer_tokens[r]);
          out.push_back(n > 0 ? std::exp(-nll[r] / n) : kNaN);
        }
      });
  return out;
}

// The same over the ranks of a data-parallel run (each its block, gathered in order).
std::vector<double> answer_probabilities(const models::CausalLM& model,
                                         const std::vector<trainers::data::Sample>& samples,
                                         int64_t batch_size) {
  const Block b = my_block(samples.size());
  return gather_items(answer_probabilities_local(model, block_of(samples, b), batch_size));
}

// Greedy answers to the samples' prompts (their unlabelled prefix), decoded without specials.
std::vector<std::string> greedy_answers(const models::CausalLM& model,
                                        const tokenizer::Tokenizer& tok,
                                        const std::vector<trainers::data::Sample>& samples,
                                        const TofuOptions& o) {
  std::vector<std::vector<int64_t>> prompts;
  for (const trainers::data::Sample& s : samples) prompts.push_back(trainers::sample_prompt(s));
  std::vector<std::string> out;
  for (const std::vector<int64_t>& t :
       greedy_continuations(model, prompts, o.batch_size, o.max_new_tokens))
    out.push_back(tok.decode(t, /*skip_special=*/true));
  return out;
}

const std::string& field(const trainers::data::Record& r, const char* name) {
  auto it = r.fields.find(name);
  LETHE_CHECK(it != r.fields.end(), r.source, ": TOFU record without \"", name, "\"");
  return it->second;
}

double mean_finite(const std::vector<double>& v) {
  double s = 0;
  int64_t n = 0;
  for (double x : v)
    if (std::isfinite(x)) s += x, ++n;
  return n ? s / static_cast<double>(n) : kNaN;
}

}  // namespace

const char* tofu_split_name(TofuSplit s) {
  switch (s) {
    case TofuSplit::forget: return "forget";
    case TofuSplit::retain: return "retain";
    case TofuSplit::real_authors: return "real_authors";
    case TofuSplit::world_facts: return "world_facts";
  }
  return "?";
}

TofuSplitResult evaluate_tofu_split(const models::CausalLM& model,
                                    const tokenizer::Tokenizer& tokenizer,
                                    const std::vector<trainers::data::Record>& all_records,
                                    TofuSplit split, const TofuOptions& o) {
  LETHE_CHECK(o.batch_size >= 1, "TOFU eval: batch size ", o.batch_size);
  std::vector<trainers::data::Record> records = all_records;
  if (o.max_samples > 0 && records.size() > static_cast<size_t>(o.max_samples))
    records.resize(static_cast<size_t>(o.max_samples));
  LETHE_CHECK(!records.empty(), "TOFU eval (", tofu_split_name(split), "): no records");

  trainers::data::SampleOptions so;
  so.format = trainers::data::Format::tofu;
  so.prompt_template = o.prompt_template;
  so.max_length = o.max_length;
  so.add_eos = false;  // the answer's probability is over its own tokens
  const std::string tmpl =
      trainers::data::template_text(o.prompt_template, trainers::data::Format::tofu);
  auto sample = [&](const std::string& q, const std::string& a) {
    return trainers::data::tokenize_sample(trainers::data::apply_template(tmpl, q, a), so,
                                           tokenizer);
  };

  const bool has_para = split == TofuSplit::forget || split == TofuSplit::retain;
  TofuSplitResult res;
  res.split = split;
  std::vector<trainers::data::Sample> answers, paras, perts;
  std::vector<size_t> pert_count;
  for (const trainers::data::Record& r : records) {
    const std::string& q = field(r, "question");
    const std::string& a = field(r, "answer");
    res.questions.push_back(q);
    res.answers.push_back(a);
    answers.push_back(sample(q, a));
    paras.push_back(has_para ? sample(q, field(r, "paraphrased_answer")) : answers.back());
    auto it = r.lists.find("perturbed_answer");
    LETHE_CHECK(it != r.lists.end() && !it->second.empty(), r.source,
                ": TOFU record without \"perturbed_answer\" (use the *_perturbed files)");
    pert_count.push_back(it->second.size());
    for (const std::string& p : it->second) perts.push_back(sample(q, p));
  }
  res.answer_prob = answer_probabilities(model, answers, o.batch_size);
  const std::vector<double> para_prob =
      has_para ? answer_probabilities(model, paras, o.batch_size) : res.answer_prob;
  const std::vector<double> pert_prob = answer_probabilities(model, perts, o.batch_size);

  size_t k = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    double log_sum = 0, sum = 0;
    for (size_t j = 0; j < pert_count[i]; ++j, ++k) {
      log_sum += std::log(pert_prob[k]);
      sum += pert_prob[k];
    }
    const double geo = std::exp(log_sum / static_cast<double>(pert_count[i]));
    res.truth_ratio.push_back(geo / para_prob[i]);
    res.probability.push_back(has_para ? res.answer_prob[i]
                                       : res.answer_prob[i] / (res.answer_prob[i] + sum));
  }
  if (o.generate) {
    res.generated = greedy_answers(model, tokenizer, answers, o);
    for (size_t i = 0; i < records.size(); ++i)
      res.rouge_recall.push_back(rouge_l(res.answers[i], res.generated[i], /*stem=*/true).recall);
  } else {
    res.generated.assign(records.size(), "");
    res.rouge_recall.assign(records.size(), kNaN);
  }
  res.prob = mean_finite(res.probability);
  res.rouge = mean_finite(res.rouge_recall);
  std::vector<double> t;
  for (double r : res.truth_ratio)
    t.push_back(split == TofuSplit::forget ? std::min(r, 1 / r) : std::max(0.0, 1 - r));
  res.truth = mean_finite(t);
  return res;
}

TofuSummary summarize_tofu(const std::vector<TofuSplitResult>& results,
                           const std::vector<double>* reference_forget) {
  TofuSummary s;
  std::vector<double> terms;
  for (const TofuSplitResult& r : results) {
    if (r.split == TofuSplit::forget) {
      if (reference_forget && !reference_forget->empty()) {
        const auto ks = ks_2samp(r.truth_ratio, *reference_forget);
        s.forget_quality = ks.pvalue;
        s.ks_statistic = ks.statistic;
      }
      continue;
    }
    for (double v : {r.prob, r.rouge, r.truth})
      if (std::isfinite(v)) terms.push_back(v);
  }
  s.utility_terms = static_cast<int>(terms.size());
  s.model_utility = terms.empty() ? 0.0 : harmonic_mean(terms);
  return s;
}

}  // namespace lethe::eval
