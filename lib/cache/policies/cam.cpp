// CaM (methods §2.7): StreamingLLM's layout; the token leaving the recent window adds v/N to
// the next N values with probability min(1, a_e / mean a of those N), as CaM's streaming
// code does. Draw protocol: one 64-bit draw per (step, layer, head).
#include <algorithm>
#include <random>

#include "cache/device_cells.h"
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
  bool decide_on_device(int, const DeviceStep& step, DeviceDecision& out) override {
    const DeviceCells& c = step.cells;
    const int64_t n_targets = options_.cam_merge_count;
    const at::Device dev = c.device();
    const std::vector<int64_t> first = middle_bounds(c.sizes()).begin;
    std::vector<int64_t> counts;
    std::vector<double> draws, scales;
    for (size_t h = 0; h < first.size(); ++h) {
      counts.push_back(std::max<int64_t>(0, std::min(n_targets, c.sizes()[h] - 1 - first[h])));
      draws.push_back(static_cast<double>(rng_() >> 11) * 0x1.0p-53);  // one draw per head, as on the host
      scales.push_back(counts.back() > 0 ? 1.0 / static_cast<double>(counts.back()) : 0.0);
    }
    out = DeviceDecision::drops(per_head_tensor(first, dev));
    out.target_counts = counts;
    for (size_t h = 0; h < counts.size(); ++h)
      if (counts[h] > 0) out.kinds[h] = Decision::AdditiveMerge;
    const at::Tensor column = at::arange(n_targets, at::TensorOptions().dtype(at::kLong).device(dev)).unsqueeze(0);
    out.targets = (out.victim.unsqueeze(1) + 1 + column).clamp_max(c.capacity() - 1);  // [KV, N]
    const at::Tensor acc = c.in_order(c.attention_sum());
    const at::Tensor valid = column.lt(per_head_tensor(counts, dev).unsqueeze(1));
    // Summed target by target: the host loop's order.
    const at::Tensor mean_target = sum_in_order(acc.gather(1, out.targets).masked_fill(mask_not(valid), 0.0), 1) /
                                   upload(std::vector<double>(counts.begin(), counts.end()), dev).clamp_min(1.0);
    const at::Tensor evicted = acc.gather(1, out.victim.unsqueeze(1)).squeeze(1);
    const at::Tensor p = (evicted / mean_target).clamp(0.0, 1.0).masked_fill(mask_not(mean_target.gt(0)), 1.0);
    out.scale = upload(scales, dev) * upload(draws, dev).lt(p).to(at::kDouble);
    return true;
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
