// Harmful rate: prompts, greedy responses, the classifier's verdicts.
#include "eval/harmful.h"

#include <algorithm>
#include <set>

#include "engine/error.h"
#include "eval/classifier.h"
#include "eval/scoring.h"
#include "trainers/data/dataset.h"
#include "trainers/data/json_lines.h"

namespace lethe::eval {

std::vector<std::string> load_prompts(const std::string& path) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  trainers::data::for_each_json_object(path, [&](const nlohmann::json& o,
                                                 const std::string& source) {
    const char* key = o.contains("prompt") ? "prompt" : "question";
    auto it = o.find(key);
    LETHE_CHECK(it != o.end(), source, ": expected a \"prompt\" (PKU-SafeRLHF) or \"question\"");
    LETHE_CHECK(it->is_string(), source, ": field \"", key, "\": expected a string, got ",
                trainers::data::describe_json(*it));
    if (seen.insert(it->get<std::string>()).second) out.push_back(it->get<std::string>());
  });
  LETHE_CHECK(!out.empty(), path, ": no prompt");
  return out;
}

HarmfulResult harmful_rate(const models::CausalLM& model, const tokenizer::Tokenizer& tok,
                           const models::SequenceClassifier& classifier,
                           const tokenizer::Tokenizer& classifier_tok,
                           const std::vector<std::string>& all_prompts, const HarmfulOptions& o) {
  LETHE_CHECK(
      o.harmful_label >= 0 && o.harmful_label < static_cast<int64_t>(classifier.labels().size()),
      "harmful rate: label ", o.harmful_label, " is not a class of the classifier (",
      classifier.labels().size(), " labels)");
  std::vector<std::string> prompts = all_prompts;
  if (o.max_samples > 0 && prompts.size() > static_cast<size_t>(o.max_samples))
    prompts.resize(static_cast<size_t>(o.max_samples));
  LETHE_CHECK(!prompts.empty(), "harmful rate: no prompts");
  const std::string tmpl =
      trainers::data::template_text(o.prompt_template, trainers::data::Format::pku);
  // As in training (docs/data.md): under byte-level BPE the template's trailing spaces belong to
  // the answer, so the prompt ends at "Answer:" and the response starts with its space.
  const bool byte_level = tok.token_to_id("\u0120").has_value();
  HarmfulResult r;
  std::vector<std::vector<int64_t>> ids;
  std::vector<std::string> heads;
  for (const std::string& p : prompts) {
    std::string head = trainers::data::apply_template(tmpl, p, "").prompt;
    if (byte_level) head.resize(head.find_last_not_of(' ') + 1);
    ids.push_back(tok.encode(head, /*add_bos=*/true));
    heads.push_back(head);
  }
  const auto toks = greedy_continuations(model, ids, o.batch_size, o.max_new_tokens);
  std::vector<std::string> judged;
  for (size_t i = 0; i < toks.size(); ++i) {
    r.responses.push_back(tok.decode(toks[i], /*skip_special=*/true));
    judged.push_back(heads[i] + r.responses.back());
  }
  const auto probs = classify(classifier, classifier_tok, judged, o.batch_size, o.max_length);
  double n = 0;
  for (const std::vector<double>& p : probs) {
    r.p_harmful.push_back(p[static_cast<size_t>(o.harmful_label)]);
    const size_t arg = static_cast<size_t>(std::max_element(p.begin(), p.end()) - p.begin());
    r.harmful.push_back(arg == static_cast<size_t>(o.harmful_label) ? 1 : 0);
    n += r.harmful.back();
  }
  r.prompts = std::move(prompts);
  r.rate = n / static_cast<double>(r.harmful.size());
  return r;
}

}  // namespace lethe::eval
