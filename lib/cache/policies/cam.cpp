// CaM (methods §2.7): StreamingLLM's layout; the token leaving the recent window adds v/N to
// the next N values with probability min(1, a_e / mean a of those N), as CaM's streaming
// code does. Draw protocol: one 64-bit draw per (step, layer, head).
#include <algorithm>
#include <random>

#include "cache/policy_registry.h"

namespace kvscope {
namespace {

class CamPolicy : public CachePolicy {
 public:
  explicit CamPolicy(const PolicyOptions& o) : CachePolicy(o), rng_(o.seed) {}
  void decide(int, const std::vector<HeadCells>& heads, const StepView&, std::vector<Decision>& out) override {
    const int64_t n_targets = options_.cam_merge_count;
    for (size_t h = 0; h < heads.size(); ++h) {
      const HeadCells& s = heads[h];
      const int j = middle(s).begin;
      Decision d = Decision::drop(j);
      double mean_target = 0;
      for (int t = j + 1; t < s.size() && t <= j + n_targets; ++t) {
        d.targets.push_back(t);
        mean_target += s.attention_sum(s.slot(t));
      }
      const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
      if (!d.targets.empty()) {
        mean_target /= static_cast<double>(d.targets.size());
        const double p = mean_target > 0 ? std::clamp(s.attention_sum(s.slot(j)) / mean_target, 0.0, 1.0) : 1.0;
        if (u < p) {
          d.kind = Decision::AdditiveMerge;
          d.scale = 1.0 / static_cast<double>(d.targets.size());
        }
      }
      if (d.kind == Decision::Drop) d.targets.clear();
      out[h] = std::move(d);
    }
  }

 private:
  std::mt19937_64 rng_;
};

PolicyTraits cam_traits() {
  PolicyTraits t;
  t.reads_attention = true;
  t.merges_values = true;
  t.recent_default = RecentDefault::AllButSinks;
  t.options = kReadsSinks | kReadsSeed | kReadsCamMerge;
  t.listing = 6;
  return t;
}
KVSCOPE_REGISTER_POLICY(CamPolicy, "cam", "streaming layout; the evicted value is added to the next N values with probability min(1, a_e / mean a)",
                        cam_traits());

}  // namespace
}  // namespace kvscope
