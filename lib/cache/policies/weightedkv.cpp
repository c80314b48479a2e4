// WeightedKV (Algorithm 1; methods §3): the middle token with the lowest average attention
// a/n loses its key; its value merges into a receiver (the right neighbour by default) with
// convex weights from a registered merge weighting; the receiver keeps its own key, a and n.
// The newest token is never a candidate. weightedkv-evict is the paper's ablation: the
// same choice, the value dropped too.
#include <algorithm>
#include <memory>

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
