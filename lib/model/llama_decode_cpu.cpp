// A decode step (one new token for each of B runs) on CPU in float32, on raw buffers.
//
// On small models a decode step is mostly operator overhead: about seventy ATen calls per
// layer, each a dispatch and often an allocation, against a few microseconds of arithmetic
// (stories260K spent 0.34 ms per token where a plain C loop spends 0.1). Here a layer is a
// handful of loops over preallocated rows and five parallel sections: q, k and v together;
// the caches' appends; attention over every (run, KV head); the output projection; gate and
// up together; down. The caches and observers still see tensors, as views of these rows.
//
// Every number is computed per run in a fixed order (row_linear.h, decode_ops.h), so a
// run's logits are bit-for-bit the same alone or in a batch, on any thread count. Against
// the tensor path of prefill they agree to float32 rounding (methods §1.1).
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/worker_pool.h"
#include "model/decode_ops.h"
#include "model/kv_cache.h"
#include "model/llama.h"
#include "model/observer.h"
#include "model/row_linear.h"

namespace kvscope {
namespace {

const float* floats(const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

// Keys or values [KV, S, hd] as rows of head_dim floats per head (the caches' buffers
// already are: a view of their first S slots).
at::Tensor head_rows(const at::Tensor& side) {
  return side.stride(2) == 1 && side.stride(1) == side.size(2) ? side : side.contiguous();
}

// One run's view of a layer: its rows of the step's buffers as tensors, for its cache.
struct RunTensors {
  at::Tensor position, k_pre, k, v, q, attention_output;
};

struct RunAttention {
  AttentionInputs in;
  at::Tensor keys, values, probabilities;  // probabilities [H, 1, S]
  at::Tensor key_positions;                // [S] or [KV, S], int64 rows in order
  int64_t query_position = 0;
};

}  // namespace

bool LlamaModel::decodes_on_host_rows() const {
  if (!device_.is_cpu() || dtype_ != at::kFloat) return false;
  // Norm weights and biases (absent where the model has none) are read as float rows too.
  auto usable = [](const at::Tensor& t) {
    return !t.defined() || (t.device().is_cpu() && t.dim() == 1 && t.is_contiguous() && t.scalar_type() == at::kFloat);
  };
  if (!row_linear_supported(weights_.embed) || !row_linear_supported(weights_.lm_head) || !usable(weights_.final_norm)) return false;
  for (const LayerWeights& w : weights_.layers) {
    for (const at::Tensor* t : {&w.wq, &w.wk, &w.wv, &w.wo, &w.w_gate, &w.w_up, &w.w_down})
      if (!row_linear_supported(*t)) return false;
    for (const at::Tensor* t : {&w.attn_norm, &w.ffn_norm, &w.bq, &w.bk, &w.bv})
      if (!usable(*t)) return false;
  }
  return true;
}

at::Tensor LlamaModel::decode_host_rows(const std::vector<int64_t>& tokens, const std::vector<Segment>& segments,
                                        Logits logits) const {
  const int64_t B = static_cast<int64_t>(tokens.size()), D = config_.hidden_size, F = config_.intermediate_size;
  const int64_t H = config_.num_heads, KV = config_.num_kv_heads, hd = config_.head_dim, group = H / KV;
  const int64_t V = weights_.embed.size(0), Q = H * hd, KVD = KV * hd;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));  // as at::mul_ rounds it

  std::vector<float> h(static_cast<size_t>(B * D)), x(h.size()), delta(h.size());
  std::vector<float> q_pre(static_cast<size_t>(B * Q)), q(q_pre.size()), attention_out(q_pre.size());
  std::vector<float> k_pre(static_cast<size_t>(B * KVD)), k(k_pre.size()), v(k_pre.size());
  std::vector<float> gate(static_cast<size_t>(B * F)), up(gate.size());
  std::vector<int64_t> positions(static_cast<size_t>(B));

  const float* embed = weights_.embed.data_ptr<float>();
  for (int64_t b = 0; b < B; ++b) {
    if (tokens[b] < 0 || tokens[b] >= V) fail("token id ", tokens[b], " is outside the vocabulary [0, ", V, ")");
    std::copy(embed + tokens[b] * D, embed + (tokens[b] + 1) * D, h.begin() + b * D);
    positions[b] = segments[b].last_position;
  }
  std::vector<RunTensors> views(static_cast<size_t>(B));
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  for (int64_t b = 0; b < B; ++b) {
    RunTensors& t = views[b];
    t.position = at::from_blob(&positions[b], {1}, at::TensorOptions().dtype(at::kLong));
    t.k_pre = at::from_blob(k_pre.data() + b * KVD, {KV, 1, hd}, f32);
    t.k = at::from_blob(k.data() + b * KVD, {KV, 1, hd}, f32);
    t.v = at::from_blob(v.data() + b * KVD, {KV, 1, hd}, f32);
    t.q = at::from_blob(q.data() + b * Q, {H, 1, hd}, f32);
    t.attention_output = at::from_blob(attention_out.data() + b * Q, {H, 1, hd}, f32);
  }
  std::vector<RunAttention> runs(static_cast<size_t>(B));

