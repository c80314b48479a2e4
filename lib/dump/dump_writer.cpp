#include "dump/dump_writer.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <map>

#include "core/error.h"
#include "dump/schema.h"
#include "io/h5.h"
#include "io/provenance.h"
#include "model/device.h"
#include "model/kv_cache.h"
#include "model/llama.h"
#include "model/observer.h"

namespace kvscope {
namespace {

std::string join(const std::vector<int>& v) {
  std::string s;
  for (int x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
  return s;
}

template <typename T>
void write_tensor(const h5::Dataset& d, const std::vector<int64_t>& offset, const at::Tensor& t) {
  const at::Tensor host = t.to(at::kCPU, std::is_same_v<T, float> ? at::kFloat : (std::is_same_v<T, int32_t> ? at::kInt : at::kLong)).contiguous();
  d.write_block(offset, host.sizes().vec(), host.data_ptr<T>());
}

// Per document and dumped layer: the datasets and the running attention summaries.
struct LayerSink {
  std::map<std::string, h5::Dataset> sets;
  at::Tensor received, self_received, query_count, last_row;  // accumulated over chunks
};

class DocumentObserver : public ForwardObserver {
 public:
  DocumentObserver(const DumpOptions& o, std::map<int, LayerSink>& sinks, int64_t T, const ModelConfig& c)
      : o_(o), sinks_(sinks), T_(T), config_(c) {}

  bool wants_attention(int layer) const override {
    return o_.attention != AttentionDump::None && sinks_.count(layer);
  }

  void on_layer(const LayerActivations& a) override {
    const auto it = sinks_.find(a.layer);
    if (it == sinks_.end()) return;
    LayerSink& s = it->second;
    const int64_t t0 = a.positions[0].item<int64_t>();
    const int64_t n = a.positions.size(0);
    write_tensor<float>(s.sets.at("k_pre_rope"), {0, t0, 0}, a.k_pre_rope);
    write_tensor<float>(s.sets.at("k"), {0, t0, 0}, a.k);
    write_tensor<float>(s.sets.at("v"), {0, t0, 0}, a.v);
    if (o_.queries) write_tensor<float>(s.sets.at("q"), {0, t0, 0}, a.q);
    write_tensor<float>(s.sets.at("key_norm"), {0, t0}, a.k_pre_rope.to(at::kFloat).norm(2, {-1}));
    write_tensor<float>(s.sets.at("value_norm"), {0, t0}, a.v.to(at::kFloat).norm(2, {-1}));
    if (!a.attention) return;
    const at::Tensor& p = *a.attention;  // [H, n, S], S = t0 + n with the full cache
    const int64_t S = p.size(2);
    const auto dopt = at::TensorOptions().dtype(at::kDouble).device(p.device());
    if (!s.received.defined()) {
      s.received = at::zeros({p.size(0), T_}, dopt);
      s.self_received = at::zeros({p.size(0), T_}, dopt);
      s.query_count = at::zeros({T_}, dopt.dtype(at::kLong));
    }
    s.received.narrow(1, 0, S).add_(p.sum(1).to(at::kDouble));
    const at::Tensor rows = at::arange(n, dopt.dtype(at::kLong));
    s.self_received.narrow(1, t0, n).add_(p.index({at::indexing::Slice(), rows, rows + t0}).to(at::kDouble));
    // A key counts as seen by a query when the causal (and sliding-window) mask lets it
    // through, whatever probability the softmax gave it.
    const at::Tensor qpos = a.positions.view({n, 1});
    const at::Tensor kpos = a.key_positions.view({1, S});
    at::Tensor visible = kpos.le(qpos);
    if (const auto window = config_.window_for_layer(a.layer)) visible = visible.logical_and(qpos - kpos < *window);
    s.query_count.narrow(0, 0, S).add_(visible.sum(0));
    if (t0 + n == T_) s.last_row = p.select(1, n - 1).to(at::kFloat);  // [H, T]
    if (s.sets.count("attention")) {
      const at::Tensor sel = p.index_select(0, at::tensor(std::vector<int64_t>(o_.heads.begin(), o_.heads.end()), dopt.dtype(at::kLong)));
      write_tensor<float>(s.sets.at("attention"), {0, t0, 0}, sel);
    }
  }

 private:
  const DumpOptions& o_;
  std::map<int, LayerSink>& sinks_;
  int64_t T_;
  const ModelConfig& config_;
};

}  // namespace

struct DumpWriter::Impl {
  h5::File file;
  const LlamaModel& model;
  DumpOptions options;
  int64_t documents = 0;
};

DumpWriter::DumpWriter(const std::string& path, const LlamaModel& model, DumpOptions options, const DumpProvenance& prov)
    : impl_(new Impl{h5::File::create(path), model, std::move(options)}) {
  const ModelConfig& c = model.config();
  DumpOptions& o = impl_->options;
  if (o.attention != AttentionDump::Full) {
    o.full_attention_layers.clear();
  }
  const h5::Group root = impl_->file.root();
  write_provenance(root, kDumpSchemaName, kDumpSchemaVersion, prov.command_line);
  root.set_attr("model_path", prov.model_path);
  root.set_attr("model_config", c.raw_json);
  root.set_attr("tokenizer", prov.tokenizer);
  root.set_attr("stored_dtype", std::string(o.float16 ? "float16" : "float32"));
  root.set_attr("compute_dtype", dtype_name(model.dtype()));
  root.set_attr("attention_mode", std::string(o.attention == AttentionDump::None ? "none" : o.attention == AttentionDump::Summary ? "summary" : "full"));
  root.set_attr("has_queries", int64_t{o.queries ? 1 : 0});
  root.set_attr("num_layers", c.num_layers);
  root.set_attr("num_heads", c.num_heads);
  root.set_attr("num_kv_heads", c.num_kv_heads);
  root.set_attr("head_dim", c.head_dim);
  root.set_attr("layers", join(o.layers));
  root.set_attr("full_attention_layers", join(o.full_attention_layers));
  root.set_attr("full_attention_heads", join(o.attention == AttentionDump::Full ? o.heads : std::vector<int>{}));
  root.create_group("documents");
}

DumpWriter::~DumpWriter() = default;

void DumpWriter::add_document(const DumpInput& in, const std::function<void(int64_t, int64_t)>& progress) {
  const LlamaModel& model = impl_->model;
  const ModelConfig& c = model.config();
  const DumpOptions& o = impl_->options;
  const int64_t T = static_cast<int64_t>(in.ids.size());
  if (T == 0) fail(in.source, ": no tokens to dump");
  if (T > c.max_position_embeddings) {
    fail(in.source, ": ", T, " tokens exceed the model's context of ", c.max_position_embeddings, " (use --max-tokens)");
  }
  const int64_t KV = c.num_kv_heads, H = c.num_heads, hd = c.head_dim;
  const h5::Stored ft = o.float16 ? h5::Stored::Float16 : h5::Stored::Float32;

  const h5::Group root = impl_->file.root();
  const h5::Group doc = root.open_group("documents").create_group(std::to_string(impl_->documents));
  doc.set_attr("source", in.source);
  doc.set_attr("num_tokens", T);
  doc.set_attr("input_kind", std::string(in.pieces.empty() ? "ids" : "text"));
  doc.create_dataset("token_ids", {T}, h5::Stored::Int64, "token").write_block({0}, {T}, in.ids.data());
  if (!in.pieces.empty()) {
    doc.write_strings("token_strings", in.pieces, "token");
    std::vector<int64_t> spans;
    for (const auto& [b, e] : in.byte_spans) { spans.push_back(b); spans.push_back(e); }
    doc.create_dataset("byte_offsets", {T, 2}, h5::Stored::Int64, "token,begin_end").write_block({0, 0}, {T, 2}, spans.data());
  }
  const h5::Group layers = doc.create_group("layers");
  std::map<int, LayerSink> sinks;
  for (int l : o.layers) {
    const h5::Group g = layers.create_group(std::to_string(l));
    LayerSink& s = sinks[l];
    for (const char* n : {"k_pre_rope", "k", "v"}) s.sets.emplace(n, g.create_dataset(n, {KV, T, hd}, ft, "kv_head,token,head_dim"));
    if (o.queries) s.sets.emplace("q", g.create_dataset("q", {H, T, hd}, ft, "head,token,head_dim"));
    s.sets.emplace("key_norm", g.create_dataset("key_norm", {KV, T}, h5::Stored::Float32, "kv_head,token"));
    s.sets.emplace("value_norm", g.create_dataset("value_norm", {KV, T}, h5::Stored::Float32, "kv_head,token"));
    if (std::find(o.full_attention_layers.begin(), o.full_attention_layers.end(), l) != o.full_attention_layers.end()) {
      auto d = g.create_dataset("attention", {static_cast<int64_t>(o.heads.size()), T, T}, ft, "head,query,key");
      d.set_attr("heads", std::vector<int64_t>(o.heads.begin(), o.heads.end()));
      s.sets.emplace("attention", std::move(d));
    }
  }

  // Attention rows of one chunk are H x chunk x T floats per layer; keep them near 64 MB.
  int64_t chunk = o.chunk;
  if (chunk <= 0) chunk = std::clamp<int64_t>((64ll << 20) / std::max<int64_t>(1, H * T * 4), 1, 512);
  DocumentObserver observer(o, sinks, T, c);
  FullKvCache cache = model.new_cache(T);
  const at::Tensor ids = at::tensor(in.ids, at::kLong);
  for (int64_t t0 = 0; t0 < T; t0 += chunk) {
    const int64_t n = std::min(chunk, T - t0);
    model.forward(ids.narrow(0, t0, n), t0, cache, &observer, Logits::None);
    if (progress) progress(t0 + n, T);
  }
  if (o.attention != AttentionDump::None) {
    for (auto& [l, s] : sinks) {
      const h5::Group g = layers.open_group(std::to_string(l));
      auto make = [&](const char* name, const at::Tensor& t) {
        write_tensor<float>(g.create_dataset(name, {H, T}, h5::Stored::Float32, "head,token"), {0, 0}, t.to(at::kFloat));
      };
      make("attention_received", s.received);
      make("attention_received_others", s.received - s.self_received);
      make("last_query_attention", s.last_row);
      write_tensor<int32_t>(g.create_dataset("query_count", {T}, h5::Stored::Int32, "token"), {0}, s.query_count);
    }
  }
  ++impl_->documents;
  root.set_attr("num_documents", impl_->documents);
}

void DumpWriter::add_document_from(const std::string& part) {
  const h5::File source = h5::File::open_read(part);
  const h5::Group root = impl_->file.root();
  root.open_group("documents").copy_from(source.root().open_group("documents"), "0", std::to_string(impl_->documents));
  ++impl_->documents;
  root.set_attr("num_documents", impl_->documents);
}

void DumpWriter::finish() {
  const h5::Group root = impl_->file.root();
  root.set_attr("num_documents", impl_->documents);
  mark_complete(root);
  impl_->file.flush();
  impl_->file.close();
}

}  // namespace kvscope
