#pragma once
// A Llama-family decoder (llama, mistral, qwen2): stateless weights plus a forward function
// over a caller-owned KV cache. Attention is computed explicitly (scaled scores, fp32
// softmax) so its probabilities can be observed; the residual stream is fp32 whatever the
// compute dtype.
#include <ATen/ATen.h>

#include <filesystem>
#include <memory>
#include <string>

#include "model/config.h"
#include "model/rope.h"
#include "model/weights.h"

namespace kvscope {

class KvCache;
class FullKvCache;
class ForwardObserver;

struct LoadOptions {
  std::string device = "cpu";
  std::string dtype = "float32";
};

enum class Logits { All, Last, None };

class LlamaModel {
 public:
  static LlamaModel load(const std::filesystem::path& model_dir, const LoadOptions& options = {});
  LlamaModel(ModelConfig config, ModelWeights weights, at::Device device, at::ScalarType dtype);

  // Runs tokens [T] (int64) at positions start_position .. start_position+T-1 against the
  // cache, appending to it. Returns fp32 logits [T, V] (All), [1, V] (Last) or undefined.
  at::Tensor forward(const at::Tensor& tokens, int64_t start_position, KvCache& cache,
                     ForwardObserver* observer = nullptr, Logits logits = Logits::All) const;

  FullKvCache new_cache(int64_t capacity = 256) const;

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  const Rope& rope() const { return rope_; }
  at::Device device() const { return device_; }
  at::ScalarType dtype() const { return dtype_; }
  const std::string& source() const { return source_; }

 private:
  at::Tensor attention_block(int layer, const at::Tensor& x, const at::Tensor& positions, KvCache& cache,
                             ForwardObserver* observer) const;
  at::Tensor mlp_block(int layer, const at::Tensor& x) const;
  at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight) const;

  ModelConfig config_;
  ModelWeights weights_;
  at::Device device_;
  at::ScalarType dtype_;
  Rope rope_;
  std::string source_;
};

// y = x W^T + b for x [T, in]. One token goes through a matrix-vector product: on CPU that
// was ~5x faster than a 1-row matrix product through linear/matmul.
at::Tensor project(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias = {});

}  // namespace kvscope
