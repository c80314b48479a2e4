// The eviction policies. Each decides, for one layer that is one token over budget, which
// token leaves each KV head and what happens to its value. Ties go to the earliest token.
#include <algorithm>
#include <cmath>
#include <limits>

#include "cache/policy.h"
#include "core/error.h"

namespace kvscope {
namespace {

// The region a policy may evict from: [begin, end) in sequence order.
struct Region {
  int begin, end;
  bool empty() const { return begin >= end; }
};

class SplitPolicy : public CachePolicy {
 public:
  SplitPolicy(std::string name, const PolicyOptions& o) : name_(std::move(name)) {
    sinks_ = o.sinks;
    recent_ = o.recent;
  }
  const std::string& name() const override { return name_; }

 protected:
  Region middle(const HeadState& h) const {
    const int n = static_cast<int>(h.order.size());
    return Region{static_cast<int>(sinks_), n - static_cast<int>(recent_)};
  }
  template <typename Score>
  static int argmin(Region r, Score score) {
    int best = r.begin;
    double best_score = std::numeric_limits<double>::infinity();
    for (int i = r.begin; i < r.end; ++i) {
      const double s = score(i);
      if (s < best_score) { best_score = s; best = i; }
    }
    return best;
  }
  std::string name_;
};

class FullPolicy : public SplitPolicy {
 public:
  using SplitPolicy::SplitPolicy;
  bool compresses_layer(int) const override { return false; }
  void decide(int, const std::vector<HeadState>&, const KeySource&, std::vector<Decision>&) override {}
};

class StreamingPolicy : public SplitPolicy {
 public:
  using SplitPolicy::SplitPolicy;
  void decide(int, const std::vector<HeadState>& heads, const KeySource&, std::vector<Decision>& out) override {
    for (size_t h = 0; h < heads.size(); ++h) out[h] = Decision::drop(middle(heads[h]).begin);
  }
};

class H2OPolicy : public SplitPolicy {
 public:
  using SplitPolicy::SplitPolicy;
  void decide(int, const std::vector<HeadState>& heads, const KeySource&, std::vector<Decision>& out) override {
    for (size_t h = 0; h < heads.size(); ++h) {
      const HeadState& s = heads[h];
      out[h] = Decision::drop(argmin(middle(s), [&](int i) { return s.acc[s.order[i]]; }));
    }
  }
};

// One token set per layer: the last query's attention averaged over every head of the layer.
class TovaPolicy : public SplitPolicy {
 public:
  using SplitPolicy::SplitPolicy;
  void decide(int, const std::vector<HeadState>& heads, const KeySource&, std::vector<Decision>& out) override {
    const HeadState& first = heads[0];
    const int j = argmin(middle(first), [&](int i) {
      double total = 0;
      for (const HeadState& s : heads) total += s.current_mean[s.order[i]];
      return total / static_cast<double>(heads.size());
    });
    for (size_t h = 0; h < heads.size(); ++h) out[h] = Decision::drop(j);
  }
};

class KnormPolicy : public SplitPolicy {
 public:
  KnormPolicy(std::string name, const PolicyOptions& o) : SplitPolicy(std::move(name), o), skip_(o.skip_layers) {}
  bool compresses_layer(int layer) const override { return std::find(skip_.begin(), skip_.end(), layer) == skip_.end(); }
  void decide(int, const std::vector<HeadState>& heads, const KeySource&, std::vector<Decision>& out) override {
    for (size_t h = 0; h < heads.size(); ++h) {
      const HeadState& s = heads[h];
      out[h] = Decision::drop(argmin(middle(s), [&](int i) { return -static_cast<double>(s.key_norm[s.order[i]]); }));
    }
  }

 private:
  std::vector<int> skip_;
};

// Draw protocol (replayable): one 64-bit draw per (step, layer, head), in that order.
class RandomPolicy : public SplitPolicy {
 public:
  RandomPolicy(std::string name, const PolicyOptions& o) : SplitPolicy(std::move(name), o), rng_(o.seed) {}
  void decide(int, const std::vector<HeadState>& heads, const KeySource&, std::vector<Decision>& out) override {
    for (size_t h = 0; h < heads.size(); ++h) {
      const Region r = middle(heads[h]);
      out[h] = Decision::drop(r.begin + static_cast<int>(rng_() % static_cast<uint64_t>(r.end - r.begin)));
    }
  }

