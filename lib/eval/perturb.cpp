#include "eval/perturb.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <algorithm>
#include <map>

#include "analysis/perturbation.h"
#include "cache/policy_cache.h"
#include "core/error.h"
#include "model/llama.h"
#include "model/observer.h"

namespace kvscope {
namespace {

// Per layer: attention output [H, hd], probabilities [H, S] and key positions [KV, S].
struct StepCapture : ForwardObserver {
  bool wants_attention(int) const override { return true; }
  void on_layer(const LayerActivations& a) override {
    out[a.layer] = a.attention_output.select(1, a.attention_output.size(1) - 1).to(at::kCPU, at::kDouble).contiguous();
    probs[a.layer] = a.attention->select(1, a.attention->size(1) - 1).to(at::kCPU, at::kDouble).contiguous();
    at::Tensor kp = a.key_positions;
    if (kp.dim() == 1) kp = kp.unsqueeze(0).expand({probs[a.layer].size(0), kp.size(0)});
    key_pos[a.layer] = kp.to(at::kCPU).contiguous();
  }
  std::map<int, at::Tensor> out, probs, key_pos;
};

double kl_divergence(const at::Tensor& logits_p, const at::Tensor& logits_q) {
  const at::Tensor lp = at::log_softmax(logits_p.to(at::kCPU, at::kDouble), -1);
  const at::Tensor lq = at::log_softmax(logits_q.to(at::kCPU, at::kDouble), -1);
  return (lp.exp() * (lp - lq)).sum().item<double>();
}

}  // namespace

PerturbDocumentResult run_perturbation(const LlamaModel& model, const std::vector<int64_t>& ids, const PerturbOptions& o,
                                       const std::function<void(int64_t)>& on_step) {
  const ModelConfig& c = model.config();
  const int64_t T = static_cast<int64_t>(ids.size());
  if (o.at < 2) fail("--at must be at least 2");
  if (o.at < o.sinks + 2) {
    fail("--at ", o.at, " leaves no token to merge after ", o.sinks, " sinks and the newest token; use --at ", o.sinks + 2,
         " or more, or fewer --sinks");
  }
  if (o.steps < 1) fail("--steps must be at least 1");
  if (o.at + o.steps > T) fail("the text has ", T, " tokens; --at ", o.at, " + --steps ", o.steps, " needs ", o.at + o.steps);
  if (o.positions == PositionMode::Original && o.at + o.steps > c.max_position_embeddings) {
    fail("--at + --steps (", o.at + o.steps, ") exceeds the model's context of ", c.max_position_embeddings);
  }
  const int64_t H = c.num_heads, KV = c.num_kv_heads, group = H / KV;
  const int64_t L = static_cast<int64_t>(o.layers.size());
  const auto t_start = std::chrono::steady_clock::now();

  const PolicyCacheConfig cfg{c.num_layers, H, KV, c.head_dim, model.dtype(), model.device(), o.positions, AttentionAggregation::Mean};
  PolicyOptions full_opts;
  PolicyCache full(cfg, std::shared_ptr<CachePolicy>(make_policy("full", full_opts)), model.rope(), T + 1);
  const at::Tensor all = at::tensor(ids, at::TensorOptions().dtype(at::kLong));
  // Prefill leaves the same state as decoding (no eviction happens in the full cache).
  model.forward(all.narrow(0, 0, o.at), 0, full, nullptr, Logits::None);

  PerturbDocumentResult result;
  std::vector<PolicyCache> caches;
  for (const std::string& v : o.variants) {
    PerturbVariantResult r;
    r.name = v;
    r.merged.assign(L * KV * 2, -1);
    r.weights.assign(L * KV, std::nan(""));
    PolicyCache pc = full.clone();
    if (v != "none") {
      // The WeightedKV choice (victim and receiver); "evict" then drops the value instead.
      const bool evict = v == "evict";
      PolicyOptions po;
      po.budget = full.size(0) - 1;
      po.sinks = o.sinks;
      po.recent = 1;  // the newest token is never the one merged away (Algorithm 1)
      po.receiver = o.receiver;
      if (!evict) po.weighting = v;
      auto policy = make_policy("weightedkv", po);
      for (int64_t li = 0; li < L; ++li) {
        const int layer = o.layers[li];
        std::vector<HeadCells> heads;
        for (int64_t h = 0; h < KV; ++h) heads.push_back(pc.cells(layer, static_cast<int>(h)));
        std::vector<Decision> decisions(KV);
        policy->decide(layer, heads, *pc.key_source(layer), decisions);
        for (int64_t h = 0; h < KV; ++h) {
          if (std::find(o.kv_heads.begin(), o.kv_heads.end(), h) == o.kv_heads.end()) {
            decisions[h] = Decision{};
            continue;
          }
          const HeadCells& s = heads[h];
          Decision& d = decisions[h];
          r.merged[(li * KV + h) * 2] = value_of(s.position(s.slot(d.victim)));
          r.merged[(li * KV + h) * 2 + 1] = value_of(s.position(s.slot(d.receiver)));
          if (evict) {
            d.kind = Decision::Drop;
            d.weight = 0.0;
          }
          r.weights[li * KV + h] = d.kind == Decision::ConvexMerge ? d.weight : 0.0;
        }
        pc.apply_decisions(layer, decisions);
      }
      pc.check_invariants();
    }
    const size_t n = static_cast<size_t>(o.steps * L * H);
    r.cos_output.assign(n, 0);
    r.rel_output.assign(n, 0);
    r.cos_attention_dropped.assign(n, 0);
    r.cos_attention_added.assign(n, 0);
    r.kl.assign(o.steps, 0);
    result.variants.push_back(std::move(r));
    caches.push_back(std::move(pc));
  }

  // The full run and every perturbed run step together: one forward_step per token, which
  // reads the weights once for all of them and gives each run what it would get alone.
  double decode_seconds = 0;
  std::vector<StepCapture> captures(caches.size() + 1);
  std::vector<LlamaModel::DecodeSlot> slots(caches.size() + 1);
  for (int64_t s = 0; s < o.steps; ++s) {
    const int64_t pos = o.at + s;
    for (auto& c : captures) c = StepCapture{};
    slots[0] = {ids[pos], pos, &full, &captures[0]};
    for (size_t vi = 0; vi < caches.size(); ++vi) slots[vi + 1] = {ids[pos], pos, &caches[vi], &captures[vi + 1]};
    const auto t0 = std::chrono::steady_clock::now();
    const at::Tensor step_logits = model.forward_step(slots);
    decode_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const StepCapture& ref = captures[0];
    const at::Tensor ref_logits = step_logits.narrow(0, 0, 1);
    for (size_t vi = 0; vi < caches.size(); ++vi) {
      PerturbVariantResult& r = result.variants[vi];
      const StepCapture& cap = captures[vi + 1];
      const at::Tensor logits = step_logits.narrow(0, static_cast<int64_t>(vi) + 1, 1);
      r.kl[s] = kl_divergence(ref_logits[0], logits[0]);
      for (int64_t li = 0; li < L; ++li) {
        const int layer = o.layers[li];
        const at::Tensor& fo = ref.out.at(layer);
        const at::Tensor& po = cap.out.at(layer);
        for (int64_t h = 0; h < H; ++h) {
          const int64_t kv = h / group;
          const size_t k = static_cast<size_t>((s * L + li) * H + h);
          const int64_t hd = fo.size(1);
          const std::vector<double> a(fo.data_ptr<double>() + h * hd, fo.data_ptr<double>() + (h + 1) * hd);
          const std::vector<double> b(po.data_ptr<double>() + h * hd, po.data_ptr<double>() + (h + 1) * hd);
          r.cos_output[k] = cosine(b, a);
          r.rel_output[k] = relative_l2(b, a);
          // Align the two attention rows by original position over the perturbed run's keys.
          const at::Tensor& fp = ref.probs.at(layer);
          const at::Tensor& fk = ref.key_pos.at(layer);
          const int64_t fs = fp.size(1);
          const double* fprob = fp.data_ptr<double>() + h * fs;
          const int64_t* fpos = fk.data_ptr<int64_t>() + kv * fs;
          std::vector<double> by_position(static_cast<size_t>(pos + 1), 0.0);
          for (int64_t i = 0; i < fs; ++i) by_position[fpos[i]] = fprob[i];
          const int64_t dropped = r.merged[(li * KV + kv) * 2], receiver = r.merged[(li * KV + kv) * 2 + 1];
          const at::Tensor& pp = cap.probs.at(layer);
          const at::Tensor& pk = cap.key_pos.at(layer);
          const int64_t ps = pp.size(1);
          const double* pprob = pp.data_ptr<double>() + h * ps;
          const int64_t* ppos = pk.data_ptr<int64_t>() + kv * ps;
          std::vector<double> pv(ps), f_drop(ps), f_add(ps);
          for (int64_t i = 0; i < ps; ++i) {
            const int64_t p = ppos[i];
            pv[i] = pprob[i];
            // A slot this head does not hold (a merge in other heads only) is hidden from
            // attention: probability 0, and a position past every query.
            if (p < 0 || p > pos) {
              f_drop[i] = f_add[i] = 0.0;
              continue;
            }
            f_drop[i] = by_position[p];
            f_add[i] = by_position[p] + (p == receiver && dropped >= 0 ? by_position[dropped] : 0.0);
          }
          r.cos_attention_dropped[k] = cosine(pv, f_drop);
          r.cos_attention_added[k] = cosine(pv, f_add);
        }
      }
    }
    if (on_step) on_step(s + 1);
  }
  result.decode_seconds = decode_seconds;
  result.total_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return result;
}

}  // namespace kvscope
