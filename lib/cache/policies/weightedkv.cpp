// WeightedKV (Algorithm 1; methods §3): the middle token with the lowest average attention
// a/n loses its key; its value merges into a receiver (the right neighbour by default) with
// convex weights from a registered merge weighting; the receiver keeps its own key, a and n.
// The newest token is never a candidate. weightedkv-evict is the paper's ablation: the
// same choice, the value dropped too.
#include <algorithm>
#include <limits>
#include <memory>

#include "cache/device_cells.h"
#include "cache/policy_registry.h"

namespace kvscope {
namespace {

class WeightedKvBase : public CachePolicy {
 public:
  WeightedKvBase(const PolicyOptions& o, bool merge)
      : CachePolicy(o), merge_(merge), weighting_(merge ? make_merge_weighting(o.weighting) : nullptr) {}

  void decide(int, const std::vector<HeadCells>& heads, const StepView& step, std::vector<Decision>& out) override {
    for (size_t h = 0; h < heads.size(); ++h) {
      const HeadCells& s = heads[h];
      Region r = middle(s, 1);
      if (options_.neighbour_in_middle && r.end - 1 > r.begin) r.end -= 1;
      const int j = argmin_near(r, [&](int i) { return s.average_attention(s.slot(i)); });
      if (!merge_) {
        out[h] = Decision::drop(j);
        continue;
      }
      const int recv = receiver_index(static_cast<int>(h), s, j, step);
      const SlotId sj = s.slot(j), sr = s.slot(recv);
      MergeCandidate c{s.attention_sum(sj), s.attention_sum(sr), static_cast<double>(s.steps(sj)), static_cast<double>(s.steps(sr)),
                       static_cast<double>(s.multiplicity(sj)), static_cast<double>(s.multiplicity(sr)), s.last_attention(sj),
                       s.last_attention(sr), s.key_norm(sj), s.key_norm(sr)};
      std::vector<float> kj, kr;
      if (weighting_->needs_keys()) {
        kj = step.key(static_cast<int>(h), sj);
        kr = step.key(static_cast<int>(h), sr);
        c.key_j = &kj;
        c.key_r = &kr;
      }
      const double w = std::clamp(weighting_->weight(c), 0.0, 1.0);
      out[h] = Decision::convex_merge(j, recv, w);
    }
  }

  bool decide_on_device(int, const DeviceStep& step, DeviceDecision& out) override {
    const DeviceCells& c = step.cells;
    Bounds b = middle_bounds(c.sizes(), 1);
    if (options_.neighbour_in_middle)
      for (size_t h = 0; h < b.end.size(); ++h)
        if (b.end[h] - 1 > b.begin[h]) b.end[h] -= 1;
    const at::Tensor fields = c.fields_in_order();  // [kv_heads, capacity, fields], one gather
    const at::Tensor acc = fields.select(2, DeviceCells::kAttentionSum), steps = fields.select(2, DeviceCells::kSteps);
    const at::Tensor j = argmin_near_on_device(acc / steps.clamp_min(1.0), c.region_mask(b.begin, b.end), kScoreTolerance);
    if (!merge_) {
      out = DeviceDecision::drops(j);
      return true;
    }
    // Stored keys stay in slot order; only the [kv_heads, capacity] similarities and the two
    // merged keys are gathered.
    const at::Tensor keys = weighting_->needs_keys() || options_.receiver == MergeReceiver::MostSimilarKey
                                ? step.keys.to(at::kFloat)
                                : at::Tensor();
    const at::Tensor r = receiver_on_device(c, j, keys);
    // Every field of each head's token at `index`, [kv_heads, fields]: one gather per side.
    auto token = [&](const at::Tensor& index) {
      return fields.gather(1, index.view({-1, 1, 1}).expand({fields.size(0), 1, fields.size(2)})).squeeze(1);
    };
    const at::Tensor fj = token(j), fr = token(r);
    MergeCandidateTensors m;
    m.acc_j = fj.select(1, DeviceCells::kAttentionSum);
    m.acc_r = fr.select(1, DeviceCells::kAttentionSum);
    m.count_j = fj.select(1, DeviceCells::kSteps);
    m.count_r = fr.select(1, DeviceCells::kSteps);
    m.mult_j = fj.select(1, DeviceCells::kMultiplicity);
    m.mult_r = fr.select(1, DeviceCells::kMultiplicity);
    m.current_j = fj.select(1, DeviceCells::kLastAttention);
    m.current_r = fr.select(1, DeviceCells::kLastAttention);
    m.key_norm_j = fj.select(1, DeviceCells::kKeyNorm);
    m.key_norm_r = fr.select(1, DeviceCells::kKeyNorm);
    if (weighting_->needs_keys()) {
      m.key_j = key_at(c, keys, j).squeeze(1);
      m.key_r = key_at(c, keys, r).squeeze(1);
    }
    const at::Tensor w = weighting_->weight_on_device(m);
    if (!w.defined()) return false;
    out = DeviceDecision::drops(j);
    out.kinds.assign(out.kinds.size(), Decision::ConvexMerge);
    out.receiver = r;
    out.weight = w.clamp(0.0, 1.0);
    return true;
  }

