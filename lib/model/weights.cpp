#include "model/weights.h"

#include <cstring>

#include "core/error.h"
#include "io/safetensors.h"

namespace kvscope {
namespace {

at::ScalarType torch_dtype(StoredDtype d) {
  switch (d) {
    case StoredDtype::F32: return at::kFloat;
    case StoredDtype::F16: return at::kHalf;
    case StoredDtype::BF16: return at::kBFloat16;
  }
  return at::kFloat;
}

std::string shape_string(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

class Loader {
 public:
  Loader(const SafetensorsArchive& a, at::Device device, at::ScalarType dtype)
      : archive_(a), device_(device), dtype_(dtype) {}

  at::Tensor load(const std::string& name, std::vector<int64_t> expected, bool keep_fp32 = false) const {
    const TensorView view = archive_.get(name);
    if (view.record->shape != expected) {
      fail(view.file_name, ": tensor '", name, "' has shape ", shape_string(view.record->shape),
           " but config.json implies ", shape_string(expected));
    }
    // Copy out of the mapping: safetensors does not promise aligned offsets, and the
    // mapped bytes must not outlive the archive.
    at::Tensor host = at::empty(expected, at::TensorOptions().dtype(torch_dtype(view.record->dtype)));
    if (view.record->nbytes) std::memcpy(host.data_ptr(), view.data, view.record->nbytes);
    // One pass over bytes just read: a NaN or Inf weight would otherwise surface as a NaN
    // perplexity or a degenerate generation with exit 0.
    const at::Tensor bad = at::isfinite(host).logical_not().flatten();
    if (bad.any().item<bool>()) {
      const int64_t at_index = bad.nonzero()[0][0].item<int64_t>();
      fail(view.file_name, ": tensor '", name, "' holds a non-finite value (NaN or Inf) at element ", at_index,
           "; the checkpoint is corrupt");
    }
    return host.to(device_, keep_fp32 ? at::kFloat : dtype_).contiguous();
  }

 private:
  const SafetensorsArchive& archive_;
  at::Device device_;
  at::ScalarType dtype_;
};

}  // namespace

ModelWeights load_weights(const SafetensorsArchive& archive, const ModelConfig& c, at::Device device,
                          at::ScalarType dtype) {
  const Loader L(archive, device, dtype);
  const int64_t D = c.hidden_size, q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
  const int64_t I = c.intermediate_size, V = c.vocab_size;
  ModelWeights w;
  w.stored_dtype = torch_dtype(archive.get("model.embed_tokens.weight").record->dtype);
  w.embed = L.load("model.embed_tokens.weight", {V, D});
  w.final_norm = L.load("model.norm.weight", {D}, true);
  if (c.tie_word_embeddings) {
    w.lm_head = w.embed;
  } else {
    w.lm_head = L.load("lm_head.weight", {V, D});
  }
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    LayerWeights lw;
    lw.attn_norm = L.load(p + "input_layernorm.weight", {D}, true);
    lw.ffn_norm = L.load(p + "post_attention_layernorm.weight", {D}, true);
    lw.wq = L.load(p + "self_attn.q_proj.weight", {q, D});
    lw.wk = L.load(p + "self_attn.k_proj.weight", {kv, D});
    lw.wv = L.load(p + "self_attn.v_proj.weight", {kv, D});
    lw.wo = L.load(p + "self_attn.o_proj.weight", {D, q});
    if (c.attention_bias) {
      lw.bq = L.load(p + "self_attn.q_proj.bias", {q});
      lw.bk = L.load(p + "self_attn.k_proj.bias", {kv});
      lw.bv = L.load(p + "self_attn.v_proj.bias", {kv});
    }
    lw.w_gate = L.load(p + "mlp.gate_proj.weight", {I, D});
    lw.w_up = L.load(p + "mlp.up_proj.weight", {I, D});
    lw.w_down = L.load(p + "mlp.down_proj.weight", {D, I});
    w.layers.push_back(std::move(lw));
  }
  return w;
}

}  // namespace kvscope
