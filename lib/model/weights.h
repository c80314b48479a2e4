#pragma once
#include <ATen/ATen.h>

#include <vector>

#include "model/config.h"

namespace kvscope {

class SafetensorsArchive;

struct LayerWeights {
  at::Tensor attn_norm, ffn_norm;          // fp32 [D]
  at::Tensor wq, wk, wv, wo;               // [out, in], compute dtype
  at::Tensor bq, bk, bv;                   // undefined unless attention_bias
  at::Tensor w_gate, w_up, w_down;
};

struct ModelWeights {
  at::Tensor embed;       // [V, D]
  at::Tensor final_norm;  // fp32 [D]
  at::Tensor lm_head;     // [V, D]; the same tensor as embed when tied
  std::vector<LayerWeights> layers;
  at::ScalarType stored_dtype = at::kFloat;  // dtype found in the file (of embed)
};

// Loads and validates every tensor against the config: a missing tensor or a shape that
// disagrees is an error naming both. Norm weights stay fp32; the rest are cast to `dtype`.
ModelWeights load_weights(const SafetensorsArchive& archive, const ModelConfig& config,
                          at::Device device, at::ScalarType dtype);

}  // namespace kvscope
