// The device the model, trainer and CLI tests run on. ctest runs their binaries a second time
// with LETHE_TEST_DEVICE=cuda (label `cuda`: the emulator's tree in `make test`, or a GPU machine
// through tools/gpu_check.sh); every other run is on the CPU. CUDA asked for but unavailable is
// an error at the first tensor, never a skip.
#pragma once

#include <cstdlib>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace lethe::testing {

inline bool test_on_cuda() {
  const char* d = std::getenv("LETHE_TEST_DEVICE");
  return d != nullptr && std::string(d) == "cuda";
}
inline Device test_device() {
  return test_on_cuda() ? Device::cuda() : Device::cpu();
}
inline std::string test_device_name() {
  return test_on_cuda() ? "cuda" : "cpu";
}
// Recipe overrides that put a run on the test device (none on the CPU: the recipes' default).
inline std::vector<std::string> test_device_sets() {
  if (!test_on_cuda()) return {};
  return {"model.device=cuda"};
}

}  // namespace lethe::testing