 private:
  // The stored key [kv_heads, 1, head_dim] of each head's token at sequence index `index`.
  static at::Tensor key_at(const DeviceCells& c, const at::Tensor& keys, const at::Tensor& index) {
    const at::Tensor slot = c.order().gather(1, index.unsqueeze(1));  // [kv_heads, 1]
    return keys.gather(1, slot.unsqueeze(2).expand({keys.size(0), 1, keys.size(2)}));
  }

  // receiver_index for every head at once; `keys` [kv_heads, capacity, head_dim] in slot
  // order when the receiver reads them.
  at::Tensor receiver_on_device(const DeviceCells& c, const at::Tensor& j, const at::Tensor& keys) const {
    switch (options_.receiver) {
      case MergeReceiver::Right: return j + 1;
      case MergeReceiver::Left: return j - 1 + 2 * j.eq(0).to(at::kLong);
      case MergeReceiver::MostSimilarKey: {
        const at::Tensor similarity = c.in_order(cosine_similarity_rows(keys, key_at(c, keys, j)));
        const at::Tensor index = at::arange(c.capacity(), j.options()).unsqueeze(0);
        const at::Tensor outside = index.eq(j.unsqueeze(1)) | index.ge(per_head_tensor(c.sizes(), c.device()).unsqueeze(1));
        // The first most similar key wins, as in the host loop.
        return at::argmax(similarity.masked_fill(outside, -std::numeric_limits<double>::infinity()), 1);
      }
    }
    return j + 1;
  }

 private:
  int receiver_index(int head, const HeadCells& s, int j, const StepView& step) const {
    switch (options_.receiver) {
      case MergeReceiver::Right: return j + 1;
      case MergeReceiver::Left: return j > 0 ? j - 1 : j + 1;
      case MergeReceiver::MostSimilarKey: {
        int64_t hd = 0;
        const std::vector<float> all = step.keys(head, &hd);
        auto row = [&](SlotId slot) {
          const auto* p = all.data() + index_of(slot) * hd;
          return std::vector<float>(p, p + hd);
        };
        const std::vector<float> kj = row(s.slot(j));
        int best = j + 1;
        double best_sim = -2;
        for (int i = 0; i < s.size(); ++i) {
          if (i == j) continue;
          const double sim = cosine_similarity(kj, row(s.slot(i)));
          if (sim > best_sim) {
            best_sim = sim;
            best = i;
          }
        }
        return best;
      }
    }
    return j + 1;
  }

  bool merge_;
  std::unique_ptr<MergeWeighting> weighting_;
};

class WeightedKv : public WeightedKvBase {
 public:
  explicit WeightedKv(const PolicyOptions& o) : WeightedKvBase(o, true) {}
};
class WeightedKvEvict : public WeightedKvBase {
 public:
  explicit WeightedKvEvict(const PolicyOptions& o) : WeightedKvBase(o, false) {}
};

PolicyTraits weightedkv_traits(bool merge) {
  PolicyTraits t;
  t.reads_attention = true;
  t.reads_keys = merge;
  t.merges_values = merge;
  t.min_recent = 1;
  t.options = kReadsSinks | kReadsRecent | kReadsNeighbourInMiddle | (merge ? kReadsWeighting | kReadsReceiver : 0u);
  t.listing = merge ? 7 : 8;
  return t;
}
KVSCOPE_REGISTER_POLICY(WeightedKv, "weightedkv",
                        "lowest a/n among the middle tokens loses its key; its value merges into a receiver with convex weights",
                        weightedkv_traits(true));
KVSCOPE_REGISTER_POLICY(WeightedKvEvict, "weightedkv-evict", "the weightedkv choice, value dropped too (the paper's ablation)",
                        weightedkv_traits(false));

}  // namespace
}  // namespace kvscope
