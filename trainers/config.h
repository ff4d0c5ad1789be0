// Recipes: a YAML file of dotted keys (model.path, trainer.lr, …) plus `--set key=value`
// overrides, checked against one schema before any work starts. No training logic here.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace lethe::trainers {

// What a run is: fine-tuning (data.train), unlearning (data.forget + data.retain) or evaluation
// (eval.* sets).
enum class RunKind { finetune, unlearn, eval };

// A resolved recipe: every key of the schema that has a value (given or default), as text in
// YAML scalar form; typed getters convert and were all checked by load_config.
class Config {
 public:
  bool has(const std::string& key) const;
  std::string str(const std::string& key) const;  // throws for a key without a value
  double num(const std::string& key) const;
  int64_t integer(const std::string& key) const;
  bool flag(const std::string& key) const;
  std::vector<double> nums(const std::string& key) const;  // a list key
  // Optional keys (no schema default): the given value, else `fallback`.
  double num_or(const std::string& key, double fallback) const;
  int64_t integer_or(const std::string& key, int64_t fallback) const;
  bool flag_or(const std::string& key, bool fallback) const;
  std::string str_or(const std::string& key, const std::string& fallback) const;

  // Every key with its value, sorted: what run.json records as the resolved config.
  const std::map<std::string, std::string>& values() const { return values_; }
  // Where the recipe came from (file name or "(no recipe)"), for messages.
  const std::string& source() const { return source_; }
  RunKind kind() const { return kind_; }

  // Sets a key (checked against the schema); for tests and embedding programs.
  void set(const std::string& key, const std::string& value);

 private:
  friend Config load_config(const std::string&, const std::vector<std::string>&, RunKind);
  friend Config make_config(const std::map<std::string, std::string>&, RunKind);
  std::map<std::string, std::string> values_;
  std::string source_;
  RunKind kind_ = RunKind::unlearn;
};

// Reads `recipe_path` (YAML; "" = none), applies the `key=value` overrides in order, fills the
// defaults and checks everything: unknown keys (with the nearest known one suggested), wrong
// types, values out of range, keys required for `kind`, files that do not exist. Errors are
// lethe::Error naming the recipe file, the key and what was expected.
Config load_config(const std::string& recipe_path, const std::vector<std::string>& overrides,
                   RunKind kind);
// The same from a map of key -> value (embedding programs, tests).
Config make_config(const std::map<std::string, std::string>& values, RunKind kind);

// Under mpirun: every rank must run the same resolved recipe (a hash gathered and compared);
// a difference is a lethe::UsageError naming the rank. A collective: every rank calls it.
void check_same_recipe_on_every_rank(const Config& cfg);

// One line per schema key: "key  (type, default d)  description" — `lethe unlearn --keys`; a
// method's key ends with the methods that read it and their defaults: "[npo 0.1, simnpo 4.5]".
std::string describe_schema();

// A list value ("[0.5, 1, 1]") as numbers; a lethe::Error naming `where` and `key` otherwise.
std::vector<double> parse_number_list(const std::string& where, const std::string& key,
                                      const std::string& text);

// The method registry changed (methods/method.h, register_method): the schema's method.* keys and
// method.name's choices are rebuilt on next use.
void config_schema_changed();

}  // namespace lethe::trainers
