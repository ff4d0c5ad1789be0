// Fuzz target: the safetensors reader (header JSON, dtypes, shapes, offsets, metadata) on
// arbitrary bytes, then every tensor's bytes read back.
#include <memory>

#include "engine/io/safetensors.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lethe::fuzz::expect_only_lethe_errors([&] {
    auto owner = std::make_shared<std::string>(reinterpret_cast<const char*>(data), size);
    auto f = lethe::io::SafetensorsFile::from_memory(owner, owner->data(), owner->size(), "fuzz");
    uint64_t sum = 0;
    for (const auto& t : f.tensors()) {
      const auto* p = static_cast<const uint8_t*>(t.data);
      for (uint64_t i = 0; i < t.nbytes(); ++i) sum += p[i];  // every byte must be in bounds
      (void)f.at(t.name);
    }
    (void)f.metadata();
    if (sum == 1) std::fprintf(stderr, " ");  // keep the reads
  });
  return 0;
}
