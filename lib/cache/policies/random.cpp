// Uniform eviction among the middle tokens: the floor every informed rule must beat.
// Draw protocol (replayable): one 64-bit draw per (step, layer, head), in that order.
#include <random>

#include "cache/device_cells.h"
#include "cache/policy_registry.h"

namespace kvscope {
namespace {

class RandomPolicy : public CachePolicy {
 public:
  explicit RandomPolicy(const PolicyOptions& o) : CachePolicy(o), rng_(o.seed) {}
  void decide(int, const std::vector<HeadCells>& heads, const StepView&, std::vector<Decision>& out) override {
    for (size_t h = 0; h < heads.size(); ++h) {
      const Region r = middle(heads[h]);
      out[h] = Decision::drop(r.begin + static_cast<int>(rng_() % static_cast<uint64_t>(r.end - r.begin)));
    }
  }
  // The draws depend on the head sizes only, so the device path takes the same ones.
  bool decide_on_device(int, const DeviceStep& step, DeviceDecision& out) override {
    std::vector<int64_t> victims;
    for (const int64_t n : step.cells.sizes()) {
      const Region r = middle(n);
      victims.push_back(r.begin + static_cast<int64_t>(rng_() % static_cast<uint64_t>(r.end - r.begin)));
    }
    out = DeviceDecision::drops(upload(victims, step.cells.device()));
    return true;
  }

 private:
  std::mt19937_64 rng_;
};

PolicyTraits random_traits() {
  PolicyTraits t;
  t.options = kReadsSinks | kReadsRecent | kReadsSeed;
  t.listing = 5;
  return t;
}
KVSCOPE_REGISTER_POLICY(RandomPolicy, "random", "uniform among the middle tokens, per head, seeded", random_traits());

}  // namespace
}  // namespace kvscope
