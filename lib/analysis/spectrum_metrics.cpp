#include "analysis/spectrum_metrics.h"

#include <cmath>

namespace kvscope {

int energy_rank(const std::vector<double>& energy, double threshold) {
  for (size_t i = 0; i < energy.size(); ++i) {
    if (energy[i] >= threshold) return static_cast<int>(i + 1);
  }
  return static_cast<int>(energy.size());
}

SpectrumMetrics spectrum_metrics(const std::vector<double>& sigma) {
  SpectrumMetrics m;
  const size_t n = sigma.size();
  m.normalized.assign(n, 0.0);
  m.fraction.assign(n, 0.0);
  m.energy.assign(n, 0.0);
  if (n == 0) return m;
  double total = 0, total_sq = 0;
  for (double s : sigma) { total += s; total_sq += s * s; }
  double cum = 0, entropy = 0;
  for (size_t i = 0; i < n; ++i) {
    m.normalized[i] = sigma[0] > 0 ? sigma[i] / sigma[0] : 0.0;
    m.fraction[i] = total > 0 ? sigma[i] / total : 0.0;
    cum += sigma[i] * sigma[i];
    m.energy[i] = total_sq > 0 ? cum / total_sq : 0.0;
    if (m.fraction[i] > 0) entropy -= m.fraction[i] * std::log(m.fraction[i]);
  }
  // The same additions in the same order make cum == total_sq, but say it outright.
  if (total_sq > 0) m.energy[n - 1] = 1.0;
  m.rank90 = energy_rank(m.energy, 0.90);
  m.rank95 = energy_rank(m.energy, 0.95);
  m.rank99 = energy_rank(m.energy, 0.99);
  m.entropy_rank = total > 0 ? std::exp(entropy) : 0.0;
  return m;
}

}  // namespace kvscope
