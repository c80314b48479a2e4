#include "model/llama.h"

#include <torch/version.h>

#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/worker_pool.h"
#include "io/safetensors.h"
#include "model/device.h"
#include "model/kv_cache.h"
#include "model/observer.h"
#include "model/row_linear.h"

namespace kvscope {

// The residual stream stays float32; a no-op conversion still costs a dispatch per call.
namespace {
at::Tensor as_float(const at::Tensor& t) { return t.scalar_type() == at::kFloat ? t : t.to(at::kFloat); }
}  // namespace

at::Tensor project(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, bool row_invariant) {
  if ((row_invariant || x.size(0) == 1) && x.device().is_cpu() && row_linear_supported(weight)) return row_linear(x, weight, bias);
  if (x.size(0) == 1) {
    at::Tensor y = at::mv(weight, x[0]);
    if (bias.defined()) y.add_(bias);
    return y.unsqueeze(0);
  }
  return bias.defined() ? at::addmm(bias, x, weight.t()) : at::mm(x, weight.t());
}

LlamaModel LlamaModel::load(const std::filesystem::path& dir, const LoadOptions& options) {
  const at::Device device = parse_device(options.device);
  const at::ScalarType dtype = parse_compute_dtype(options.dtype);
  // Not every LibTorch build has every kernel (1.13 has no float16 matrix products on CPU):
  // ask once, up front, rather than failing mid-run.
  // The probe runs each kind of product the forward pass uses, with its operand layouts.
  try {
    const auto opt = at::TensorOptions().dtype(dtype).device(device);
    const at::Tensor w = at::ones({8, 4}, opt), x = at::ones({3, 4}, opt), b = at::ones({8}, opt);
    (void)at::mv(w, x[0]);
    (void)at::mm(x, w.t());
    (void)at::addmm(b, x, w.t());
    (void)at::bmm(at::ones({2, 3, 4}, opt), at::ones({2, 4, 5}, opt).transpose(1, 2).transpose(1, 2));
  } catch (const c10::Error&) {
    fail("--dtype ", options.dtype, " is not supported on ", device.str(), " by this LibTorch (", TORCH_VERSION,
         "): its matrix products are missing; use --dtype float32 or bfloat16", device.is_cpu() ? ", or --device cuda" : "");
  }
  ModelConfig config = load_model_config(dir);
  const SafetensorsArchive archive = SafetensorsArchive::open(dir);
  ModelWeights weights = load_weights(archive, config, device, dtype);
  LlamaModel model(std::move(config), std::move(weights), device, dtype);
  model.source_ = dir.string();
  return model;
}

LlamaModel::LlamaModel(ModelConfig config, ModelWeights weights, at::Device device, at::ScalarType dtype)
    : config_(std::move(config)), weights_(std::move(weights)), device_(device), dtype_(dtype), rope_(config_, device) {
  host_rows_decode_ = decodes_on_host_rows();
}

FullKvCache LlamaModel::new_cache(int64_t capacity) const {
  return FullKvCache(config_.num_layers, config_.num_kv_heads, config_.head_dim, dtype_, device_, capacity);
}

at::Tensor LlamaModel::rms_norm(const at::Tensor& x, const at::Tensor& weight) const {
  const at::Tensor inv = at::rsqrt(x.pow(2).mean({-1}, /*keepdim=*/true) + config_.rms_norm_eps);
  const at::Tensor y = x * inv * weight;
  return y.scalar_type() == dtype_ ? y : y.to(dtype_);
}

at::Tensor LlamaModel::attention_block(int layer, const at::Tensor& x, const at::Tensor& positions,
                                       const std::vector<Segment>& segments, bool row_invariant) const {
  const LayerWeights& w = weights_.layers[layer];
  const at::Tensor q_pre = project(x, w.wq, w.bq, row_invariant);
  const at::Tensor k_pre = project(x, w.wk, w.bk, row_invariant);
  const at::Tensor v = project(x, w.wv, w.bv, row_invariant);
  // Runs attend over their own caches independently, so they are spread over the worker
  // threads; each run's arithmetic is the same whichever thread does it.
  std::vector<at::Tensor> outs(segments.size());
  // A run that has every row takes the tensors whole: four views fewer per layer, which
  // tiny models notice.
  auto rows_of = [&](const at::Tensor& t, const Segment& s) { return s.row == 0 && s.length == t.size(0) ? t : t.narrow(0, s.row, s.length); };
  auto attend_range = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const Segment& s = segments[static_cast<size_t>(i)];
      outs[static_cast<size_t>(i)] = attend(layer, rows_of(q_pre, s), rows_of(k_pre, s), rows_of(v, s), rows_of(positions, s),
                                            s.last_position, *s.cache, s.observer);
    }
  };
  if (device_.is_cpu()) parallel_rows(static_cast<int64_t>(segments.size()), 1, attend_range);
  else attend_range(0, static_cast<int64_t>(segments.size()));
  return project(outs.size() == 1 ? outs[0] : at::cat(outs, 0), w.wo, {}, row_invariant);
}

