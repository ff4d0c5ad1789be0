// Shared by the fuzz targets: what a target may throw, and a scratch directory for targets that
// must hand their input to a loader as files. A target returns normally for every input: a
// lethe::Error is the expected way to refuse bad input; any other exception, a crash, a hang, a
// leak or a sanitizer report is a finding.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <typeinfo>

#include "engine/error.h"

namespace lethe::fuzz {

// Runs `body`; lethe::Error is fine, anything else aborts with its message (a finding).
template <typename F>
void expect_only_lethe_errors(F&& body) {
  try {
    body();
  } catch (const lethe::Error&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz: unexpected %s: %s\n", typeid(e).name(), e.what());
    std::abort();
  }
}

// A per-process directory under the temp dir, created once.
inline const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("lethe_fuzz_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

inline void write_file(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Writes `bytes` as `dir`/`file` under the scratch directory (a loader that reads a model
// directory gets the fuzz input as one of its files) and returns that directory.
inline std::filesystem::path input_as_file(const char* dir, const char* file,
                                           std::string_view bytes) {
  const auto d = scratch() / dir;
  std::filesystem::create_directories(d);
  write_file(d / file, bytes);
  return d;
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace lethe::fuzz
