#pragma once
// Llama models with random weights, for tests and benchmarks: deterministic for a seed,
// independent of LibTorch's RNG (so every build and device makes the same model).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include "model/config.h"

namespace kvscope {

struct RandomModelSpec {
  std::string model_type = "llama";
  int64_t vocab_size = 256;
  int64_t hidden_size = 64;
  int64_t intermediate_size = 128;
  int64_t num_layers = 2;
  int64_t num_heads = 4;
  int64_t num_kv_heads = 2;
  int64_t max_position_embeddings = 2048;
  double rope_theta = 10000.0;
  std::string rope_scaling_json = "null";  // e.g. {"type":"linear","factor":2.0}
  bool attention_bias = false;
  bool tie_word_embeddings = false;
  uint64_t seed = 1;
};

std::string random_model_config_json(const RandomModelSpec& spec);
// HF-named float32 tensors for the spec, ready for write_safetensors.
std::vector<std::pair<std::string, at::Tensor>> random_model_tensors(const RandomModelSpec& spec);
// Refuses a spec the loader would refuse, or one too large for the free memory or disk.
void check_random_model_spec(const RandomModelSpec& spec, const std::string& dir);
// Writes config.json and model.safetensors into `dir` (created if missing), after
// check_random_model_spec.
void write_random_model(const std::string& dir, const RandomModelSpec& spec);

}  // namespace kvscope
