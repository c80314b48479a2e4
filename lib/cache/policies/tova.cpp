// TOVA (methods §2.5): one token set per layer; the middle token with the lowest attention
// from the last query, averaged over every query head of the layer, leaves every KV head.
#include "cache/device_cells.h"
#include "cache/policy_registry.h"
#include "core/error.h"

namespace kvscope {
namespace {

class TovaPolicy : public CachePolicy {
 public:
  using CachePolicy::CachePolicy;
  void decide(int, const std::vector<HeadCells>& heads, const StepView& step, std::vector<Decision>& out) override {
    const HeadCells& first = heads[0];
    for (const HeadCells& s : heads) {
      if (s.size() != first.size()) fail("tova keeps one token set per layer, but the heads of a layer hold different numbers of tokens");
    }
    const int kv = static_cast<int>(heads.size()), group = step.query_heads() / kv;
    std::vector<const float*> rows;
    for (int q = 0; q < kv * group; ++q) rows.push_back(step.attention_row(q));
    // Each KV head's group mean first, then the mean over KV heads: the float64 order the
    // score has always been computed in.
    const int j = argmin_near(middle(first), [&](int i) {
      double total = 0;
      for (int h = 0; h < kv; ++h) {
        const int32_t slot = index_of(heads[static_cast<size_t>(h)].slot(i));
        double sum = 0;
        for (int g = 0; g < group; ++g) sum += static_cast<double>(rows[static_cast<size_t>(h * group + g)][slot]);
        total += sum / static_cast<double>(group);
      }
      return total / static_cast<double>(kv);
    });
    for (size_t h = 0; h < heads.size(); ++h) out[h] = Decision::drop(j);
  }
  bool decide_on_device(int, const DeviceStep& step, DeviceDecision& out) override {
    const DeviceCells& c = step.cells;
    for (const int64_t n : c.sizes()) {
      if (n != c.sizes().front()) fail("tova keeps one token set per layer, but the heads of a layer hold different numbers of tokens");
    }
    if (!step.last_query.defined()) fail("internal: this decision was made outside a decode step and cannot read attention");
    const int64_t kv = c.kv_heads(), group = step.query_heads / kv, S = step.last_query.size(1);
    // The host rule's float64 order: each KV head's group mean, then the mean over KV heads.
    const at::Tensor group_mean = sum_in_order(step.last_query.to(at::kDouble).reshape({kv, group, S}), 1) / static_cast<double>(group);
    at::Tensor per_slot = at::zeros({kv, c.capacity()}, group_mean.options());
    per_slot.narrow(1, 0, S).copy_(group_mean);
    const at::Tensor score = sum_in_order(c.in_order(per_slot), 0).unsqueeze(0) / static_cast<double>(kv);
    const Bounds b = middle_bounds({c.sizes().front()});
    const at::Tensor j = argmin_near_on_device(score, c.region_mask(b.begin, b.end).narrow(0, 0, 1), kScoreTolerance);
    out = DeviceDecision::drops(j.expand({kv}).contiguous());
    return true;
  }
};

PolicyTraits tova_traits() {
  PolicyTraits t;
  t.reads_attention = true;
  t.per_layer = true;
  t.options = kReadsSinks | kReadsRecent;
  t.listing = 3;
  return t;
}
KVSCOPE_REGISTER_POLICY(TovaPolicy, "tova", "lowest attention from the last query, averaged over all heads of the layer", tova_traits());

}  // namespace
}  // namespace kvscope
