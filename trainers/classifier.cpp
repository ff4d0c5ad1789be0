// Classifier data, batched class probabilities and the training loop (docs/metrics.md, "Harmful
// rate").
#include "trainers/classifier.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <random>

#include "engine/autograd.h"
#include "engine/dist/communicator.h"
#include "engine/error.h"
#include "engine/io/file_util.h"
#include "engine/io/json.h"
#include "engine/lr_schedule.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/threads.h"
#include "models/tokenizer/files.h"
#include "trainers/batch.h"
#include "trainers/data/dataset.h"
#include "trainers/data/json_lines.h"
#include "trainers/progress.h"
#include "trainers/settings.h"

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

std::vector<std::string> split_labels(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = s.find(',', start);
    std::string part =
        s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    part.erase(0, part.find_first_not_of(' '));
    part.erase(part.find_last_not_of(' ') + 1);
    out.push_back(part);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
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

void encode_texts(const tokenizer::Tokenizer& tok, const std::vector<const std::string*>& texts,
                  int64_t max_length, int64_t pad, Tensor& ids, Tensor& mask) {
  std::vector<std::vector<int64_t>> rows;
  size_t T = 1;
  for (const std::string* t : texts) {
    std::vector<int64_t> r = tok.encode(*t, /*add_bos=*/true);
    if (r.size() > static_cast<size_t>(max_length)) r.resize(static_cast<size_t>(max_length));
    LETHE_CHECK(!r.empty(), "classifier: a text has no token (empty and no BOS)");
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
  const int64_t pad = std::max<int64_t>(0, model.backbone().pad_token_id());
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

ClassifierRun train_classifier(const Config& cfg, std::ostream& log, bool terminal) {
  const RunSettings s = settings_of(cfg);
  LETHE_CHECK(dist::world().size() == 1, s.source,
              ": model.head classifier trains on one process (not under mpirun)");
  set_cpu_threads(s.trainer.threads, "trainer.threads");
  set_matmul_precision(s.model.bf16 ? MatmulPrecision::bf16 : MatmulPrecision::f32);
  io::require_directory(s.model.path, "model.path");
  io::require_regular_file(s.data.train, "data.train");
  const Device device = Device::parse(s.model.device);
  const std::vector<std::string> labels = split_labels(s.model.labels);
  for (const std::string& l : labels)
    LETHE_CHECK(!l.empty(), s.source, ": model.labels \"", s.model.labels, "\" has an empty name");
  LETHE_CHECK(labels.size() >= 2, s.source, ": model.labels needs at least 2 names, got \"",
              s.model.labels, "\"");
  const std::string format = s.data.format == data::Format::pku     ? "pku"
                             : s.data.format == data::Format::jsonl ? "jsonl"
                                                                    : "";
  LETHE_CHECK(!format.empty(), s.source, ": model.head classifier reads data.format pku or jsonl");
  const std::vector<LabelledText> data = load_labelled_texts(
      s.data.train, format, s.data.prompt_template, static_cast<int64_t>(labels.size()));
  const auto tok = tokenizer::load_tokenizer(s.model.tokenizer);
  const uint64_t seed = s.trainer.seed;
  // A saved classifier continues; a language model gets a fresh head.
  const bool is_classifier = [&] {
    const nlohmann::json c = io::read_json_file((fs::path(s.model.path) / "config.json").string());
    return c.contains("id2label") && c.contains("architectures") &&
           c["architectures"].dump().find("SequenceClassification") != std::string::npos;
  }();
  std::unique_ptr<models::SequenceClassifier> model =
      is_classifier
          ? models::SequenceClassifier::load(s.model.path, device, true)
          : models::SequenceClassifier::from_causal_lm(s.model.path, labels, seed, device);
  LETHE_CHECK(model->labels().size() == labels.size(), s.model.path, ": the classifier has ",
              model->labels().size(), " labels, model.labels names ", labels.size());

  const int64_t B = s.trainer.batch_size, accum = s.trainer.grad_accum;
  const int64_t N = static_cast<int64_t>(data.size());
  const int64_t per_step = B * accum;
  const int64_t steps_per_epoch = (N + per_step - 1) / per_step;
  int64_t total = s.trainer.max_steps;
  if (total == 0)
    total = std::max<int64_t>(
        1,
        static_cast<int64_t>(std::ceil(s.trainer.epochs * static_cast<double>(steps_per_epoch))));
  int64_t warmup = s.trainer.warmup_steps;
  if (warmup == 0 && s.trainer.warmup_epochs > 0)
    warmup = std::min(total, static_cast<int64_t>(std::llround(
                                 s.trainer.warmup_epochs * static_cast<double>(steps_per_epoch))));
  LETHE_CHECK(s.trainer.adamw, s.source,
              ": model.head classifier trains with trainer.optimizer adamw, not sgd");
  const LrSchedule schedule(parse_lr_schedule_kind(s.trainer.scheduler), s.trainer.lr, warmup,
                            total);
  AdamWOptions ao;
  ao.lr = s.trainer.lr;
  ao.beta1 = s.trainer.beta1;
  ao.beta2 = s.trainer.beta2;
  ao.eps = s.trainer.eps;
  ao.weight_decay = s.trainer.weight_decay;
  ParameterStore& body = model->backbone().parameters();
  ParameterStore& head = model->head();
  AdamW opt_body(body, ao), opt_head(head, ao);
  opt_body.set_no_decay([&](const std::string& n) { return model->backbone().is_no_decay(n); });
  body.bind_grads(0);
  head.bind_grads(0);
  const int64_t pad = std::max<int64_t>(0, model->backbone().pad_token_id());
  const int64_t max_length = s.data.max_length;
  const double max_norm = s.trainer.max_grad_norm;

  ClassifierRun run;
  Progress progress(log, total, s.trainer.log_every, terminal);
  std::vector<size_t> order(static_cast<size_t>(N));
  int64_t cursor = N;  // position in the current epoch's order
  int64_t epoch = -1;
  for (int64_t step = 0; step < total; ++step) {
    body.zero_grads(0);
    head.zero_grads(0);
    // The step's samples: per_step of them, epochs reshuffled (seed, epoch) as they run out.
    std::vector<size_t> picked;
    while (static_cast<int64_t>(picked.size()) < std::min(per_step, N)) {
      if (cursor >= N) {
        ++epoch;
        std::iota(order.begin(), order.end(), size_t{0});
        if (s.data.shuffle) {
          std::mt19937_64 rng(seed * 1000003u + static_cast<uint64_t>(epoch));
          std::shuffle(order.begin(), order.end(), rng);
        }
        cursor = 0;
      }
      picked.push_back(order[static_cast<size_t>(cursor++)]);
    }
    double loss_sum = 0;
    for_each_range(picked.size(), B, [&](size_t begin, size_t end) {
      std::vector<const std::string*> texts;
      std::vector<int64_t> y;
      for (size_t j = begin; j < end; ++j) {
        texts.push_back(&data[picked[j]].text);
        y.push_back(data[picked[j]].label);
      }
      Tensor ids, mask;
      encode_texts(*tok, texts, max_length, pad, ids, mask);
      models::ForwardOptions fo;
      fo.training = true;
      fo.dropout_seed = seed + static_cast<uint64_t>(step) * 7919u + begin;
      const Tensor logits = model->logits(ids.to(device), mask.to(device), fo);
      CrossEntropyOptions ce;
      ce.reduction = Reduction::none;
      const Tensor per = cross_entropy(
          logits, Tensor::from_vector(y, {static_cast<int64_t>(y.size())}, DType::i64).to(device),
          ce);
      const Tensor loss = scale(sum(per), 1.0 / static_cast<double>(picked.size()));
      loss_sum += loss.to_double_vector()[0];
      loss.backward();
    });
    if (max_norm > 0) {
      const double nb = body.grad_norm(0), nh = head.grad_norm(0);
      const double total_norm = std::sqrt(nb * nb + nh * nh);
      if (total_norm > max_norm) {
        Tensor gb = body.flat_grad(0), gh = head.flat_grad(0);
        clip_grad_norm(gb, max_norm * nb / total_norm);
        clip_grad_norm(gh, max_norm * nh / total_norm);
      }
    }
    const double lr = schedule.lr_at(step);
    opt_body.set_lr(lr);
    opt_head.set_lr(lr);
    opt_body.step();
    opt_head.step();
    run.losses.push_back(loss_sum);
    progress.update(step + 1, {{"loss", loss_sum}}, lr, 0, 0);
    LETHE_CHECK(std::isfinite(loss_sum), "classifier training: the loss is ", loss_sum, " at step ",
                step + 1, " (lower trainer.lr?)");
  }
  progress.finish();
  run.steps = total;

  std::vector<std::string> texts;
  for (const LabelledText& d : data) texts.push_back(d.text);
  const auto probs = class_probabilities(*model, *tok, texts, B, max_length);
  int64_t right = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    const auto& p = probs[i];
    const int64_t arg = std::max_element(p.begin(), p.end()) - p.begin();
    right += arg == data[i].label;
  }
  run.train_accuracy = static_cast<double>(right) / static_cast<double>(N);

  const fs::path out = s.output.dir;
  fs::create_directories(out);
  model->save(out.string(), DType::f32);
  tokenizer::copy_tokenizer_files(s.model.tokenizer, out.string());
  nlohmann::ordered_json j;
  j["kind"] = "classifier";
  j["labels"] = labels;
  j["steps"] = total;
  j["losses"] = run.losses;
  j["train_accuracy"] = run.train_accuracy;
  j["examples"] = N;
  nlohmann::ordered_json conf;
  for (const auto& [k, v] : cfg.values()) conf[k] = v;
  j["config"] = conf;
  io::write_json_file((out / "run.json").string(), j);
  return run;
}

}  // namespace lethe::trainers
