#pragma once
// The random micro-models the tests share, so a shape is chosen once.
#include "model/random_model.h"

namespace kvscope::testing {

// The smallest model a CLI test needs: 2 query heads over 1 KV head, hidden 16, vocabulary 64.
inline RandomModelSpec cli_model_spec() {
  RandomModelSpec spec;
  spec.vocab_size = 64;
  spec.hidden_size = 16;
  spec.intermediate_size = 24;
  spec.num_heads = 2;
  spec.num_kv_heads = 1;
  return spec;
}

// A GQA model for the policy tests: 2 layers, 4 query heads over 2 KV heads, vocabulary 64.
inline RandomModelSpec policy_model_spec(uint64_t seed) {
  RandomModelSpec spec;
  spec.vocab_size = 64;
  spec.hidden_size = 32;
  spec.intermediate_size = 48;
  spec.num_layers = 2;
  spec.num_heads = 4;
  spec.num_kv_heads = 2;
  spec.seed = seed;
  return spec;
}

// The model the batched-decoding tests step many runs of: 2 layers, 4 query heads over 2 KV
// heads, hidden 48, vocabulary 97, context 256.
inline RandomModelSpec batched_model_spec() {
  RandomModelSpec spec;
  spec.vocab_size = 97;
  spec.hidden_size = 48;
  spec.intermediate_size = 80;
  spec.num_layers = 2;
  spec.num_heads = 4;
  spec.num_kv_heads = 2;
  spec.max_position_embeddings = 256;
  return spec;
}

}  // namespace kvscope::testing
