// See files.h.
#include "models/tokenizer/files.h"

#include <filesystem>
#include <system_error>

#include "engine/io/file_util.h"

namespace lethe::tokenizer {

namespace fs = std::filesystem;

const std::vector<std::string>& tokenizer_file_names() {
  static const std::vector<std::string> names = {"tokenizer.json",
                                                 "vocab.json",
                                                 "merges.txt",
                                                 "tokenizer_config.json",
                                                 "special_tokens_map.json",
                                                 "tokenizer.model",
                                                 "generation_config.json"};
  return names;
}

void copy_tokenizer_files(const std::string& from, const std::string& to) {
  std::error_code ec;  // set when either side is missing: then they are not the same directory
  if (fs::equivalent(from, to, ec)) return;
  for (const std::string& name : tokenizer_file_names()) {
    const fs::path src = fs::path(from) / name;
    if (!fs::is_regular_file(src)) continue;
    io::write_file_atomic((fs::path(to) / name).string(), io::read_text_file(src.string()));
  }
}

}  // namespace lethe::tokenizer
