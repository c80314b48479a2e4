#pragma once
// Hugging Face config.json for the Llama family (llama, mistral, qwen2). Parsing refuses,
// by name, every feature the forward pass does not implement, so a model either runs
// exactly or not at all.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace kvscope {

enum class RopeScaling { None, Linear, Llama3 };

struct RopeConfig {
  double theta = 10000.0;
  RopeScaling scaling = RopeScaling::None;
  double factor = 1.0;
  // llama3 only
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position = 8192;
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
  std::optional<int64_t> sliding_window;  // mistral
  RopeConfig rope;
  int64_t bos_token_id = -1;
  int64_t eos_token_id = -1;
  std::string raw_json;  // the file as read, for provenance records

  int64_t group_size() const { return num_heads / num_kv_heads; }
  int64_t parameter_count() const;
};

ModelConfig parse_model_config(const std::string& json_text, const std::string& label);
ModelConfig load_model_config(const std::filesystem::path& model_dir);

}  // namespace kvscope
