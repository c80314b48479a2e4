#pragma once
// kvscope ppl --log-perturbation: for every eviction or merge, the exact change it makes to
// each affected query head's attention output at that step, from the closed forms of
// lib/analysis/perturbation.h. Costs nothing when not attached.
#include <cstdint>
#include <vector>

#include "cache/policy_cache.h"
#include "eval/perturbation_event.h"

namespace kvscope {

class PerturbationLog : public DecisionObserver {
 public:
  void set_step(int64_t step) { step_ = step; }
  void on_decisions(int layer, const std::vector<HeadCells>& heads, const std::vector<Decision>& decisions,
                    const at::Tensor& values, const at::Tensor& probabilities) override;
  const std::vector<PerturbationEvent>& events() const { return events_; }

  // The output one query head has right after the decision, from the closed forms;
  // `before` receives the output before it. Exposed for the brute-force tests.
  static std::vector<double> output_after(const Decision& d, const HeadCells& head, const at::Tensor& head_values,
                                          const at::Tensor& head_probabilities, std::vector<double>* before);

 private:
  int64_t step_ = 0;
  std::vector<PerturbationEvent> events_;
};

}  // namespace kvscope
