#include "analysis/perturbation.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace kvscope {

Vector output_after_eviction(const Vector& o, double a_j, const Vector& v_j) {
  Vector out(o.size());
  for (size_t d = 0; d < o.size(); ++d) out[d] = (o[d] - a_j * v_j[d]) / (1.0 - a_j);
  return out;
}

Vector output_after_merge(const Vector& o, double a_j, const Vector& v_j, double a_r, const Vector& v_r, const Vector& v_merged) {
  Vector out(o.size());
  for (size_t d = 0; d < o.size(); ++d) out[d] = (o[d] - a_j * v_j[d] - a_r * v_r[d] + a_r * v_merged[d]) / (1.0 - a_j);
  return out;
}

Vector attention_output(const Vector& q, const std::vector<Vector>& keys, const std::vector<Vector>& values, double scale,
                        Vector* probabilities) {
  const size_t n = keys.size();
  Vector logits(n);
  double mx = -1e300;
  for (size_t i = 0; i < n; ++i) {
    double dot = 0;
    for (size_t d = 0; d < q.size(); ++d) dot += q[d] * keys[i][d];
    logits[i] = dot * scale;
    mx = std::max(mx, logits[i]);
  }
  double z = 0;
  for (double& l : logits) z += (l = std::exp(l - mx));
  Vector o(values.empty() ? 0 : values[0].size(), 0.0);
  for (size_t i = 0; i < n; ++i) {
    logits[i] /= z;
    for (size_t d = 0; d < o.size(); ++d) o[d] += logits[i] * values[i][d];
  }
  if (probabilities) *probabilities = logits;
  return o;
}

Vector ideal_merged_value(const Vector& q, const std::vector<Vector>& keys, const std::vector<Vector>& values, int j, int r,
                          double scale) {
  if (j == r) fail("ideal_merged_value: j and r must differ");
  const size_t n = keys.size();
  Vector logit(n);
  double mx = -1e300;
  for (size_t i = 0; i < n; ++i) {
    double dot = 0;
    for (size_t d = 0; d < q.size(); ++d) dot += q[d] * keys[i][d];
    mx = std::max(mx, logit[i] = dot * scale);
  }
  // Everything is scaled by exp(-mx); the formula is homogeneous in e, so it is unchanged.
  Vector e(n);
  double S = 0;
  for (size_t i = 0; i < n; ++i) S += (e[i] = std::exp(logit[i] - mx));
  const double c = std::exp(logit[j] - logit[r]);
  Vector out(values[0].size(), 0.0);
  for (size_t d = 0; d < out.size(); ++d) {
    double rest = 0;
    for (size_t i = 0; i < n; ++i) {
      if (static_cast<int>(i) != j && static_cast<int>(i) != r) rest += e[i] * values[i][d];
    }
    out[d] = (1.0 - e[j] / S) * (c * values[j][d] + values[r][d]) - (c / S) * rest;
  }
  return out;
}

double cosine(const Vector& a, const Vector& b) {
  if (a == b) return 1.0;  // exactly, which rounding in the general formula does not promise
  double dot = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  if (na == 0 && nb == 0) return 1.0;
  return na > 0 && nb > 0 ? dot / std::sqrt(na * nb) : 0.0;
}

double relative_l2(const Vector& changed, const Vector& reference) {
  double diff = 0, ref = 0;
  for (size_t i = 0; i < changed.size(); ++i) {
    diff += (changed[i] - reference[i]) * (changed[i] - reference[i]);
    ref += reference[i] * reference[i];
  }
  return ref > 0 ? std::sqrt(diff / ref) : std::sqrt(diff);
}

}  // namespace kvscope