at::Tensor LlamaModel::attend(int layer, const at::Tensor& q_rows, const at::Tensor& k_rows, const at::Tensor& v_rows,
                              const at::Tensor& positions, int64_t last_position, KvCache& cache, ForwardObserver* observer) const {
  const int64_t T = q_rows.size(0), H = config_.num_heads, KV = config_.num_kv_heads, hd = config_.head_dim;
  const int64_t group = H / KV;

  // Rows [T, heads * hd] as [heads, T, hd]; for one contiguous row that is a view of the
  // same memory (one operator instead of three).
  auto by_head = [T, hd](const at::Tensor& rows, int64_t heads, bool contiguous) {
    if (T == 1 && rows.is_contiguous()) return rows.view({heads, 1, hd});
    const at::Tensor t = rows.reshape({T, heads, hd}).transpose(0, 1);
    return contiguous ? t.contiguous() : t;
  };
  const at::Tensor q_pre = by_head(q_rows, H, false);
  const at::Tensor k_pre = by_head(k_rows, KV, true);
  const at::Tensor v = by_head(v_rows, KV, true);
  const at::Tensor k = rope_.apply_known(k_pre, positions, last_position);

  const AttentionInputs in = cache.append(layer, NewEntries{k_pre, k, v, positions, last_position});
  const at::Tensor q = rope_.apply_known(q_pre, in.query_positions, in.last_query_position);  // [H, T, hd]
  const int64_t S = in.keys.size(1);

  // Query head h reads KV head h / group: grouping the query heads of one KV head into the
  // rows of one batched product avoids materialising repeated keys.
  const at::Tensor qg = q.reshape({KV, group * T, hd});
  at::Tensor scores = at::bmm(qg, in.keys.transpose(1, 2)).to(at::kFloat);  // [KV, group*T, S]
  scores.mul_(1.0 / std::sqrt(static_cast<double>(hd)));
  scores = scores.view({KV, group, T, S});

  const std::optional<int64_t> window = config_.window_for_layer(layer);
  const bool needs_mask = T > 1 || window.has_value() || in.key_positions.dim() == 2;
  if (needs_mask) {
    const at::Tensor qpos = in.query_positions.view({T, 1});
    at::Tensor kpos = in.key_positions;  // [S] or [KV, S]
    kpos = kpos.dim() == 1 ? kpos.view({1, 1, 1, S}) : kpos.view({KV, 1, 1, S});
    at::Tensor hidden = kpos.gt(qpos.view({1, 1, T, 1}));
    if (window) hidden = hidden.logical_or(qpos.view({1, 1, T, 1}) - kpos >= *window);
    scores.masked_fill_(hidden, -std::numeric_limits<float>::infinity());
  }
  const at::Tensor probs = at::softmax(scores, -1);  // fp32
  const at::Tensor out = at::bmm(probs.view({KV, group * T, S}).to(dtype_), in.values).view({H, T, hd});

  if (observer) {
    const bool give_attention = observer->wants_attention(layer);
    const at::Tensor probs_h = probs.view({H, T, S});
    observer->on_layer(LayerActivations{layer, positions, q, k_pre, k, v, give_attention ? &probs_h : nullptr,
                                        out, in.key_positions});
  }
  cache.observe_attention(layer, probs.view({H, T, S}));
  if (T == 1 && out.is_contiguous()) return out.view({1, H * hd});
  return out.transpose(0, 1).reshape({T, H * hd});
}

