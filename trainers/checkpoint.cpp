// What a run writes: the result (the model or the adapter, with the tokenizer files), the resume
// checkpoint (weights, optimizer state, trainer state) and run.json — the trainer state and
// run.json hold the same records (run_record.h), so resuming restores every field.
#include <omp.h>

#include <cmath>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/io/file_util.h"
#include "engine/io/json.h"
#include "engine/io/safetensors.h"
#include "models/tokenizer/files.h"
#include "trainers/loop_state.h"

namespace fs = std::filesystem;

namespace lethe::trainers {

namespace {

// The recipe keys that fix a run's trajectory: a checkpoint made under other values would continue
// another run. Device, threads, logging, saving, evaluation and output may change.
bool trajectory_key(const std::string& k) {
  for (const char* prefix : {"method.", "lora.", "data."})
    if (k.rfind(prefix, 0) == 0) return true;
  for (const char* key : {"model.path",
                          "model.reference",
                          "model.adapter",
                          "model.dtype",
                          "trainer.optimizer",
                          "trainer.lr",
                          "trainer.weight_decay",
                          "trainer.beta1",
                          "trainer.beta2",
                          "trainer.eps",
                          "trainer.momentum",
                          "trainer.batch_size",
                          "trainer.grad_accum",
                          "trainer.epochs",
                          "trainer.max_steps",
                          "trainer.warmup_steps",
                          "trainer.warmup_epochs",
                          "trainer.scheduler",
                          "trainer.max_grad_norm",
                          "trainer.seed"})
    if (k == key) return true;
  return false;
}

}  // namespace

void Trainer::Impl::write_model(const fs::path& dir) const {
  fs::create_directories(dir);
  if (adapter && rs.output.adapter_only) {
    adapter->save(dir.string());
  } else if (adapter) {
    // The merged checkpoint: W + scaling·BA written, then the base weights put back exactly.
    std::vector<std::pair<Tensor, Tensor>> saved;
    {
      NoGradGuard ng;
      for (const std::string& layer : adapter->layers()) {
        Tensor w = model->parameters().get(layer + ".weight");
        saved.emplace_back(w, w.clone());
      }
    }
    auto put_back = [&] {
      NoGradGuard ng;
      for (auto& [w, c] : saved) w.copy_(c);
    };
    adapter->merge_into(*model);
    try {
      model->save(dir.string(), rs.output.dtype);
    } catch (...) {
      put_back();
      throw;
    }
    put_back();
  } else if (classifier) {
    classifier->save(dir.string(), rs.output.dtype);
  } else {
    model->save(dir.string(), rs.output.dtype);
  }
  tokenizer::copy_tokenizer_files(rs.model.tokenizer, dir.string());
}

// A checkpoint for resume: weights (f32), optimizer state, trainer state, in a fresh folder renamed
// over the old one, so a crash leaves either the old or the new checkpoint whole. The optimizer's
// state buffers are saved at full size: under ZeRO-1 every rank's range is gathered (a collective:
// every rank calls it).
void Trainer::Impl::save_checkpoint(int64_t steps_done) {
  std::vector<std::pair<std::string, Tensor>> state;
  for (const auto& [name, buf] : optimizer->state_buffers()) {
    if (!zero1) {
      state.emplace_back(name, buf);
      continue;
    }
    Tensor full = Tensor::zeros({train_store().flat_grad_size()}, DType::f32, buf.device());
    full.slice(0, optimizer->shard_begin(), optimizer->shard_end()).copy_(buf);
    comm->all_gather_ranges(full, shards);
    state.emplace_back(name, full);
  }
  if (rank != 0) {
    comm->barrier();  // rank 0 writes; the others wait for the checkpoint to be whole
    return;
  }
  const fs::path dir = out_dir() / "checkpoint", tmp = out_dir() / "checkpoint.tmp",
                 old = out_dir() / "checkpoint.old";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  if (adapter) {
    adapter->save(tmp.string());
  } else if (classifier) {
    classifier->save(tmp.string(), DType::f32);
  } else {
    model->save(tmp.string(), DType::f32);
  }
  std::vector<Tensor> host;  // the optimizer's buffers may live on a GPU
  std::vector<io::TensorToWrite> host_state;
  for (const auto& [name, buf] : state) {
    host.push_back(buf.to(Device::cpu()).contiguous());
    host_state.push_back({name, DType::f32, {buf.numel()}, host.back().data_ptr()});
  }
  io::write_safetensors((tmp / "optimizer.safetensors").string(), host_state);
  nlohmann::ordered_json st = run_json(false);
  CheckpointState cs;
  cs.steps_done = steps_done;
  cs.optimizer_steps = optimizer->step_count();
  cs.base_lr = base_lr;
  cs.best_score = best_score;
  cs.best_step = best_step;
  st["state"] = state_to_json(cs);
  io::write_json_file((tmp / "trainer_state.json").string(), st);
  fs::remove_all(old);
  if (fs::exists(dir)) fs::rename(dir, old);
  fs::rename(tmp, dir);
  fs::remove_all(old);
  comm->barrier();
}

// A checkpoint is a file like any other a user gives lethe: before the first step every field is
// checked for type and range against this run, its recipe against this recipe, its shapes against
// model.path, and its optimizer state for size and finiteness (docs/cli.md). The file at fault is
// named. This part runs before any weights are read: the recipe and the model's shapes (from
// config.json alone).
void Trainer::Impl::check_checkpoint_matches(const fs::path& ckpt) const {
  const std::string state_path = (ckpt / "trainer_state.json").string();
  io::require_regular_file(state_path, "checkpoint state");
  const nlohmann::json st = io::read_json_file(state_path);
  LETHE_CHECK(st.is_object() && st.contains("config") && st["config"].is_object(), state_path,
              ": no \"config\" object (not a lethe checkpoint state)");
  const nlohmann::json& saved = st["config"];
  for (const auto& [k, v] : cfg.values()) {
    if (!trajectory_key(k)) continue;
    const bool has = saved.contains(k);
    LETHE_CHECK(has && saved[k].is_string() && saved[k].get<std::string>() == v, state_path,
                ": the checkpoint was made with ", k, " = ", has ? saved[k].dump() : "(unset)",
                ", this run has ", v,
                "; resume with the checkpoint's recipe, or start over in another output.dir");
  }
  for (const auto& [k, v] : saved.items())
    LETHE_CHECK(!trajectory_key(k) || cfg.has(k), state_path, ": the checkpoint was made with ", k,
                " = ", v.dump(), ", this run leaves it unset");
  if (rs.lora.enabled) return;  // the adapter's shapes are checked as it loads
  const auto want = models::declared_parameters(rs.model.path);
  const auto have = models::declared_parameters(ckpt.string());
  const std::string ckpt_config = (ckpt / "config.json").string();
  LETHE_CHECK(want.size() == have.size(), ckpt_config, ": the checkpoint's model has ", have.size(),
              " parameters, model.path's (", rs.model.path, ") has ", want.size(),
              " (a checkpoint of another model?)");
  for (size_t i = 0; i < want.size(); ++i)
    LETHE_CHECK(want[i] == have[i], ckpt_config, ": parameter '", have[i].first, "' has shape ",
                shape_str(have[i].second), ", model.path (", rs.model.path, ") needs '",
                want[i].first, "' ", shape_str(want[i].second),
                " (a checkpoint of another model?)");
}

void Trainer::Impl::restore(const fs::path& dir) {
  const std::string state_path = (dir / "trainer_state.json").string();
  CheckpointState cs =
      parse_checkpoint_state(io::read_json_file(state_path), state_path, total, layout());

  // The optimizer state: saved at full size; under ZeRO-1 this rank takes its range.
  const std::string opt_path = (dir / "optimizer.safetensors").string();
  io::require_regular_file(opt_path, "checkpoint optimizer state");
  const io::SafetensorsFile f = io::SafetensorsFile::open(opt_path);
  const int64_t full = train_store().flat_grad_size();
  std::vector<std::vector<float>> values;
  for (const auto& [name, buf] : optimizer->state_buffers()) {
    const io::TensorInfo* t = f.find(name);
    LETHE_CHECK(t != nullptr, opt_path, ": state '", name, "' is missing (a checkpoint of ",
                "another optimizer?)");
    LETHE_CHECK(t->dtype == DType::f32 && t->numel() == full, opt_path, ": state '", name, "' has ",
                t->numel(), " elements, the optimizer needs ", full);
    const float* data = static_cast<const float*>(t->data);
    for (int64_t i = 0; i < full; ++i)
      LETHE_CHECK(std::isfinite(data[i]), opt_path, ": state '", name,
                  "' holds a non-finite value at element ", i);
    values.emplace_back(data + optimizer->shard_begin(),
                        data + optimizer->shard_begin() + buf.numel());
  }
  // Everything checked: only now does the run take it.
  start_step = cs.steps_done;
  optimizer->set_step_count(cs.optimizer_steps);
  base_lr = cs.base_lr;
  best_score = std::isnan(cs.best_score) ? -std::numeric_limits<double>::infinity() : cs.best_score;
  best_step = cs.best_step;
  history = std::move(cs.steps);
  evals = std::move(cs.evals);
  size_t i = 0;
  for (const auto& [name, buf] : optimizer->state_buffers()) {
    Tensor live = buf;
    NoGradGuard ng;
    live.copy_(Tensor::from_vector(values[i], {buf.numel()}));
    ++i;
  }
}

nlohmann::ordered_json Trainer::Impl::run_json(bool finished) const {
  nlohmann::ordered_json j;
  j["lethe_version"] = LETHE_VERSION_STRING;
  j["command"] = rs.kind == RunKind::unlearn ? "unlearn" : "finetune";
  j["recipe"] = rs.source;
  j["finished"] = finished;
  j["build"] = {{"compiler", __VERSION__}, {"cplusplus", __cplusplus}};
  j["host"] = {{"device", model->device().str()},
               {"threads", omp_get_max_threads()},
               {"ranks", ranks},
               {"communicator", comm ? comm->backend_name() : "single"},
               {"zero1", zero1}};
  nlohmann::ordered_json c;
  for (const auto& [k, v] : cfg.values()) c[k] = v;
  j["config"] = c;
  if (adapter) {
    const models::LoraConfig& lc = adapter->config();
    j["lora"] = {{"r", lc.r},
                 {"alpha", lc.alpha},
                 {"dropout", lc.dropout},
                 {"targets", lc.targets},
                 {"layers", adapter->layers().size()},
                 {"trainable_parameters", adapter->parameters().trainable_numel()},
                 {"base_parameters", model->parameters().numel()}};
  }
  if (classifier) j["classifier"] = {{"labels", classifier->labels()}};
  j["method"]["name"] = method.name;
  for (const auto& [k, v] : method.reported) j["method"]["parameters"][k] = v;
  nlohmann::ordered_json objs = nlohmann::ordered_json::array();
  for (const Objective& o : method.objectives)
    objs.push_back({{"name", o.name}, {"batch", batch_kind_name(o.batch)}, {"sign", o.sign}});
  j["method"]["objectives"] = objs;
  j["data"] = {{"samples", drive.size()},
               {"retain_samples", retain.size()},
               {"micro_batches_per_epoch", order->micro_batches_per_epoch()},
               {"total_steps", total},
               {"warmup_steps", warmup}};
  const RecordLayout l = layout();
  nlohmann::ordered_json steps = nlohmann::ordered_json::array();
  for (const StepRecord& r : history) steps.push_back(step_to_json(r, l));
  j["steps"] = steps;
  nlohmann::ordered_json ev = nlohmann::ordered_json::array();
  for (const EvalRecord& e : evals) ev.push_back(eval_to_json(e));
  j["eval"] = ev;
  if (best_step >= 0) j["best_step"] = best_step;
  return j;
}

}  // namespace lethe::trainers
