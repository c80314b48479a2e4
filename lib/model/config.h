#pragma once
// Hugging Face config.json for the Llama family (llama, mistral, qwen2), in both the classic
// layout (rope_theta + rope_scaling) and the transformers-5 one (rope_parameters, layer_types).
// Parsing refuses, by name, every feature the forward pass does not implement, so a model
// either runs exactly or not at all.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace kvscope {

enum class RopeScaling { None, Linear, Llama3, Dynamic, Yarn };

const char* rope_scaling_name(RopeScaling s);

struct RopeConfig {
  double theta = 10000.0;
  RopeScaling scaling = RopeScaling::None;
  double factor = 1.0;
  // llama3
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  // llama3 and yarn: the context the model was pretrained with
  int64_t original_max_position = 8192;
  // yarn
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  bool truncate = true;
  // Multiplies cos and sin (yarn's attention scaling); 1 for every other type.
  double attention_factor = 1.0;

  bool operator==(const RopeConfig& o) const;
  bool operator!=(const RopeConfig& o) const { return !(*this == o); }
};

struct ModelConfig {
  std::string model_type;  // llama | mistral | qwen2
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v projections carry a bias (qwen2)
  // The window of the sliding-attention layers, when any layer slides (mistral, qwen2).
  std::optional<int64_t> sliding_window;
  // Per layer: the sliding window, or 0 for full attention. Empty means every layer is full
  // (configs built by hand in tests).
  std::vector<int64_t> layer_window;
  RopeConfig rope;
  std::string declared_dtype;  // `dtype` or `torch_dtype`, as written (informational)
  int64_t bos_token_id = -1;
  int64_t eos_token_id = -1;
  std::string raw_json;  // the file as read, for provenance records

  int64_t group_size() const { return num_heads / num_kv_heads; }
  int64_t parameter_count() const;
  std::optional<int64_t> window_for_layer(int64_t layer) const {
    if (layer < 0 || layer >= static_cast<int64_t>(layer_window.size()) || layer_window[layer] <= 0) return std::nullopt;
    return layer_window[layer];
  }
};

ModelConfig parse_model_config(const std::string& json_text, const std::string& label);
ModelConfig load_model_config(const std::filesystem::path& model_dir);

}  // namespace kvscope
