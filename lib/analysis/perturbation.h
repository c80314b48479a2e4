#pragma once
// Closed forms for how one eviction or merge changes a head's attention output at the step
// it happens (methods §4, Eqs. 6–9). A is the softmax row over the cache before the change, o the
// output; entries j (dropped) and r (receiver).
#include <vector>

namespace kvscope {

using Vector = std::vector<double>;

// Eviction of j: o' = (o - A_j v_j) / (1 - A_j).
Vector output_after_eviction(const Vector& o, double a_j, const Vector& v_j);
// Merge of j into r (r keeps its key, its value becomes v_merged):
// o' = (o - A_j v_j - A_r v_r + A_r v_merged) / (1 - A_j).
Vector output_after_merge(const Vector& o, double a_j, const Vector& v_j, double a_r, const Vector& v_r, const Vector& v_merged);

// The query-dependent ideal value for dropping key j while keeping key r (methods §4, Eq. 6):
// with e_i = exp(q.k_i * scale) and S = sum e_i,
// v~ = (1 - e_j/S)(c v_j + v_r) - (c/S) sum_{i != j, r} e_i v_i, where c = exp(q.(k_j - k_r) scale).
Vector ideal_merged_value(const Vector& q, const std::vector<Vector>& keys, const std::vector<Vector>& values, int j, int r,
                          double scale);

// Softmax attention output of one query over keys/values (the brute-force reference).
Vector attention_output(const Vector& q, const std::vector<Vector>& keys, const std::vector<Vector>& values, double scale,
                        Vector* probabilities = nullptr);

double cosine(const Vector& a, const Vector& b);
double relative_l2(const Vector& changed, const Vector& reference);

}  // namespace kvscope
