// The state of one training run, shared by the files of the loop (trainers-internal; not part of
// the library's interface): setup.cpp fills it, loop.cpp runs the steps, checkpoint.cpp saves,
// resumes and writes run.json.
#pragma once

#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <ostream>
#include <vector>

#include "engine/dist/communicator.h"
#include "engine/lr_schedule.h"
#include "engine/optim.h"
#include "models/lora.h"
#include "models/sequence_classifier.h"
#include "models/tokenizer/tokenizer.h"
#include "trainers/batch.h"
#include "trainers/data_order.h"
#include "trainers/settings.h"
#include "trainers/trainer.h"

namespace lethe::trainers {

// The micro-batches of one accumulation slot, by kind.
struct Batches {
  std::map<BatchKind, MicroBatch> mb;
};

struct Trainer::Impl {
  Config cfg;      // the resolved recipe: run.json's "config", the checkpoint's recipe check
  RunSettings rs;  // the same, typed: what the loop reads
  TrainerOptions opts;
  std::ostream* log = nullptr;
  std::ostream null_log{nullptr};
  Method method;
  std::unique_ptr<tokenizer::Tokenizer> tok;
  // The model that trains: `lm`, or with model.head: classifier the backbone of `classifier`, whose
  // store holds the score head too.
  models::CausalLM* model = nullptr;
  std::unique_ptr<models::CausalLM> lm, reference;
  std::unique_ptr<models::SequenceClassifier> classifier;
  // LoRA (lora.enabled): the trained adapter, and the starting adapter of the reference forward
  // (null: the base model with the adapters off).
  std::unique_ptr<models::LoraAdapter> adapter, ref_adapter;
  std::vector<data::Sample> drive, retain, eval_forget, eval_retain;
  std::unique_ptr<DataOrder> order;
  std::unique_ptr<Optimizer> optimizer;
  std::vector<int> sets;  // one gradient set per objective
  Tensor direction;
  int64_t batch = 1, accum = 1, total = 0, warmup = 0;
  // Data parallel (docs/distributed.md): `batch` samples per rank per micro-batch; rank r reads
  // its slice [r·batch, (r+1)·batch) of every global one.
  dist::Communicator* comm = nullptr;
  int rank = 0, ranks = 1;
  bool zero1 = false;
  std::vector<std::pair<int64_t, int64_t>> shards;  // ZeRO-1: each rank's optimizer range
  double base_lr = 0;
  std::unique_ptr<LrSchedule> schedule;
  std::vector<StepRecord> history;
  std::vector<EvalRecord> evals;
  int64_t start_step = 0;  // steps done before this invocation (resume)
  double best_score = -std::numeric_limits<double>::infinity();
  int64_t best_step = -1;

  std::filesystem::path out_dir() const { return std::filesystem::path(rs.output.dir); }
  // The parameters that train: the adapter's with LoRA, else the model's.
  ParameterStore& train_store() { return adapter ? adapter->parameters() : model->parameters(); }
  RecordLayout layout() const;
  // The head the objectives read: the LM head, or the classifier's score head.
  Tensor head_weight() const {
    return classifier ? classifier->score_weight() : model->lm_head_weight();
  }

  // setup.cpp
  void setup();
  void load_models(const std::string& weights_dir);
  void load_data();
  void make_optimizer();

  // loop.cpp
  int64_t run();
  StepRecord step(int64_t s);
  Batches make_batches(int64_t m, int64_t forget_length, int64_t retain_length);
  int64_t kl_length(int64_t s, BatchKind kind) const;
  HeadOutput reference_output(const Tensor& ids, const Tensor& mask);
  HeadOutput model_output(const MicroBatch& mb, const models::ForwardOptions& fo = {});
  void clip_direction(double norm, double max_norm);
  double eval_nll(const std::vector<data::Sample>& set);
  EvalRecord evaluate(int64_t step);
  double score(const EvalRecord& e) const;

  // checkpoint.cpp
  void write_model(const std::filesystem::path& dir) const;
  void save_checkpoint(int64_t steps_done);
  void check_checkpoint_matches(const std::filesystem::path& ckpt) const;
  void restore(const std::filesystem::path& dir);
  nlohmann::ordered_json run_json(bool finished) const;
};

}  // namespace lethe::trainers
