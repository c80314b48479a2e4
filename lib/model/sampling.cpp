#include "model/sampling.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace kvscope {

int64_t choose_token(const at::Tensor& logits, const SamplingOptions& o, std::mt19937_64& rng) {
  const at::Tensor host = logits.to(at::kCPU, at::kDouble).contiguous();
  const double* l = host.data_ptr<double>();
  const int64_t V = host.numel();
  if (o.temperature <= 0.0) return static_cast<int64_t>(std::max_element(l, l + V) - l);

  std::vector<int64_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return l[a] > l[b]; });
  int64_t keep = o.top_k > 0 ? std::min(o.top_k, V) : V;
  std::vector<double> p(keep);
  const double top = l[order[0]];
  double total = 0;
  for (int64_t i = 0; i < keep; ++i) total += p[i] = std::exp((l[order[i]] - top) / o.temperature);
  if (o.top_p < 1.0) {
    double cum = 0;
    for (int64_t i = 0; i < keep; ++i) {
      cum += p[i] / total;
      if (cum >= o.top_p) { keep = i + 1; break; }
    }
    p.resize(keep);
    total = std::accumulate(p.begin(), p.end(), 0.0);
  }
  const double u = std::uniform_real_distribution<double>(0.0, total)(rng);
  double cum = 0;
  for (int64_t i = 0; i < keep; ++i) {
    cum += p[i];
    if (u < cum) return order[i];
  }
  return order[keep - 1];
}

}  // namespace kvscope
