// copy_tokenizer_files: a model directory's tokenizer files carried over to a directory lethe
// writes a model to, so the new checkpoint loads with its tokenizer in lethe and in HF. The bytes
// go over as they are: nothing here parses a tokenizer.
#pragma once

#include <string>
#include <vector>

namespace lethe::tokenizer {

// The files a tokenizer (lethe's or HF's) reads from a model directory, with
// generation_config.json, which HF's generate reads beside them.
const std::vector<std::string>& tokenizer_file_names();

// Copies each of tokenizer_file_names() that is a regular file in `from` into the existing
// directory `to`, each written atomically (a temp file renamed over the target); names absent from
// `from` are skipped. Nothing is copied when `from` and `to` are the same directory. Errors name
// the file.
void copy_tokenizer_files(const std::string& from, const std::string& to);

}  // namespace lethe::tokenizer
