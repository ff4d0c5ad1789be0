// See settings.h: the one place evaluation's keys are read by name.
#include "eval/settings.h"

namespace lethe::eval {

EvalSettings settings_of(const trainers::Config& c) {
  EvalSettings s;
  auto path = [&](const char* key) { return c.str_or(key, ""); };
  s.source = c.source();
  s.model_path = c.str("model.path");
  s.device = c.str("model.device");
  s.tokenizer = c.str_or("model.tokenizer", s.model_path);
  s.adapter = path("model.adapter");
  s.bf16 = c.str("model.dtype") == "bf16";
  s.output_dir = c.str("output.dir");
  s.prompt_template = c.str("data.template");
  s.max_length = c.integer("data.max_length");
  s.tokenization = c.str("data.tokenization") == "joint" ? trainers::data::Tokenization::joint
                                                         : trainers::data::Tokenization::separate;
  s.text_format = trainers::data::parse_format(c.str("eval.format"));
  s.batch_size = c.integer("eval.batch_size");
  s.max_new_tokens = c.integer("eval.max_new_tokens");
  s.max_samples = c.integer("eval.max_samples");
  s.tofu_forget = path("eval.forget");
  s.tofu_retain = path("eval.retain");
  s.real_authors = path("eval.real_authors");
  s.world_facts = path("eval.world_facts");
  s.retain_reference = path("eval.retain_reference");
  s.every_steps = c.integer("eval.every_steps");
  s.tofu_metrics = c.str("eval.metrics") == "tofu";
  s.mia_forget = path("eval.mia.forget");
  s.mia_holdout = path("eval.mia.holdout");
  s.mia_reference = path("eval.mia.reference");
  s.mia_k = c.num("eval.mia.k");
  s.verbmem = path("eval.muse.verbmem");
  s.knowmem_forget = path("eval.muse.knowmem_forget");
  s.knowmem_retain = path("eval.muse.knowmem_retain");
  s.knowmem_forget_icl = path("eval.muse.knowmem_forget_icl");
  s.knowmem_retain_icl = path("eval.muse.knowmem_retain_icl");
  s.privleak_forget = path("eval.muse.privleak_forget");
  s.privleak_holdout = path("eval.muse.privleak_holdout");
  s.auc_retrain = c.num("eval.muse.auc_retrain");
  s.verbmem_max_new_tokens = c.integer("eval.muse.verbmem_max_new_tokens");
  s.knowmem_max_new_tokens = c.integer("eval.muse.knowmem_max_new_tokens");
  s.harmful_prompts = path("eval.harmful.prompts");
  s.harmful_classifier = path("eval.harmful.classifier");
  s.harmful_before = path("eval.harmful.before");
  s.harmful_label = c.integer("eval.harmful.label");
  s.harmful_max_new_tokens = c.integer("eval.harmful.max_new_tokens");
  s.perplexity = path("eval.perplexity");
  return s;
}

}  // namespace lethe::eval
