// The built-in merge weightings. Each is a class and a registration line; a researcher's
// own weighting is a file like this one in this directory (picked up by CMake automatically).
#include <algorithm>
#include <cmath>

#include "cache/device_cells.h"
#include "cache/merge_weighting.h"

namespace kvscope {
namespace {

// Convex weight x / (x + y); an even split when both are zero (cannot happen with softmax).
double share(double x, double y) { return x + y > 0 ? x / (x + y) : 0.5; }

// WeightedKV as published: historical average attention a/n of each side.
class AverageAttention : public MergeWeighting {
 public:
  double weight(const MergeCandidate& c) const override {
    return share(c.acc_j / std::max(1.0, c.count_j), c.acc_r / std::max(1.0, c.count_r));
  }
  at::Tensor weight_on_device(const MergeCandidateTensors& c) const override {
    return convex_share(c.acc_j / c.count_j.clamp_min(1.0), c.acc_r / c.count_r.clamp_min(1.0));
  }
};
KVSCOPE_REGISTER_MERGE_WEIGHTING(AverageAttention, "avg-attention", "a_j/n_j : a_r/n_r, the paper's weighting (default)");

// H2O-style accumulated sums, which favour older tokens.
class AccumulatedAttention : public MergeWeighting {
 public:
  double weight(const MergeCandidate& c) const override { return share(c.acc_j, c.acc_r); }
  at::Tensor weight_on_device(const MergeCandidateTensors& c) const override { return convex_share(c.acc_j, c.acc_r); }
};
KVSCOPE_REGISTER_MERGE_WEIGHTING(AccumulatedAttention, "acc-attention", "a_j : a_r, accumulated attention sums");

class Uniform : public MergeWeighting {
 public:
  double weight(const MergeCandidate&) const override { return 0.5; }
  at::Tensor weight_on_device(const MergeCandidateTensors& c) const override { return at::full_like(c.acc_j, 0.5); }
};
KVSCOPE_REGISTER_MERGE_WEIGHTING(Uniform, "uniform", "1/2 : 1/2");

// e_j/(e_j+e_r) for the current query: the convex approximation of the ideal merge (methods §3, Eq. 6).
class CurrentSoftmax : public MergeWeighting {
 public:
  double weight(const MergeCandidate& c) const override { return share(c.current_j, c.current_r); }
  at::Tensor weight_on_device(const MergeCandidateTensors& c) const override { return convex_share(c.current_j, c.current_r); }
};
KVSCOPE_REGISTER_MERGE_WEIGHTING(CurrentSoftmax, "current-softmax", "e_j : e_r of the current query's softmax");

// Each slot counts as many tokens as it already summarises: a running mean of the values.
class Multiplicity : public MergeWeighting {
 public:
  double weight(const MergeCandidate& c) const override { return share(c.mult_j, c.mult_r); }
  at::Tensor weight_on_device(const MergeCandidateTensors& c) const override { return convex_share(c.mult_j, c.mult_r); }
};
KVSCOPE_REGISTER_MERGE_WEIGHTING(Multiplicity, "multiplicity", "m_j : m_r, the number of original tokens in each slot");

// Blend in proportion to how alike the keys are: identical keys split evenly, orthogonal or
// opposed keys leave the receiver's value untouched.
class KeySimilarity : public MergeWeighting {
 public:
  double weight(const MergeCandidate& c) const override {
    return 0.5 * std::max(0.0, cosine_similarity(*c.key_j, *c.key_r));
  }
  at::Tensor weight_on_device(const MergeCandidateTensors& c) const override {
    return 0.5 * cosine_similarity_rows(c.key_j, c.key_r).clamp_min(0.0);
  }
  bool needs_keys() const override { return true; }
};
KVSCOPE_REGISTER_MERGE_WEIGHTING(KeySimilarity, "key-similarity", "max(0, cos(k_j, k_r)) / 2");

}  // namespace
}  // namespace kvscope