at::Tensor LlamaModel::mlp_block(int layer, const at::Tensor& x, bool row_invariant) const {
  const LayerWeights& w = weights_.layers[layer];
  const at::Tensor gate = project(x, w.w_gate, {}, row_invariant);
  const at::Tensor up = project(x, w.w_up, {}, row_invariant);
  at::Tensor act;
  if (row_invariant && gate.device().is_cpu() && gate.size(0) > 1) {
    // ATen's vectorised silu computes the last (numel mod vector width) elements of a
    // tensor with a scalar exp that rounds differently, so over the whole [rows, width]
    // tensor an element's value would depend on where its row starts (widths such as 172).
    // Applied row by row, each row is split exactly as it is when it runs alone.
    act = at::empty_like(gate);
    for (int64_t r = 0; r < gate.size(0); ++r) {
      at::Tensor out_row = act.select(0, r);
      at::silu_out(out_row, gate.select(0, r));
    }
  } else {
    act = at::silu(gate);
  }
  return project(act * up, w.w_down, {}, row_invariant);
}

at::Tensor LlamaModel::run_layers(const at::Tensor& ids, const at::Tensor& positions, const std::vector<Segment>& segments,
                                  bool row_invariant) const {
  at::Tensor h = weights_.embed.index_select(0, ids).to(at::kFloat);  // [rows, D] residual stream
  for (int layer = 0; layer < config_.num_layers; ++layer) {
    const LayerWeights& w = weights_.layers[layer];
    h = h + as_float(attention_block(layer, rms_norm(h, w.attn_norm), positions, segments, row_invariant));
    h = h + as_float(mlp_block(layer, rms_norm(h, w.ffn_norm), row_invariant));
  }
  return h;
}

at::Tensor LlamaModel::forward(const at::Tensor& tokens, int64_t start_position, KvCache& cache,
                               ForwardObserver* observer, Logits logits) const {
  if (tokens.dim() != 1 || tokens.size(0) == 0) fail("forward: expected a non-empty 1-D tensor of token ids");
  const int64_t T = tokens.size(0);
  if (T == 1 && host_rows_decode_) {
    const int64_t token = tokens.to(at::kCPU, at::kLong).item<int64_t>();
    return decode_host_rows({token}, {Segment{0, 1, &cache, observer, start_position}}, logits);
  }
  const at::Tensor ids = tokens.to(device_, at::kLong);
  const at::Tensor positions = at::arange(start_position, start_position + T, at::TensorOptions().dtype(at::kLong).device(device_));
  const at::Tensor h = run_layers(ids, positions, {Segment{0, T, &cache, observer, start_position + T - 1}}, /*row_invariant=*/T == 1);
  if (logits == Logits::None) return {};
  const at::Tensor last = logits == Logits::Last ? h.narrow(0, T - 1, 1) : h;
  return project(rms_norm(last, weights_.final_norm), weights_.lm_head, {}, T == 1).to(at::kFloat);
}

at::Tensor LlamaModel::forward_step(const std::vector<DecodeSlot>& slots, Logits logits) const {
  if (slots.empty()) fail("forward_step: no runs given");
  std::vector<int64_t> tokens, positions;
  std::vector<Segment> segments;
  for (const DecodeSlot& s : slots) {
    if (!s.cache) fail("forward_step: a run has no cache");
    segments.push_back(Segment{static_cast<int64_t>(tokens.size()), 1, s.cache, s.observer, s.position});
    tokens.push_back(s.token);
    positions.push_back(s.position);
  }
  if (host_rows_decode_) return decode_host_rows(tokens, segments, logits);
  const at::Tensor h = run_layers(upload(tokens, device_), upload(positions, device_), segments, /*row_invariant=*/true);
  if (logits == Logits::None) return {};
  return project(rms_norm(h, weights_.final_norm), weights_.lm_head, {}, true).to(at::kFloat);
}

}  // namespace kvscope
