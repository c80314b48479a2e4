#pragma once
#include <ATen/ATen.h>

#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace kvscope {

// Writes tensors (float32, float16 or bfloat16; any device) as one safetensors file,
// atomically. Tensors are written in the order given.
void write_safetensors(const std::filesystem::path& path,
                       const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {}, bool overwrite = true);

}  // namespace kvscope
