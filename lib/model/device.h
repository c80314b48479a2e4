#pragma once
#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace kvscope {

// Parses "cpu", "cuda" or "cuda:N"; errors if CUDA is requested but this LibTorch has none.
at::Device parse_device(const std::string& name);
// The device of one rank of an MPI job: plain "cuda" becomes the rank's node-local GPU
// ("cuda:<local_rank mod GPUs>"), so ranks on one node spread over its GPUs; an explicit
// "cuda:N" or "cpu" is kept.
std::string device_for_rank(const std::string& name, int local_rank);
// Parses "float32", "bfloat16", "float16" (and the short forms f32/bf16/f16).
at::ScalarType parse_compute_dtype(const std::string& name);
std::string dtype_name(at::ScalarType t);
// Waits for all work queued on `device` (a no-op on CPU): a clock read after a CUDA step
// would otherwise time only the kernel launches.
void synchronize(at::Device device);
// "cpu", or "cuda:0 NVIDIA H200, 139.8 GiB (8 GPUs visible)" for the device a command runs
// on (name and memory from the CUDA driver, left out where it does not answer).
std::string describe_device(at::Device device);
// Host values as a 1-D tensor on `device`; to a GPU through pinned memory without waiting,
// so a decode step's small host-known inputs never stall the host.
at::Tensor upload(const std::vector<int64_t>& values, at::Device device);
at::Tensor upload(const std::vector<double>& values, at::Device device);

}  // namespace kvscope
