#include "model/device.h"

#include <ATen/detail/CUDAHooksInterface.h>
#include <dlfcn.h>

#include <cstdio>

#include "core/error.h"

namespace kvscope {

at::Device parse_device(const std::string& name) {
  if (name == "cpu") return at::Device(at::kCPU);
  if (name.rfind("cuda", 0) == 0) {
    if (!at::hasCUDA()) {
      fail("--device ", name, ": this LibTorch build has no usable CUDA device (build against a CUDA LibTorch 2.x, or use --device cpu)");
    }
    try {
      return at::Device(name);
    } catch (const c10::Error&) {
      fail("--device ", name, ": not a valid device (expected cpu, cuda or cuda:N)");
    }
  }
  fail("--device ", name, ": unknown device (expected cpu, cuda or cuda:N)");
}

std::string device_for_rank(const std::string& name, int local_rank) {
  if (name != "cuda" || !at::hasCUDA()) return name;
  const int64_t gpus = static_cast<int64_t>(at::getNumGPUs());
  return gpus > 0 ? "cuda:" + std::to_string(local_rank % gpus) : name;
}

at::ScalarType parse_compute_dtype(const std::string& name) {
  if (name == "float32" || name == "f32" || name == "fp32") return at::kFloat;
  if (name == "bfloat16" || name == "bf16") return at::kBFloat16;
  if (name == "float16" || name == "f16" || name == "fp16") return at::kHalf;
  fail("--dtype ", name, ": unknown dtype (expected float32, bfloat16 or float16)");
}

std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    case at::kDouble: return "float64";
    default: return c10::toString(t);
  }
}

namespace {

c10::DeviceIndex cuda_index(at::Device device) {
  return device.has_index() ? device.index() : static_cast<c10::DeviceIndex>(at::detail::getCUDAHooks().current_device());
}

}  // namespace

void synchronize(at::Device device) {
  if (device.is_cuda()) at::detail::getCUDAHooks().deviceSynchronize(cuda_index(device));
}

namespace {

// The GPU's name and memory from the CUDA driver (libcuda, present wherever a GPU runs),
// looked up at run time: kvscope builds against CPU-only LibTorch too, without CUDA headers.
// Empty when the driver does not answer.
std::string gpu_name_and_memory(int ordinal) {
  void* driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (!driver) return {};
  using Init = int (*)(unsigned);
  using Name = int (*)(char*, int, int);
  using TotalMemory = int (*)(size_t*, int);
  const auto init = reinterpret_cast<Init>(dlsym(driver, "cuInit"));
  const auto name = reinterpret_cast<Name>(dlsym(driver, "cuDeviceGetName"));
  const auto total = reinterpret_cast<TotalMemory>(dlsym(driver, "cuDeviceTotalMem_v2"));
  std::string out;
  char text[256] = {0};
  size_t bytes = 0;
  // A device index counts the visible devices, as the driver's ordinals do.
  if (init && name && total && init(0) == 0 && name(text, sizeof text - 1, ordinal) == 0 && total(&bytes, ordinal) == 0) {
    char memory[64];
    std::snprintf(memory, sizeof memory, "%.1f GiB", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
    out = concat(text, ", ", memory);
  }
  dlclose(driver);
  return out;
}

}  // namespace

std::string describe_device(at::Device device) {
  if (!device.is_cuda()) return device.str();
  const int index = static_cast<int>(cuda_index(device));
  const std::string gpu = gpu_name_and_memory(index);
  return concat("cuda:", index, gpu.empty() ? "" : " " + gpu, " (", at::getNumGPUs(), " GPUs visible)");
}

namespace {
template <typename T>
at::Tensor upload_values(const std::vector<T>& values, at::ScalarType type, at::Device device) {
  at::Tensor host = at::tensor(values, at::TensorOptions().dtype(type));
  if (device.is_cuda()) return host.pin_memory().to(device, /*non_blocking=*/true);
  return host.to(device);
}
}  // namespace

at::Tensor upload(const std::vector<int64_t>& values, at::Device device) { return upload_values(values, at::kLong, device); }
at::Tensor upload(const std::vector<double>& values, at::Device device) { return upload_values(values, at::kDouble, device); }

}  // namespace kvscope
