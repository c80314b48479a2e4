#pragma once
// A Llama-family decoder (llama, mistral, qwen2): stateless weights plus a forward function
// over a caller-owned KV cache. Attention is computed explicitly (scaled scores, fp32
// softmax) so its probabilities can be observed; the residual stream is fp32 whatever the
// compute dtype.
#include <ATen/ATen.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

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

  // One decode step for each of several independent runs (a sweep's runs stepped in
  // lockstep): run b feeds `token` at `position` into its own `cache`. The weights are read
  // once for all runs; attention is computed per run over that run's cache alone, so caches
  // of different lengths cost only their own length. Returns fp32 logits [B, V] (undefined
  // with Logits::None). On CPU in float32 each run's result is bit-for-bit what a
  // one-run call (or forward() of one token) gives (see llama_decode_cpu.cpp); elsewhere it
  // agrees to rounding.
  struct DecodeSlot {
    int64_t token = 0, position = 0;
    KvCache* cache = nullptr;
    ForwardObserver* observer = nullptr;
  };
  at::Tensor forward_step(const std::vector<DecodeSlot>& slots, Logits logits = Logits::All) const;

  FullKvCache new_cache(int64_t capacity = 256) const;

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  const Rope& rope() const { return rope_; }
  at::Device device() const { return device_; }
  at::ScalarType dtype() const { return dtype_; }
  const std::string& source() const { return source_; }

 private:
  // One run's rows of a forward call: `length` consecutive rows from `row`.
  struct Segment {
    int64_t row, length;
    KvCache* cache;
    ForwardObserver* observer;
    int64_t last_position;  // of the segment's tokens, on the host: RoPE then reads no device data
  };
  at::Tensor run_layers(const at::Tensor& ids, const at::Tensor& positions, const std::vector<Segment>& segments,
                        bool row_invariant) const;
  at::Tensor attention_block(int layer, const at::Tensor& x, const at::Tensor& positions,
                             const std::vector<Segment>& segments, bool row_invariant) const;
  at::Tensor attend(int layer, const at::Tensor& q_pre, const at::Tensor& k_pre, const at::Tensor& v,
                    const at::Tensor& positions, int64_t last_position, KvCache& cache, ForwardObserver* observer) const;
  at::Tensor mlp_block(int layer, const at::Tensor& x, bool row_invariant) const;
  // Decode steps on CPU in float32 run on raw rows (llama_decode_cpu.cpp) when every weight
  // is a contiguous float32 host tensor.
  bool decodes_on_host_rows() const;
  at::Tensor decode_host_rows(const std::vector<int64_t>& tokens, const std::vector<Segment>& segments, Logits logits) const;
  at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight) const;

  ModelConfig config_;
  ModelWeights weights_;
  at::Device device_;
  at::ScalarType dtype_;
  Rope rope_;
  std::string source_;
  bool host_rows_decode_ = false;
};

// y = x W^T + b for x [T, in]. With `row_invariant` (decode steps: one row per run) each
// row's result must not depend on the other rows: float32 CPU weights go through
// row_linear, which is also as fast as a matrix-vector product for one row (a 1-row
// matrix product through linear/matmul was ~5x slower). Otherwise one row uses mv and
// several use one matrix product.
at::Tensor project(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias = {}, bool row_invariant = false);

}  // namespace kvscope
