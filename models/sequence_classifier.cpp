// SequenceClassifier: last-token pooling, the score head, HF-layout save and load.
#include "models/sequence_classifier.h"

#include <cstdio>
#include <filesystem>
#include <map>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/io/file_util.h"
#include "engine/io/json.h"
#include "engine/io/safetensors.h"
#include "engine/ops.h"

namespace fs = std::filesystem;

namespace lethe::models {

namespace {

constexpr const char* kScore = "score.weight";

std::unique_ptr<CausalLM> load_backbone(const std::string& dir, Device device, bool trainable,
                                        int64_t num_labels) {
  auto warn = [dir](const std::string& message) {
    if (message.find(kScore) == std::string::npos)
      std::fprintf(stderr, "warning: %s\n", message.c_str());
  };
  ModelOptions mo;
  mo.trainable = trainable ? TrainablePredicate(all_trainable) : TrainablePredicate(none_trainable);
  mo.num_labels = num_labels;
  return load_causal_lm(dir, device, mo, warn);
}

}  // namespace

Tensor last_token_states(const Tensor& hidden, const Tensor& mask) {
  LETHE_CHECK(mask.defined() && mask.dim() == 2, "last_token_states: mask must be [B, T]");
  LETHE_CHECK(hidden.dim() == 3 && hidden.size(0) == mask.size(0) && hidden.size(1) == mask.size(1),
              "last_token_states: hidden ", hidden.str(), " does not match mask ", mask.str());
  const int64_t B = mask.size(0), T = mask.size(1);
  const std::vector<int64_t> m = mask.to_int_vector();
  std::vector<float> pick(static_cast<size_t>(B * T), 0.0f);
  for (int64_t b = 0; b < B; ++b) {
    int64_t last = -1;
    for (int64_t t = 0; t < T; ++t)
      if (m[b * T + t] != 0) last = t;
    LETHE_CHECK(last >= 0, "SequenceClassifier: row ", b, " has no token");
    pick[b * T + last] = 1.0f;
  }
  const Tensor sel = Tensor::from_vector(pick, {B, T, 1}, DType::f32).to(hidden.device());
  return sum(hidden * sel, 1);  // [B, E]
}

SequenceClassifier::SequenceClassifier(std::unique_ptr<CausalLM> backbone,
                                       std::vector<std::string> labels, uint64_t seed,
                                       bool init_head)
    : backbone_(std::move(backbone)), labels_(std::move(labels)) {
  LETHE_CHECK(backbone_ != nullptr, "SequenceClassifier: no backbone");
  LETHE_CHECK(labels_.size() >= 2, "SequenceClassifier: needs at least 2 labels, got ",
              labels_.size());
  LETHE_CHECK(backbone_->parameters().contains(kScore), "SequenceClassifier: the backbone has no ",
              kScore, " (build it with ModelOptions::num_labels)");
  const Tensor w = score_weight();
  const int64_t L = static_cast<int64_t>(labels_.size());
  LETHE_CHECK(w.dim() == 2 && w.size(0) == L, "SequenceClassifier: ", kScore, " is ", w.str(),
              ", expected ", L, " rows");
  if (!init_head) return;
  NoGradGuard ng;
  Tensor dst = w;
  dst.copy_(Tensor::randn({L, w.size(1)}, seed, 0.0, 0.02, DType::f32, backbone_->device()));
}

Tensor SequenceClassifier::score_weight() const {
  return backbone_->parameters().get(kScore);
}

bool SequenceClassifier::is_classifier_dir(const std::string& dir) {
  const nlohmann::json c = io::read_json_file((fs::path(dir) / "config.json").string());
  return c.is_object() && c.contains("id2label") && c.contains("architectures") &&
         c["architectures"].dump().find("SequenceClassification") != std::string::npos;
}

std::unique_ptr<SequenceClassifier> SequenceClassifier::from_causal_lm(
    const std::string& dir, std::vector<std::string> labels, uint64_t seed, Device device) {
  const int64_t L = static_cast<int64_t>(labels.size());
  return std::make_unique<SequenceClassifier>(load_backbone(dir, device, true, L),
                                              std::move(labels), seed, true);
}

std::unique_ptr<SequenceClassifier> SequenceClassifier::load(const std::string& dir, Device device,
                                                             bool trainable) {
  io::require_directory(dir, "classifier");
  const std::string config_path = (fs::path(dir) / "config.json").string();
  const nlohmann::json config = io::read_json_file(config_path);
  auto id2label = config.find("id2label");
  LETHE_CHECK(id2label != config.end() && id2label->is_object() && id2label->size() >= 2,
              config_path,
              ": a classifier's config.json needs \"id2label\" with at least 2 labels (is this "
              "a language model, not a classifier?)");
  std::vector<std::string> labels(id2label->size());
  for (auto it = id2label->begin(); it != id2label->end(); ++it) {
    size_t index = labels.size();
    try {
      index = std::stoul(it.key());
    } catch (const std::exception&) {
    }
    LETHE_CHECK(index < labels.size() && labels[index].empty() && it.value().is_string(),
                config_path, ": id2label must map \"0\".. \"", labels.size() - 1,
                "\" to names, got key \"", it.key(), "\"");
    labels[index] = it.value().get<std::string>();
  }
  const int64_t L = static_cast<int64_t>(labels.size());
  auto model = std::make_unique<SequenceClassifier>(load_backbone(dir, device, trainable, L),
                                                    labels, 0, false);
  const io::SafetensorsIndex ckpt = io::open_checkpoint(dir);
  const io::TensorInfo* t = ckpt.find(kScore);
  LETHE_CHECK(t != nullptr, ckpt.path(), ": no tensor \"", kScore,
              "\" (a classifier's head; this checkpoint is a language model)");
  Tensor w = model->score_weight();
  const Shape want = w.shape();
  LETHE_CHECK(t->shape == want, ckpt.path(), ": tensor \"", kScore, "\" has shape ",
              shape_str(t->shape), ", expected ", shape_str(want),
              " (labels × hidden size from config.json)");
  const Tensor src = Tensor::from_borrowed(const_cast<void*>(t->data), Shape(t->shape), t->dtype,
                                           ckpt.shard_of(kScore).keepalive());
  NoGradGuard ng;
  w.copy_(src.to(DType::f32).to(w.device()));
  return model;
}

Tensor SequenceClassifier::logits(const Tensor& ids, const Tensor& mask,
                                  const ForwardOptions& options) const {
  LETHE_CHECK(mask.defined() && mask.dim() == 2, "SequenceClassifier: mask must be [B, T]");
  const Tensor hidden = backbone_->hidden_states(ids, mask, options);  // [B, T, E]
  return linear(last_token_states(hidden, mask), score_weight());
}

void SequenceClassifier::save(const std::string& dir, DType dtype) const {
  backbone_->save(dir, dtype);
  const std::string config_path = (fs::path(dir) / "config.json").string();
  nlohmann::ordered_json config = nlohmann::ordered_json::parse(io::read_text_file(config_path));
  // The backbone wrote its *ForCausalLM; the classifier is the family's *ForSequenceClassification.
  std::string arch = config.contains("architectures") && config["architectures"].is_array() &&
                             !config["architectures"].empty() &&
                             config["architectures"][0].is_string()
                         ? config["architectures"][0].get<std::string>()
                         : std::string("OPTForCausalLM");
  const std::string causal = "ForCausalLM";
  if (arch.size() > causal.size() && arch.ends_with(causal))
    arch = arch.substr(0, arch.size() - causal.size()) + "ForSequenceClassification";
  config["architectures"] = {arch};
  nlohmann::ordered_json id2label, label2id;
  for (size_t i = 0; i < labels_.size(); ++i) {
    id2label[std::to_string(i)] = labels_[i];
    label2id[labels_[i]] = static_cast<int64_t>(i);
  }
  config["id2label"] = id2label;
  config["label2id"] = label2id;
  io::write_json_file(config_path, config);

  // Add score.weight to the backbone's file: read it back, write all tensors again atomically.
  const std::string st_path = (fs::path(dir) / "model.safetensors").string();
  const Tensor score = score_weight().to(Device::cpu()).to(dtype).contiguous();
  std::vector<io::TensorToWrite> tensors;
  {
    const io::SafetensorsFile file = io::SafetensorsFile::open(st_path);
    for (const io::TensorInfo& t : file.tensors())
      tensors.push_back({t.name, t.dtype, t.shape, t.data});
    tensors.push_back({kScore, dtype, score.shape(), score.data_ptr()});
    io::write_safetensors(st_path, tensors,
                          file.metadata().empty()
                              ? std::map<std::string, std::string>{{"format", "pt"}}
                              : file.metadata());
  }
}

}  // namespace lethe::models
