#pragma once
#include <cstdint>
#include <random>

namespace at { class Tensor; }

namespace kvscope {

struct SamplingOptions {
  double temperature = 0.0;  // 0 = greedy
  int64_t top_k = 0;         // 0 = no limit
  double top_p = 1.0;
};

// Picks the next token from fp32 logits [V]. Sampling draws from `rng` on the host in
// float64, so a seed gives the same tokens on every device.
int64_t choose_token(const at::Tensor& logits, const SamplingOptions& options, std::mt19937_64& rng);

}  // namespace kvscope
