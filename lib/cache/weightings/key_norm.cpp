// An attention-free weighting (methods §3): low-norm keys attract attention
// (Devoto et al.), so weight each value by exp(-||k||), normalised over the pair.
#include <cmath>

#include "cache/device_cells.h"
#include "cache/merge_weighting.h"

namespace kvscope {
namespace {

class KeyNormSoftmin : public MergeWeighting {
 public:
  double weight(const MergeCandidate& c) const override {
    const double m = std::min(c.key_norm_j, c.key_norm_r);  // shift for numerical safety
    const double ej = std::exp(-(c.key_norm_j - m)), er = std::exp(-(c.key_norm_r - m));
    return ej / (ej + er);
  }
  at::Tensor weight_on_device(const MergeCandidateTensors& c) const override {
    const at::Tensor m = at::minimum(c.key_norm_j, c.key_norm_r);
    const at::Tensor ej = (c.key_norm_j - m).neg().exp(), er = (c.key_norm_r - m).neg().exp();
    return ej / (ej + er);
  }
};
KVSCOPE_REGISTER_MERGE_WEIGHTING(KeyNormSoftmin, "key-norm", "exp(-||k_j||) : exp(-||k_r||), no attention needed");

}  // namespace
}  // namespace kvscope
