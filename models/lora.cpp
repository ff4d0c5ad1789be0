// LoRA adapters: declaration and initialisation, the hook, PEFT-layout save/load, merge.
#include "models/lora.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/io/file_util.h"
#include "engine/io/json.h"
#include "engine/io/safetensors.h"
#include "engine/ops.h"

namespace fs = std::filesystem;

namespace lethe::models {

namespace {

std::string last_component(const std::string& layer) {
  const size_t dot = layer.rfind('.');
  return dot == std::string::npos ? layer : layer.substr(dot + 1);
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

std::string a_name(const std::string& layer) {
  return layer + ".lora_A.weight";
}
std::string b_name(const std::string& layer) {
  return layer + ".lora_B.weight";
}

constexpr uint64_t kDropoutStream = 0x9E3779B97F4A7C15ull;  // apart from the model's own dropout

}  // namespace

double LoraConfig::scaling() const {
  return use_rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
}

std::vector<std::string> lora_target_names(const CausalLM& model) {
  std::vector<std::string> out;
  for (const std::string& l : model.linear_layers()) {
    const std::string n = last_component(l);
    if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
  }
  return out;
}

std::string LoraAdapter::peft_name(const std::string& layer, bool a) const {
  return "base_model.model." + hf_prefix_ + (a ? a_name(layer) : b_name(layer));
}

void LoraAdapter::declare(const CausalLM& model, bool trainable) {
  LETHE_CHECK(config_.r >= 1, "LoRA: r must be at least 1, got ", config_.r);
  LETHE_CHECK(std::isfinite(config_.alpha) && config_.alpha > 0, "LoRA: alpha must be > 0, got ",
              config_.alpha);
  LETHE_CHECK(config_.dropout >= 0 && config_.dropout < 1, "LoRA: dropout must be in [0, 1), got ",
              config_.dropout);
  LETHE_CHECK(!config_.targets.empty(), "LoRA: no target layers");
  hf_prefix_ = model.hf_prefix();
  const std::vector<std::string> valid = lora_target_names(model);
  for (const std::string& t : config_.targets)
    LETHE_CHECK(std::find(valid.begin(), valid.end(), t) != valid.end(), "LoRA: unknown target \"",
                t, "\"; the ", model.family(), " model's linear layers are ", join(valid));
  for (const std::string& layer : model.linear_layers()) {
    if (std::find(config_.targets.begin(), config_.targets.end(), last_component(layer)) ==
        config_.targets.end())
      continue;
    const Shape w = model.parameters().get(layer + ".weight").shape();
    // Bounded before anything is allocated: a rank above min(out, in) adds nothing a full
    // update would not, and a huge one would only reach the allocator.
    LETHE_CHECK(config_.r <= std::min(w[0], w[1]), "LoRA: r = ", config_.r, " exceeds ", layer,
                "'s smaller dimension ", std::min(w[0], w[1]), " (a ", w[0], " x ", w[1],
                " weight); r must be at most that");
    index_[layer] = layers_.size();
    layers_.push_back(layer);
    base_shapes_[layer] = w;
    params_.add(a_name(layer), {config_.r, w[1]}, trainable);
    params_.add(b_name(layer), {w[0], config_.r}, trainable);
  }
  params_.allocate(model.device());
}

LoraAdapter::LoraAdapter(const CausalLM& model, LoraConfig config, uint64_t seed, bool trainable)
    : config_(std::move(config)) {
  LETHE_CHECK(config_.init == "kaiming" || config_.init == "gaussian", "LoRA: init \"",
              config_.init, "\" (kaiming or gaussian)");
  declare(model, trainable);
  NoGradGuard ng;
  uint64_t offset = 0;
  for (const std::string& layer : layers_) {
    Tensor a = params_.get(a_name(layer));
    const double in = static_cast<double>(a.size(1));
    if (config_.init == "kaiming") {
      const double bound = 1.0 / std::sqrt(in);  // kaiming_uniform_(a=√5): √(6 / (6·in))
      a.copy_(Tensor::rand(a.shape(), seed, -bound, bound, DType::f32, a.device(), offset));
    } else {
      a.copy_(Tensor::randn(a.shape(), seed, 0.0, 1.0 / static_cast<double>(config_.r), DType::f32,
                            a.device(), offset));
    }
    offset += static_cast<uint64_t>(a.numel());
    params_.get(b_name(layer)).fill_(0.0);
  }
}

std::unique_ptr<LoraAdapter> LoraAdapter::load(const CausalLM& model, const std::string& dir,
                                               bool trainable) {
  io::require_directory(dir, "LoRA adapter");
  const std::string cpath = (fs::path(dir) / "adapter_config.json").string();
  io::require_regular_file(cpath, "adapter_config.json");
  const nlohmann::json c = io::read_json_file(cpath);
  auto field = [&](const char* key) -> const nlohmann::json& {
    auto it = c.find(key);
    LETHE_CHECK(it != c.end(), cpath, ": field \"", key, "\" is missing");
    return *it;
  };
  auto is_off = [&](const char* key) {
    auto it = c.find(key);
    return it == c.end() || it->is_null() || (it->is_boolean() && !it->get<bool>()) ||
           ((it->is_object() || it->is_array()) && it->empty());
  };
  LETHE_CHECK(field("peft_type").is_string() && field("peft_type").get<std::string>() == "LORA",
              cpath, ": peft_type ", field("peft_type").dump(), " is not \"LORA\"");
  std::unique_ptr<LoraAdapter> ad(new LoraAdapter());
  try {
    // A rank is a whole number (4.5 is not rank 4); the sizes against the layers in declare().
    const nlohmann::json& r = field("r");
    LETHE_CHECK(r.is_number_integer(), cpath, ": field \"r\" must be a whole number, got ",
                r.dump());
    LETHE_CHECK(r.is_number_unsigned() && r.get<uint64_t>() >= 1 &&
                    r.get<uint64_t>() <= (uint64_t{1} << 30),
                cpath, ": field \"r\" = ", r.dump(), " is outside [1, 2^30]");
    ad->config_.r = r.get<int64_t>();
    const nlohmann::json& alpha = field("lora_alpha");
    LETHE_CHECK(alpha.is_number(), cpath, ": field \"lora_alpha\" must be a number, got ",
                alpha.dump());
    ad->config_.alpha = alpha.get<double>();
    if (c.contains("lora_dropout") && !c["lora_dropout"].is_null())
      LETHE_CHECK(c["lora_dropout"].is_number(), cpath,
                  ": field \"lora_dropout\" must be a number, got ", c["lora_dropout"].dump());
    ad->config_.dropout = c.value("lora_dropout", 0.0);
    const nlohmann::json& t = field("target_modules");
    LETHE_CHECK(t.is_array(), cpath, ": target_modules must be a list of layer names (a regex, ",
                t.dump(), ", is not supported)");
    ad->config_.targets = t.get<std::vector<std::string>>();
    std::sort(ad->config_.targets.begin(), ad->config_.targets.end());
    ad->config_.use_rslora = c.value("use_rslora", false);
    if (c.contains("base_model_name_or_path") && c["base_model_name_or_path"].is_string())
      ad->config_.base_model = c["base_model_name_or_path"].get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(cpath + ": " + e.what());
  }
  for (const char* key :
       {"use_dora", "fan_in_fan_out", "layers_to_transform", "layers_pattern", "rank_pattern",
        "alpha_pattern", "modules_to_save", "exclude_modules", "target_parameters",
        "layer_replication", "trainable_token_indices", "lora_bias", "use_qalora", "use_bdlora"})
    LETHE_CHECK(is_off(key), cpath, ": ", key, " = ", c[key].dump(),
                " is not supported by lethe's LoRA");
  LETHE_CHECK(!c.contains("bias") || c["bias"] == "none", cpath, ": bias = ", c["bias"].dump(),
              " is not supported (only \"none\")");
  ad->declare(model, trainable);

  const std::string wpath = (fs::path(dir) / "adapter_model.safetensors").string();
  io::require_regular_file(wpath, "adapter_model.safetensors");
  const io::SafetensorsFile f = io::SafetensorsFile::open(wpath);
  std::map<std::string, std::string> wanted;  // PEFT name → store name
  for (const std::string& layer : ad->layers_) {
    wanted[ad->peft_name(layer, true)] = a_name(layer);
    wanted[ad->peft_name(layer, false)] = b_name(layer);
  }
  for (const io::TensorInfo& t : f.tensors())
    LETHE_CHECK(wanted.count(t.name), wpath, ": unexpected tensor \"", t.name,
                "\" (not the lora_A/lora_B of a layer the config targets: ",
                join(ad->config_.targets), ")");
  NoGradGuard ng;
  for (const auto& [peft, store] : wanted) {
    const io::TensorInfo* t = f.find(peft);
    LETHE_CHECK(t != nullptr, wpath, ": tensor \"", peft, "\" is missing");
    Tensor dst = ad->params_.get(store);
    LETHE_CHECK(t->dtype == DType::f32 || t->dtype == DType::f16 || t->dtype == DType::bf16 ||
                    t->dtype == DType::f64,
                wpath, ": tensor \"", peft, "\" is not a float tensor");
    LETHE_CHECK(Shape(t->shape) == dst.shape(), wpath, ": tensor \"", peft, "\" has shape ",
                shape_str(t->shape), ", the model needs ", shape_str(dst.shape()),
                " (an adapter for another base model?)");
    const Tensor src =
        Tensor::from_borrowed(const_cast<void*>(t->data), t->shape, t->dtype, f.keepalive());
    const Tensor v = src.to(DType::f32);
    for (double x : v.to_double_vector())
      LETHE_CHECK(std::isfinite(x), wpath, ": tensor \"", peft, "\" holds a non-finite value");
    dst.copy_(v.to(dst.device()));
  }
  return ad;
}

std::unique_ptr<LoraAdapter> LoraAdapter::frozen_copy() const {
  std::unique_ptr<LoraAdapter> c(new LoraAdapter());
  c->config_ = config_;
  c->layers_ = layers_;
  c->index_ = index_;
  c->base_shapes_ = base_shapes_;
  for (const std::string& n : params_.names())
    c->params_.add(n, params_.get(n).shape(), /*trainable=*/false);
  c->params_.allocate(params_.device());
  NoGradGuard ng;
  for (const std::string& n : params_.names()) c->params_.get(n).copy_(params_.get(n));
  return c;
}

void LoraAdapter::set_training(bool training, uint64_t dropout_seed) {
  training_ = training;
  dropout_seed_ = dropout_seed ^ kDropoutStream;
}

LinearFn LoraAdapter::hook() const {
  return [this](const std::string& name, const Tensor& x, const Tensor& w,
                const Tensor& b) -> Tensor {
    auto it = index_.find(name);
    if (it == index_.end()) return linear(x, w, b);
    Tensor xl = x;
    if (config_.dropout > 0 && training_)
      xl =
          dropout(x, config_.dropout, true, dropout_seed_, static_cast<uint64_t>(it->second) << 40);
    return lora_linear(x, w, b, xl, params_.get(a_name(name)), params_.get(b_name(name)),
                       config_.scaling());
  };
}

void LoraAdapter::save(const std::string& dir) const {
  fs::create_directories(dir);
  nlohmann::ordered_json c;
  c["base_model_name_or_path"] = config_.base_model;
  c["bias"] = "none";
  c["fan_in_fan_out"] = false;
  c["inference_mode"] = true;
  c["init_lora_weights"] = config_.init == "kaiming" ? nlohmann::ordered_json(true)
                                                     : nlohmann::ordered_json(config_.init);
  c["lora_alpha"] = config_.alpha;
  c["lora_dropout"] = config_.dropout;
  c["modules_to_save"] = nullptr;
  c["peft_type"] = "LORA";
  c["r"] = config_.r;
  c["target_modules"] = config_.targets;
  c["task_type"] = "CAUSAL_LM";
  c["use_dora"] = false;
  c["use_rslora"] = config_.use_rslora;
  std::vector<Tensor> host;
  std::vector<io::TensorToWrite> tensors;
  for (const std::string& layer : layers_)
    for (bool a : {true, false}) {
      host.push_back(params_.get(a ? a_name(layer) : b_name(layer)).to(Device::cpu()).contiguous());
      tensors.push_back(
          {peft_name(layer, a), DType::f32, host.back().shape(), host.back().data_ptr()});
    }
  io::write_safetensors((fs::path(dir) / "adapter_model.safetensors").string(), tensors);
  io::write_json_file((fs::path(dir) / "adapter_config.json").string(), c);
}

void LoraAdapter::merge_into(CausalLM& model) const {
  NoGradGuard ng;
  for (const std::string& layer : layers_) {
    Tensor w = model.parameters().get(layer + ".weight");
    LETHE_CHECK(w.shape() == base_shapes_.at(layer), "LoRA merge: ", layer, ".weight is ",
                shape_str(w.shape()), ", the adapter was made for ",
                shape_str(base_shapes_.at(layer)));
    const Tensor delta =
        scale(matmul(params_.get(b_name(layer)), params_.get(a_name(layer))), config_.scaling());
    w.copy_(add(w, delta));
  }
}

}  // namespace lethe::models
