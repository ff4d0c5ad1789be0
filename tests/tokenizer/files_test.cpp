// copy_tokenizer_files: which files go over, byte for byte; same directory; errors name the file.
#include "models/tokenizer/files.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "engine/error.h"
#include "tests/common/expect_error.h"
#include "tests/common/temp_dir.h"

namespace fs = std::filesystem;
using lethe::tokenizer::copy_tokenizer_files;
using lethe::tokenizer::tokenizer_file_names;

namespace {

void write(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string read(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST(CopyTokenizerFiles, CopiesTheTokenizerFilesThatExistAndNothingElse) {
  const fs::path from = lethe::testing::scratch_dir("tokfiles", "from");
  const fs::path to = lethe::testing::scratch_dir("tokfiles", "to");
  write(from / "vocab.json", "{\"a\": 0}");
  write(from / "merges.txt", "#version: 0.2\na b\n");
  write(from / "tokenizer.model", std::string("\x00\x01\xff", 3));  // binary bytes go over as is
  write(from / "generation_config.json", "{}");
  write(from / "config.json", "{}");              // the model's, not the tokenizer's
  fs::create_directory(from / "tokenizer.json");  // not a regular file: skipped
  write(to / "merges.txt", "old");                // replaced
  copy_tokenizer_files(from.string(), to.string());
  for (const char* f : {"vocab.json", "merges.txt", "tokenizer.model", "generation_config.json"})
    EXPECT_EQ(read(to / f), read(from / f)) << f;
  EXPECT_FALSE(fs::exists(to / "config.json"));
  EXPECT_FALSE(fs::exists(to / "tokenizer.json"));
  EXPECT_FALSE(fs::exists(to / "tokenizer_config.json"));
  EXPECT_EQ(tokenizer_file_names().size(), 7u);
}

TEST(CopyTokenizerFiles, SameDirectoryIsLeftAlone) {
  const fs::path dir = lethe::testing::scratch_dir("tokfiles", "same");
  write(dir / "vocab.json", "{}");
  // An atomic write renames a new file over the old one: the inode would change.
  auto inode = [&] {
    struct stat st {};
    EXPECT_EQ(::stat((dir / "vocab.json").c_str(), &st), 0);
    return st.st_ino;
  };
  const auto before = inode();
  copy_tokenizer_files(dir.string(), (dir / ".").string());
  EXPECT_EQ(inode(), before);
  EXPECT_EQ(read(dir / "vocab.json"), "{}");
}

TEST(CopyTokenizerFiles, AMissingTargetDirectoryIsAnErrorNamingTheFile) {
  const fs::path from = lethe::testing::scratch_dir("tokfiles", "src");
  write(from / "vocab.json", "{}");
  const fs::path to = from / "absent";
  lethe::testing::expect_error([&] { copy_tokenizer_files(from.string(), to.string()); },
                               {(to / "vocab.json").string()});
}
