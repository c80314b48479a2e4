#include "eval/perturbation_log.h"

#include <ATen/ATen.h>

#include "analysis/perturbation.h"

namespace kvscope {
namespace {

std::vector<double> row(const at::Tensor& t) {
  const at::Tensor h = t.to(at::kCPU, at::kDouble).contiguous();
  return std::vector<double>(h.data_ptr<double>(), h.data_ptr<double>() + h.numel());
}

}  // namespace

std::vector<double> PerturbationLog::output_after(const Decision& d, const HeadCells& s, const at::Tensor& values,
                                                  const at::Tensor& probs, std::vector<double>* before) {
  // probs: [slots] of one query head; values: [slots, hd] of its KV head.
  const std::vector<double> a = row(probs);
  const int64_t S = static_cast<int64_t>(a.size());
  const at::Tensor v = values.narrow(0, 0, S).to(at::kCPU, at::kDouble).contiguous();
  const std::vector<double> o = row(at::matmul(at::tensor(a, at::kDouble), v));
  if (before) *before = o;
  const int32_t j = index_of(s.slot(d.victim));
  const std::vector<double> vj = row(v[j]);
  switch (d.kind) {
    case Decision::Drop: return output_after_eviction(o, a[j], vj);
    case Decision::ConvexMerge: {
      const int32_t r = index_of(s.slot(d.receiver));
      const std::vector<double> vr = row(v[r]);
      std::vector<double> merged(vr.size());
      for (size_t k = 0; k < vr.size(); ++k) merged[k] = d.weight * vj[k] + (1 - d.weight) * vr[k];
      return output_after_merge(o, a[j], vj, a[r], vr, merged);
    }
    case Decision::AdditiveMerge: {
      std::vector<double> out(o.size());
      double added = 0;
      for (int t : d.targets) added += a[index_of(s.slot(t))];
      for (size_t k = 0; k < o.size(); ++k) out[k] = (o[k] - a[j] * vj[k] + added * d.scale * vj[k]) / (1.0 - a[j]);
      return out;
    }
    case Decision::None: break;
  }
  return o;
}

void PerturbationLog::on_decisions(int layer, const std::vector<HeadCells>& heads, const std::vector<Decision>& decisions,
                                   const at::Tensor& values, const at::Tensor& probabilities) {
  const int64_t KV = static_cast<int64_t>(heads.size());
  const int64_t H = probabilities.size(0), group = H / KV, T = probabilities.size(1);
  for (int64_t h = 0; h < KV; ++h) {
    if (decisions[h].kind == Decision::None) continue;
    for (int64_t g = 0; g < group; ++g) {
      const int64_t qh = h * group + g;
      std::vector<double> before;
      const auto after = output_after(decisions[h], heads[h], values[h], probabilities[qh][T - 1], &before);
      events_.push_back(PerturbationEvent{step_, layer, static_cast<int32_t>(qh), relative_l2(after, before), cosine(after, before)});
    }
  }
}

}  // namespace kvscope
