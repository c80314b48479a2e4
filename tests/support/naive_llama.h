#pragma once
// A deliberately slow, obviously-correct Llama forward pass in float64 with plain loops.
// It shares no code with lib/model: its own RoPE, attention, norms and MLP, reading the
// raw tensors that were written to safetensors.
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace kvscope::testing {

struct NaiveConfig {
  int vocab, hidden, inter, layers, heads, kv_heads, head_dim;
  double eps = 1e-5, theta = 10000.0;
  std::string rope_type = "none";  // none | linear | llama3
  double factor = 1.0, low_freq_factor = 1.0, high_freq_factor = 4.0;
  int original_max_position = 8192;
  bool bias = false, tied = false;
  int sliding_window = 0;  // > 0: query i sees keys j with i - j < sliding_window (Mistral)
};

struct NaiveTrace {
  // [layer][kv_head][t][d] and [layer][head][tq][tk]
  std::vector<std::vector<std::vector<std::vector<double>>>> k_pre, k_post, v, q_post;
  std::vector<std::vector<std::vector<std::vector<double>>>> attn;
  std::vector<std::vector<double>> logits;  // [t][vocab]
};

NaiveTrace naive_forward(const NaiveConfig& c, const std::map<std::string, at::Tensor>& tensors,
                         const std::vector<int64_t>& ids);

}  // namespace kvscope::testing
