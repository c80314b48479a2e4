// StreamingLLM (methods §2.3): the sinks and the most recent budget - sinks tokens.
#include "cache/device_cells.h"
#include "cache/policy_registry.h"

namespace kvscope {
namespace {

class StreamingPolicy : public CachePolicy {
 public:
  using CachePolicy::CachePolicy;
  void decide(int, const std::vector<HeadCells>& heads, const StepView&, std::vector<Decision>& out) override {
    for (size_t h = 0; h < heads.size(); ++h) out[h] = Decision::drop(middle(heads[h]).begin);
  }
  bool decide_on_device(int, const DeviceStep& step, DeviceDecision& out) override {
    out = DeviceDecision::drops(per_head_tensor(middle_bounds(step.cells.sizes()).begin, step.cells.device()));
    return true;
  }
};

PolicyTraits streaming_traits() {
  PolicyTraits t;
  t.recent_default = RecentDefault::AllButSinks;
  t.options = kReadsSinks;
  t.listing = 1;
  return t;
}
KVSCOPE_REGISTER_POLICY(StreamingPolicy, "streaming", "sinks + the most recent budget - sinks tokens", streaming_traits());

}  // namespace
}  // namespace kvscope
