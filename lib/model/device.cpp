#include "model/device.h"

#include <ATen/detail/CUDAHooksInterface.h>

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

std::string describe_device(at::Device device) {
  if (!device.is_cuda()) return device.str();
  return concat("cuda:", static_cast<int>(cuda_index(device)), " (", at::getNumGPUs(), " GPUs visible)");
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
