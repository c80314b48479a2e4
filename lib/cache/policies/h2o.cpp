// H2O (methods §2.4): the middle token with the lowest accumulated attention a leaves, per head.
#include "cache/device_cells.h"
#include "cache/policy_registry.h"

namespace kvscope {
namespace {

class H2OPolicy : public CachePolicy {
 public:
  using CachePolicy::CachePolicy;
  void decide(int, const std::vector<HeadCells>& heads, const StepView&, std::vector<Decision>& out) override {
    for (size_t h = 0; h < heads.size(); ++h) {
      const HeadCells& s = heads[h];
      out[h] = Decision::drop(argmin_near(middle(s), [&](int i) { return s.attention_sum(s.slot(i)); }));
    }
  }
  bool decide_on_device(int, const DeviceStep& step, DeviceDecision& out) override {
    const DeviceCells& c = step.cells;
    const Bounds b = middle_bounds(c.sizes());
    out = DeviceDecision::drops(argmin_near_on_device(c.in_order(c.attention_sum()), c.region_mask(b.begin, b.end), kScoreTolerance));
    return true;
  }
};

PolicyTraits h2o_traits() {
  PolicyTraits t;
  t.reads_attention = true;
  t.options = kReadsSinks | kReadsRecent;
  t.listing = 2;
  return t;
}
KVSCOPE_REGISTER_POLICY(H2OPolicy, "h2o", "lowest accumulated attention among the middle tokens, per head", h2o_traits());

}  // namespace
}  // namespace kvscope
