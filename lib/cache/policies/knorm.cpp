// The L2-norm rule of Devoto et al. (methods §2.6): the middle token with the highest key
// norm leaves, per head (norms within a relative 1e-5 count as equal: the earliest leaves);
// --skip-layers leaves layers uncompressed.
#include "cache/device_cells.h"
#include "cache/policy_registry.h"

namespace kvscope {
namespace {

class KnormPolicy : public CachePolicy {
 public:
  using CachePolicy::CachePolicy;
  void decide(int, const std::vector<HeadCells>& heads, const StepView&, std::vector<Decision>& out) override {
    for (size_t h = 0; h < heads.size(); ++h) {
      const HeadCells& s = heads[h];
      out[h] = Decision::drop(
          argmin_near(middle(s), [&](int i) { return -static_cast<double>(s.key_norm(s.slot(i))); }));
    }
  }
  bool decide_on_device(int, const DeviceStep& step, DeviceDecision& out) override {
    const DeviceCells& c = step.cells;
    const Bounds b = middle_bounds(c.sizes());
    const at::Tensor scores = c.in_order(c.key_norm()).neg();
    out = DeviceDecision::drops(argmin_near_on_device(scores, c.region_mask(b.begin, b.end), kScoreTolerance));
    return true;
  }
};

PolicyTraits knorm_traits() {
  PolicyTraits t;
  t.options = kReadsSinks | kReadsRecent | kReadsSkipLayers;
  t.listing = 4;
  return t;
}
KVSCOPE_REGISTER_POLICY(KnormPolicy, "knorm", "highest key L2 norm among the middle tokens, per head", knorm_traits());

}  // namespace
}  // namespace kvscope
