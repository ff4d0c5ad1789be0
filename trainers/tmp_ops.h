// TEMPORARY (issue 21): stand-ins for the engine ops axpy_/scale_ and copy_tokenizer_files that the
// layers branch adds; removed when it is merged.
#pragma once
#include <filesystem>
#include "engine/io/file_util.h"
#include "engine/tensor.h"
namespace lethe {
inline void axpy_(Tensor& y, double a, const Tensor& x) {
  backend(y.device()).axpby(DType::f32, y.numel(), a, x.data_ptr(), 1.0, y.data_ptr());
}
inline void scale_(Tensor& x, double a) {
  backend(x.device()).axpby(DType::f32, x.numel(), a, x.data_ptr(), 0.0, x.data_ptr());
}
namespace tokenizer {
inline void copy_tokenizer_files(const std::string& from, const std::string& to) {
  namespace fs = std::filesystem;
  const fs::path src(from), dst(to);
  for (const char* f : {"tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                        "special_tokens_map.json", "tokenizer.model", "generation_config.json"}) {
    const fs::path p = src / f;
    if (!fs::is_regular_file(p) || fs::equivalent(src, dst)) continue;
    io::write_file_atomic((dst / f).string(), io::read_text_file(p.string()));
  }
}
}  // namespace tokenizer
}  // namespace lethe
