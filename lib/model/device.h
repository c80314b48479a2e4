#pragma once
#include <ATen/ATen.h>

#include <string>

namespace kvscope {

// Parses "cpu", "cuda" or "cuda:N"; errors if CUDA is requested but this LibTorch has none.
at::Device parse_device(const std::string& name);
// Parses "float32", "bfloat16", "float16" (and the short forms f32/bf16/f16).
at::ScalarType parse_compute_dtype(const std::string& name);
std::string dtype_name(at::ScalarType t);

}  // namespace kvscope