 private:
  std::mt19937_64 rng_;
};

// StreamingLLM layout; the token leaving the recent window adds v/N to the next N values
// with probability min(1, A_e / mean A of those N), A being accumulated attention (CaM's
// streaming code). Draw protocol: one 64-bit draw per (step, layer, head).
class CamPolicy : public SplitPolicy {
 public:
  CamPolicy(std::string name, const PolicyOptions& o) : SplitPolicy(std::move(name), o), n_(o.cam_merge_count), rng_(o.seed) {}
  void decide(int, const std::vector<HeadState>& heads, const KeySource&, std::vector<Decision>& out) override {
    for (size_t h = 0; h < heads.size(); ++h) {
      const HeadState& s = heads[h];
      const int j = middle(s).begin;
      Decision d = Decision::drop(j);
      double mean_target = 0;
      for (int t = j + 1; t < static_cast<int>(s.order.size()) && t <= j + n_; ++t) {
        d.targets.push_back(t);
        mean_target += s.acc[s.order[t]];
      }
      const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
      if (!d.targets.empty()) {
        mean_target /= static_cast<double>(d.targets.size());
        const double p = mean_target > 0 ? std::clamp(s.acc[s.order[j]] / mean_target, 0.0, 1.0) : 1.0;
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
  int64_t n_;
  std::mt19937_64 rng_;
};

// WeightedKV (Algorithm 1): the middle token with the lowest average attention a/n loses its
// key; its value merges into a receiver (the right neighbour by default) with convex
// weights; the receiver keeps its own key, a and n. The newest token is never a candidate.
class WeightedKvPolicy : public SplitPolicy {
 public:
  WeightedKvPolicy(std::string name, const PolicyOptions& o, bool merge)
      : SplitPolicy(std::move(name), o), merge_(merge), receiver_(o.receiver), in_middle_(o.neighbour_in_middle),
        weighting_(make_merge_weighting(o.weighting)) {}

  void decide(int, const std::vector<HeadState>& heads, const KeySource& keys, std::vector<Decision>& out) override {
    for (size_t h = 0; h < heads.size(); ++h) {
      const HeadState& s = heads[h];
      const int n = static_cast<int>(s.order.size());
      Region r{static_cast<int>(sinks_), n - static_cast<int>(std::max<int64_t>(recent_, 1))};
      if (in_middle_ && r.end - 1 > r.begin) r.end -= 1;
      const int j = argmin(r, [&](int i) {
        const int slot = s.order[i];
        return s.acc[slot] / static_cast<double>(std::max<int64_t>(1, s.count[slot]));
      });
      if (!merge_) {
        out[h] = Decision::drop(j);
        continue;
      }
      const int recv = receiver_index(static_cast<int>(h), s, j, keys);
      const int sj = s.order[j], sr = s.order[recv];
      MergeCandidate c{s.acc[sj], s.acc[sr], static_cast<double>(s.count[sj]), static_cast<double>(s.count[sr]),
                       static_cast<double>(s.mult[sj]), static_cast<double>(s.mult[sr]), s.current[sj], s.current[sr],
                       s.key_norm[sj], s.key_norm[sr]};
      std::vector<float> kj, kr;
      if (weighting_->needs_keys()) {
        kj = keys.key(static_cast<int>(h), sj);
        kr = keys.key(static_cast<int>(h), sr);
        c.key_j = &kj;
        c.key_r = &kr;
      }
      const double w = std::clamp(weighting_->weight(c), 0.0, 1.0);
      out[h] = Decision::convex_merge(j, recv, w);
    }
  }

 private:
  int receiver_index(int head, const HeadState& s, int j, const KeySource& keys) const {
    switch (receiver_) {
      case MergeReceiver::Right: return j + 1;
      case MergeReceiver::Left: return j > 0 ? j - 1 : j + 1;
      case MergeReceiver::MostSimilarKey: {
        int64_t hd = 0;
        const std::vector<float> all = keys.keys(head, &hd);
        const int sj = s.order[j];
        const std::vector<float> kj(all.begin() + sj * hd, all.begin() + (sj + 1) * hd);
        int best = j + 1;
        double best_sim = -2;
        for (int i = 0; i < static_cast<int>(s.order.size()); ++i) {
          if (i == j) continue;
          const int si = s.order[i];
          const double sim = cosine_similarity(kj, std::vector<float>(all.begin() + si * hd, all.begin() + (si + 1) * hd));
          if (sim > best_sim) { best_sim = sim; best = i; }
        }
        return best;
      }
    }
    return j + 1;
  }

  bool merge_;
  MergeReceiver receiver_;
  bool in_middle_;
  std::unique_ptr<MergeWeighting> weighting_;
};

}  // namespace

std::vector<std::string> known_policies() {
  return {"full", "streaming", "h2o", "tova", "knorm", "random", "cam", "weightedkv", "weightedkv-evict"};
}

int64_t default_recent(const std::string& policy, int64_t budget, int64_t sinks) {
  if (policy == "streaming" || policy == "cam") return budget - sinks;
  return std::max<int64_t>(0, budget / 2 - sinks);
}

std::unique_ptr<CachePolicy> make_policy(const std::string& name, const PolicyOptions& given) {
  PolicyOptions o = given;
  if (name == "full") return std::make_unique<FullPolicy>(name, o);
  const auto known = known_policies();
  if (std::find(known.begin(), known.end(), name) == known.end()) {
    std::string list;
    for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
    fail("unknown policy '", name, "' (known: ", list, ")");
  }
  if (o.budget <= 0) fail("cache budget must be positive, got ", o.budget);
  if (o.sinks < 0) fail("--sinks must be non-negative");
  if (o.recent < 0 || name == "streaming" || name == "cam") o.recent = default_recent(name, o.budget, o.sinks);
  if (o.sinks + o.recent > o.budget) {
    fail("policy ", name, ": sinks (", o.sinks, ") + recent (", o.recent, ") exceed the budget (", o.budget, ")");
  }
  if ((name == "weightedkv" || name == "weightedkv-evict") && o.sinks + std::max<int64_t>(o.recent, 1) > o.budget) {
    fail("policy ", name, ": needs at least one middle token (sinks + max(recent, 1) <= budget)");
  }
  if (name == "streaming") return std::make_unique<StreamingPolicy>(name, o);
  if (name == "h2o") return std::make_unique<H2OPolicy>(name, o);
  if (name == "tova") return std::make_unique<TovaPolicy>(name, o);
  if (name == "knorm") return std::make_unique<KnormPolicy>(name, o);
  if (name == "random") return std::make_unique<RandomPolicy>(name, o);
  if (name == "cam") return std::make_unique<CamPolicy>(name, o);
  if (name == "weightedkv") return std::make_unique<WeightedKvPolicy>(name, o, true);
  return std::make_unique<WeightedKvPolicy>(name, o, false);
}

}  // namespace kvscope
