// Checkpoint helpers shared by the families: checks, the f32 copy with the non-finite guard, and
// HF-style writing.
#include "models/weights.h"

#include <cmath>
#include <filesystem>

#include "engine/autograd.h"
#include "engine/error.h"

namespace lethe::models {

namespace {

// The first non-finite element of a contiguous f32 parameter, or -1.
int64_t first_non_finite(const Tensor& t) {
  const float* p = t.data<float>();
  const int64_t n = t.numel();
  // x·0 is 0 for every finite x and NaN for NaN and ±Inf, so one vectorised pass tells whether
  // there is any; the element is looked for only then.
  float probe = 0;
#pragma omp simd reduction(+ : probe)
  for (int64_t i = 0; i < n; ++i) probe += p[i] * 0.0f;
  if (probe == 0) return -1;
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(p[i])) return i;
  return -1;
}

std::string non_finite_text(const Tensor& t, int64_t i) {
  const float v = t.data<float>()[i];
  return std::isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf";
}

}  // namespace

bool is_float_dtype(DType t) {
  return t == DType::f32 || t == DType::f16 || t == DType::bf16 || t == DType::f64;
}

void check_checkpoint_tensor(const io::SafetensorsIndex& ckpt, const std::string& key,
                             const ParamSpec& spec, const std::string& family,
                             const std::string& context) {
  const io::TensorInfo& info = ckpt.at(key);
  const io::SafetensorsFile& shard = ckpt.shard_of(key);
  LETHE_CHECK(info.shape == spec.shape, shard.path(), ": tensor '", key, "' has shape ",
              shape_str(info.shape), " but the config (", context, ") expects ",
              shape_str(spec.shape));
  LETHE_CHECK(is_float_dtype(info.dtype), shard.path(), ": tensor '", key, "' has dtype ",
              dtype_name(info.dtype), "; ", family, " weights must be F16, BF16, F32 or F64");
}

std::set<std::string> copy_checkpoint_tensors(const io::SafetensorsIndex& ckpt,
                                              const std::vector<ResolvedTensor>& resolved,
                                              ParameterStore& store) {
  std::set<std::string> used;
  NoGradGuard no_grad;
  for (const auto& [spec, key] : resolved) {
    const io::TensorInfo& info = ckpt.at(key);
    const io::SafetensorsFile& shard = ckpt.shard_of(key);
    Tensor src = Tensor::from_borrowed(const_cast<void*>(info.data), info.shape, info.dtype,
                                       shard.keepalive());
    Tensor dst = store.get(spec.name);
    dst.copy_(src);
    // A NaN or Inf weight makes every output NaN ("null" log-probs, greedy token 0): refuse it
    // here, naming the tensor, instead of producing silent nonsense later.
    if (dst.device().is_cpu() && dst.dtype() == DType::f32 && dst.is_contiguous()) {
      const int64_t bad = first_non_finite(dst);
      LETHE_CHECK(bad < 0, shard.path(), ": tensor '", key, "' holds a non-finite value (",
                  non_finite_text(dst, bad), " at element ", bad,
                  "); the checkpoint is corrupt or was saved from a diverged run");
    }
    used.insert(key);
  }
  return used;
}

void write_checkpoint_tensors(const std::string& dir, const std::vector<ParamSpec>& specs,
                              const ParameterStore& store, DType dtype,
                              const std::function<std::string(const std::string&)>& key_of,
                              const std::string& who) {
  LETHE_CHECK(dtype == DType::f32 || dtype == DType::f16 || dtype == DType::bf16, who,
              ": dtype must be f32, f16 or bf16, got ", dtype_name(dtype));
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  LETHE_CHECK(!ec, dir, ": cannot create directory: ", ec.message());
  NoGradGuard no_grad;
  std::vector<Tensor> keep;
  std::vector<io::TensorToWrite> out;
  for (const ParamSpec& spec : specs) {
    const std::string key = key_of(spec.name);
    if (key.empty()) continue;
    LETHE_CHECK(store.contains(spec.name), who, ": parameter '", spec.name,
                "' is not in the store");
    Tensor t = store.get(spec.name).detach();
    LETHE_CHECK(t.shape() == spec.shape, who, ": parameter '", spec.name, "' has shape ",
                shape_str(t.shape()), ", the config expects ", shape_str(spec.shape));
    t = t.to(Device::cpu()).to(dtype).contiguous();
    keep.push_back(t);
    out.push_back({key, dtype, t.shape(), t.data_ptr()});
  }
  io::write_safetensors(dir + "/model.safetensors", out, {{"format", "pt"}});
}

std::string torch_dtype_name(DType dtype) {
  return dtype == DType::f32 ? "float32" : dtype == DType::f16 ? "float16" : "bfloat16";
}

}  // namespace lethe::models