  for (int layer = 0; layer < config_.num_layers; ++layer) {
    const LayerWeights& w = weights_.layers[layer];
    rms_norm_rows(h.data(), B, D, floats(w.attn_norm), config_.rms_norm_eps, x.data());
    const RowLinearPart qkv[] = {{floats(w.wq), Q, floats(w.bq), q_pre.data()},
                                 {floats(w.wk), KVD, floats(w.bk), k_pre.data()},
                                 {floats(w.wv), KVD, floats(w.bv), v.data()}};
    row_linear_parts_raw(x.data(), B, D, qkv, 3);

    // Each run appends to its own cache, so the runs go to the threads side by side.
    parallel_rows(B, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        rope_.rotate_rows(k_pre.data() + b * KVD, k.data() + b * KVD, KV, hd, positions[b]);
        RunAttention& r = runs[b];
        const RunTensors& t = views[b];
        r.in = segments[b].cache->append(layer, NewEntries{t.k_pre, t.k, t.v, t.position, positions[b]});
        r.keys = head_rows(r.in.keys);
        r.values = head_rows(r.in.values);
        r.key_positions = r.in.key_positions.stride(-1) == 1 ? r.in.key_positions : r.in.key_positions.contiguous();
        r.query_position = r.in.last_query_position >= 0 ? r.in.last_query_position : r.in.query_positions.item<int64_t>();
        rope_.rotate_rows(q_pre.data() + b * Q, q.data() + b * Q, H, hd, r.query_position);
        r.probabilities = at::empty({H, 1, r.keys.size(1)}, f32);
      }
    });

    // Attention of each run's query heads over one KV head (methods §1): one task each.
    const std::optional<int64_t> window = config_.window_for_layer(layer);
    parallel_rows(B * KV, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / KV, kv = task % KV;
        const RunAttention& r = runs[b];
        const int64_t S = r.keys.size(1);
        float* p = r.probabilities.data_ptr<float>() + kv * group * S;
        const float* keys = r.keys.data_ptr<float>() + kv * r.keys.stride(0);
        row_linear_raw(q.data() + b * Q + kv * group * hd, group, keys, S, hd, nullptr, p);
        const at::Tensor& key_positions = r.key_positions;
        const bool masked = window.has_value() || key_positions.dim() == 2;
        const int64_t* kpos = masked ? key_positions.data_ptr<int64_t>() + (key_positions.dim() == 2 ? kv * key_positions.stride(0) : 0) : nullptr;
        for (int64_t g = 0; g < group; ++g) {
          float* row = p + g * S;
          for (int64_t s = 0; s < S; ++s) row[s] *= scale;
          if (masked) {
            for (int64_t s = 0; s < S; ++s)
              if (kpos[s] > r.query_position || (window && r.query_position - kpos[s] >= *window))
                row[s] = -std::numeric_limits<float>::infinity();
          }
          softmax_row(row, S);
        }
        weighted_row_sum_raw(p, group, S, r.values.data_ptr<float>() + kv * r.values.stride(0), hd,
                             attention_out.data() + b * Q + kv * group * hd);
      }
    });

    parallel_rows(B, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const RunAttention& r = runs[b];
        const RunTensors& t = views[b];
        if (ForwardObserver* observer = segments[b].observer) {
          const bool give_attention = observer->wants_attention(layer);
          observer->on_layer(LayerActivations{layer, t.position, t.q, t.k_pre, t.k, t.v, give_attention ? &r.probabilities : nullptr,
                                              t.attention_output, r.in.key_positions});
        }
        segments[b].cache->observe_attention(layer, r.probabilities);
      }
    });

    row_linear_raw(attention_out.data(), B, w.wo.data_ptr<float>(), D, Q, nullptr, delta.data());
    add_into(h.data(), delta.data(), B * D);

    rms_norm_rows(h.data(), B, D, floats(w.ffn_norm), config_.rms_norm_eps, x.data());
    const RowLinearPart gate_up[] = {{floats(w.w_gate), F, nullptr, gate.data()}, {floats(w.w_up), F, nullptr, up.data()}};
    row_linear_parts_raw(x.data(), B, D, gate_up, 2);
    silu_times(gate.data(), up.data(), B * F);
    row_linear_raw(gate.data(), B, w.w_down.data_ptr<float>(), D, F, nullptr, delta.data());
    add_into(h.data(), delta.data(), B * D);
  }
  if (logits == Logits::None) return {};
  rms_norm_rows(h.data(), B, D, floats(weights_.final_norm), config_.rms_norm_eps, x.data());
  at::Tensor out = at::empty({B, V}, f32);
  row_linear_raw(x.data(), B, weights_.lm_head.data_ptr<float>(), V, D, nullptr, out.data_ptr<float>());
  return out;
}

}  // namespace kvscope
