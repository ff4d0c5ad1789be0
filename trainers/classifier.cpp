// Classifier data, batched class probabilities, and its training through the shared loop
// (docs/metrics.md, "Harmful rate").
#include "trainers/classifier.h"

#include <algorithm>
#include <filesystem>
#include <limits>

#include "engine/autograd.h"
#include "engine/dist/communicator.h"
#include "engine/error.h"
#include "engine/io/file_util.h"
#include "engine/io/json.h"
#include "engine/ops.h"
#include "trainers/batch.h"
#include "trainers/data/dataset.h"
#include "trainers/data/json_lines.h"
#include "trainers/settings.h"
#include "trainers/trainer.h"

namespace fs = std::filesystem;

namespace lethe::trainers {

namespace {

const nlohmann::json& need(const nlohmann::json& o, const char* key, const std::string& source) {
  auto it = o.find(key);
  LETHE_CHECK(it != o.end(), source, ": field \"", key, "\" is missing");
  return *it;
}

std::string need_string(const nlohmann::json& o, const char* key, const std::string& source) {
  const nlohmann::json& v = need(o, key, source);
  LETHE_CHECK(v.is_string(), source, ": field \"", key, "\": expected a string, got ",
              data::describe_json(v));
  return v.get<std::string>();
}

std::string join(const std::string& tmpl, const std::string& q, const std::string& a) {
  const data::PromptAnswer pa = data::apply_template(tmpl, q, a);
  return pa.prompt + pa.answer;
}

}  // namespace

std::vector<LabelledText> load_labelled_texts(const std::string& path, const std::string& format,
                                              const std::string& prompt_template,
                                              int64_t num_labels) {
  LETHE_CHECK(format == "pku" || format == "jsonl", path, ": classifier data format \"", format,
              "\" (pku or jsonl)");
  const std::string tmpl =
      prompt_template.empty() ? data::default_prompt_template(data::Format::pku) : prompt_template;
  std::vector<LabelledText> out;
  data::for_each_json_object(path, [&](const nlohmann::json& o, const std::string& source) {
    if (format == "pku") {
      const std::string prompt = need_string(o, "prompt", source);
      for (int i = 0; i < 2; ++i) {
        const std::string r = "response_" + std::to_string(i);
        const std::string safe = "is_response_" + std::to_string(i) + "_safe";
        const nlohmann::json& s = need(o, safe.c_str(), source);
        LETHE_CHECK(s.is_boolean(), source, ": field \"", safe, "\": expected true or false, got ",
                    data::describe_json(s));
        out.push_back({join(tmpl, prompt, need_string(o, r.c_str(), source)), s.get<bool>() ? 0 : 1,
                       source + " (" + r + ")"});
      }
      return;
    }
    const nlohmann::json& l = need(o, "label", source);
    LETHE_CHECK(l.is_number_integer() && l.get<int64_t>() >= 0 && l.get<int64_t>() < num_labels,
                source, ": field \"label\": expected an integer in [0, ", num_labels, "), got ",
                data::describe_json(l));
    std::string text;
    if (o.contains("text")) {
      text = need_string(o, "text", source);
    } else {
      LETHE_CHECK(o.contains("prompt") && o.contains("response"), source,
                  ": expected \"text\" or \"prompt\" + \"response\" beside \"label\"");
      text = join(tmpl, need_string(o, "prompt", source), need_string(o, "response", source));
    }
    out.push_back({text, l.get<int64_t>(), source});
  });
  LETHE_CHECK(!out.empty(), path, ": no labelled text");
  return out;
}

std::vector<std::string> classifier_labels(const RunSettings& s) {
  std::vector<std::string> out;
  const std::string& list = s.model.labels;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = list.find(',', start);
    std::string part =
        list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    part.erase(0, part.find_first_not_of(' '));
    part.erase(part.find_last_not_of(' ') + 1);
    LETHE_CHECK(!part.empty(), s.source, ": model.labels \"", list, "\" has an empty name");
    out.push_back(part);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  LETHE_CHECK(out.size() >= 2, s.source, ": model.labels needs at least 2 names, got \"", list,
              "\"");
  return out;
}

std::vector<int64_t> classifier_ids(const tokenizer::Tokenizer& tok, const std::string& text,
                                    int64_t max_length) {
  std::vector<int64_t> r = tok.encode(text, /*add_bos=*/true);
  if (r.size() > static_cast<size_t>(max_length)) r.resize(static_cast<size_t>(max_length));
  LETHE_CHECK(!r.empty(), "classifier: a text has no token (empty and no BOS)");
  return r;
}

namespace {

const char* classifier_format(const RunSettings& s) {
  const char* f = s.data.format == data::Format::pku     ? "pku"
                  : s.data.format == data::Format::jsonl ? "jsonl"
                                                         : nullptr;
  LETHE_CHECK(f != nullptr, s.source, ": model.head classifier reads data.format pku or jsonl");
  return f;
}

}  // namespace

std::vector<data::Sample> classifier_samples(const std::string& path, const RunSettings& s,
                                             const tokenizer::Tokenizer& tok, int64_t max_length) {
  const std::vector<LabelledText> texts =
      load_labelled_texts(path, classifier_format(s), s.data.prompt_template,
                          static_cast<int64_t>(classifier_labels(s).size()));
  std::vector<data::Sample> out;
  out.reserve(texts.size());
  for (const LabelledText& t : texts) {
    data::Sample x;
    x.input_ids = classifier_ids(tok, t.text, max_length);
    x.labels.assign(x.input_ids.size(), -100);
    x.class_label = t.label;
    out.push_back(std::move(x));
  }
  return out;
}

void encode_texts(const tokenizer::Tokenizer& tok, const std::vector<const std::string*>& texts,
                  int64_t max_length, int64_t pad, Tensor& ids, Tensor& mask) {
  std::vector<std::vector<int64_t>> rows;
  size_t T = 1;
  for (const std::string* t : texts) {
    std::vector<int64_t> r = classifier_ids(tok, *t, max_length);
    T = std::max(T, r.size());
    rows.push_back(std::move(r));
  }
  const size_t B = rows.size();
  std::vector<int64_t> id(B * T, pad), m(B * T, 0);
  for (size_t b = 0; b < B; ++b)
    for (size_t t = 0; t < rows[b].size(); ++t) {
      id[b * T + t] = rows[b][t];
      m[b * T + t] = 1;
    }
  const Shape s{static_cast<int64_t>(B), static_cast<int64_t>(T)};
  ids = Tensor::from_vector(id, s, DType::i64);
  mask = Tensor::from_vector(m, s, DType::i64);
}

std::vector<std::vector<double>> class_probabilities(const models::SequenceClassifier& model,
                                                     const tokenizer::Tokenizer& tok,
                                                     const std::vector<std::string>& texts,
                                                     int64_t batch_size, int64_t max_length) {
  LETHE_CHECK(batch_size >= 1, "classify: batch size ", batch_size);
  NoGradGuard ng;
  std::vector<std::vector<double>> out;
  const int64_t pad = model.backbone().batch_pad_id();
  const size_t L = model.labels().size();
  for_each_range(texts.size(), batch_size, [&](size_t begin, size_t end) {
    std::vector<const std::string*> batch;
    for (size_t j = begin; j < end; ++j) batch.push_back(&texts[j]);
    Tensor ids, mask;
    encode_texts(tok, batch, max_length, pad, ids, mask);
    const Device d = model.backbone().device();
    const std::vector<double> p = softmax(model.logits(ids.to(d), mask.to(d))).to_double_vector();
    for (size_t b = 0; b < batch.size(); ++b)
      out.emplace_back(p.begin() + b * L, p.begin() + (b + 1) * L);
  });
  return out;
}

ClassifierRun train_classifier(const Config& cfg, std::ostream& log, bool terminal,
                               int64_t stop_after) {
  TrainerOptions to;
  to.log = &log;
  to.terminal = terminal;
  to.stop_after = stop_after;
  Trainer trainer(cfg, to);
  ClassifierRun run;
  run.steps_this_run = trainer.run();
  for (const StepRecord& r : trainer.steps()) run.losses.push_back(r.losses.at(0));
  run.steps = static_cast<int64_t>(run.losses.size());
  run.train_accuracy = std::numeric_limits<double>::quiet_NaN();
  if (dist::world().rank() != 0 || run.steps < trainer.total_steps()) return run;

  // The accuracy on data.train of the classifier output.dir holds (the best evaluated one with
  // output.keep: best), added to its run.json.
  const RunSettings s = settings_of(cfg);
  const fs::path out = s.output.dir;
  const std::string run_path = (out / "run.json").string();
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(io::read_text_file(run_path));
  std::unique_ptr<models::SequenceClassifier> saved;
  if (j.contains("best_step"))
    saved = models::SequenceClassifier::load(out.string(), trainer.model().device());
  const models::SequenceClassifier& model = saved ? *saved : *trainer.classifier();
  const std::vector<LabelledText> data =
      load_labelled_texts(s.data.train, classifier_format(s), s.data.prompt_template,
                          static_cast<int64_t>(model.labels().size()));
  std::vector<std::string> texts;
  for (const LabelledText& d : data) texts.push_back(d.text);
  const auto tok = tokenizer::load_tokenizer(s.model.tokenizer);
  const int64_t max_length = std::min(s.data.max_length, model.backbone().max_positions());
  const auto probs = class_probabilities(model, *tok, texts, s.trainer.batch_size, max_length);
  int64_t right = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    const auto& p = probs[i];
    right += std::max_element(p.begin(), p.end()) - p.begin() == data[i].label;
  }
  run.train_accuracy = static_cast<double>(right) / static_cast<double>(data.size());
  j["classifier"]["train_accuracy"] = run.train_accuracy;
  io::write_json_file(run_path, j);
  return run;
}

}  // namespace lethe::trainers
