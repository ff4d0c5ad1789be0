// Typed reads of a model's config.json fields, every error naming the file and the field: shared
// by the model families' config parsers (models/opt/opt_config.cpp, models/llama/llama_config.cpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/io/json.h"

namespace lethe::models::config_fields {

// "<source>: field '<key>': ", the prefix of every field error.
inline std::string field(const std::string& source, const char* key) {
  return source + ": field '" + key + "': ";
}

// A size field must be positive and at most `limit` (far above any released model, so a corrupt
// or hostile config is refused before anything is sized from it).
inline void check_size(const std::string& source, const char* key, int64_t v, int64_t limit) {
  LETHE_CHECK(v > 0, field(source, key), "must be positive, got ", v);
  LETHE_CHECK(v <= limit, field(source, key), v, " is larger than ", limit,
              ", the most lethe accepts");
}

// A token id, when set, must lie in the vocabulary.
inline void check_token(const std::string& source, const char* key,
                        const std::optional<int64_t>& id, int64_t vocab_size) {
  if (id)
    LETHE_CHECK(*id >= 0 && *id < vocab_size, field(source, key), "token id ", *id,
                " is outside the vocabulary [0, ", vocab_size, ")");
}

// torch_dtype, when set, must be one lethe reads.
inline void check_dtype(const std::string& source, const std::string& dtype) {
  if (dtype.empty()) return;
  const bool known =
      dtype == "float16" || dtype == "bfloat16" || dtype == "float32" || dtype == "float64";
  LETHE_CHECK(known, field(source, "torch_dtype"), "unsupported dtype '", dtype,
              "' (expected float16, bfloat16, float32 or float64)");
}

// Reads typed fields of one JSON object; absent keys leave the output unchanged.
class FieldReader {
 public:
  FieldReader(const nlohmann::json& j, const std::string& source) : j_(j), source_(source) {}

  void read(const char* key, int64_t& out) const {
    if (!j_.contains(key)) return;
    const auto& v = j_[key];
    // transformers writes integers; accept 12.0 too, as Python's json would give a float.
    if (v.is_number_integer()) {
      out = v.get<int64_t>();
      LETHE_CHECK(!v.is_number_unsigned() || v.get<uint64_t>() <= INT64_MAX, where(key), "value ",
                  io::json_excerpt(v), " is too large");
    } else if (v.is_number_float() && std::nearbyint(v.get<double>()) == v.get<double>() &&
               std::fabs(v.get<double>()) < 9e15) {
      out = static_cast<int64_t>(v.get<double>());
    } else {
      LETHE_FAIL(where(key), "expected an integer, got ", io::json_excerpt(v));
    }
  }
  void read(const char* key, std::optional<int64_t>& out) const {
    if (!j_.contains(key)) return;
    if (j_[key].is_null()) {
      out.reset();
      return;
    }
    LETHE_CHECK(!j_[key].is_array(), where(key), "lists of token ids are not supported, got ",
                io::json_excerpt(j_[key]));
    int64_t v = 0;
    read(key, v);
    out = v;
  }
  void read(const char* key, double& out) const {
    if (!j_.contains(key)) return;
    const auto& v = j_[key];
    LETHE_CHECK(v.is_number(), where(key), "expected a number, got ", io::json_excerpt(v));
    out = v.get<double>();
  }
  void read(const char* key, bool& out) const {
    if (!j_.contains(key)) return;
    const auto& v = j_[key];
    LETHE_CHECK(v.is_boolean(), where(key), "expected true or false, got ", io::json_excerpt(v));
    out = v.get<bool>();
  }
  void read(const char* key, std::string& out) const {
    if (!j_.contains(key) || j_[key].is_null()) return;
    const auto& v = j_[key];
    LETHE_CHECK(v.is_string(), where(key), "expected a string, got ", io::json_excerpt(v));
    out = v.get<std::string>();
  }

  std::string where(const char* key) const { return field(source_, key); }

 private:
  const nlohmann::json& j_;
  const std::string& source_;
};

}  // namespace lethe::models::config_fields
