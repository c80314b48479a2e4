#pragma once
#include <cstdint>

namespace kvscope {

// One entry of kvscope ppl --log-perturbation: the exact change one eviction or merge made
// to one query head's attention output at that step (methods §4).
struct PerturbationEvent {
  int64_t step;          // position of the token being decoded
  int32_t layer, head;   // query head
  double relative_change, cosine;
};

}  // namespace kvscope
