// The LibTorch forward pass against the naive float64 reference, on micro-models with
// random weights written to safetensors and loaded through the real loader.
#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "model/kv_cache.h"
#include "model/llama.h"
#include "model/observer.h"
#include "model/random_model.h"
#include "support/naive_llama.h"
#include "support/test_paths.h"

namespace kvscope {
namespace {

using testing::NaiveConfig;
using testing::TempDir;

struct Variant {
  std::string name;
  int heads, kv_heads;
  std::string rope_json;  // config.json rope_scaling
  std::string rope_type;
  double factor;
  bool bias, tied;
  std::string model_type = "llama";
};

std::ostream& operator<<(std::ostream& o, const Variant& v) { return o << v.name; }

class ForwardTest : public ::testing::TestWithParam<Variant> {
 protected:
  void SetUp() override {
    const Variant& v = GetParam();
    spec_.model_type = v.model_type;
    spec_.vocab_size = 97;
    spec_.hidden_size = 32;
    spec_.intermediate_size = 48;
    spec_.num_layers = 2;
    spec_.num_heads = v.heads;
    spec_.num_kv_heads = v.kv_heads;
    spec_.rope_scaling_json = v.rope_json;
    spec_.attention_bias = v.bias;
    spec_.tie_word_embeddings = v.tied;
    spec_.seed = 7;
    write_random_model(dir_.path().string(), spec_);
    for (auto& [name, t] : random_model_tensors(spec_)) tensors_[name] = t;
    naive_.vocab = 97;
    naive_.hidden = 32;
    naive_.inter = 48;
    naive_.layers = 2;
    naive_.heads = v.heads;
    naive_.kv_heads = v.kv_heads;
    naive_.head_dim = 32 / v.heads;
    naive_.rope_type = v.rope_type;
    naive_.factor = v.factor;
    naive_.low_freq_factor = 1.0;
    naive_.high_freq_factor = 4.0;
    naive_.original_max_position = 16;  // small, so the llama3 smoothing band covers our frequencies
    naive_.bias = v.bias;
    naive_.tied = v.tied;
    for (int i = 0; i < 23; ++i) ids_.push_back((i * 37 + 5) % 97);
  }

  TempDir dir_{"forward"};
  RandomModelSpec spec_;
  std::map<std::string, at::Tensor> tensors_;
  NaiveConfig naive_;
  std::vector<int64_t> ids_;
};

// |got - want| / (1 + |want|): absolute 1e-5 near zero, relative for the large logits of
// tied embeddings (fp32 keeps ~7 significant digits).
double max_scaled_diff(const at::Tensor& got, const std::vector<std::vector<double>>& want) {
  const at::Tensor g = got.to(at::kDouble).contiguous();
  double worst = 0;
  for (size_t r = 0; r < want.size(); ++r)
    for (size_t c = 0; c < want[r].size(); ++c)
      worst = std::max(worst, std::abs(g[r][c].item<double>() - want[r][c]) / (1.0 + std::abs(want[r][c])));
  return worst;
}

TEST_P(ForwardTest, PrefillMatchesNaiveReference) {
  const LlamaModel model = LlamaModel::load(dir_.path());
  FullKvCache cache = model.new_cache();
  const at::Tensor logits = model.forward(at::tensor(ids_, at::kLong), 0, cache);
  const auto ref = testing::naive_forward(naive_, tensors_, ids_);
  EXPECT_LE(max_scaled_diff(logits, ref.logits), 1e-5);
}

TEST_P(ForwardTest, DecodeAndChunkedPrefillEqualOnePrefill) {
  const LlamaModel model = LlamaModel::load(dir_.path());
  const at::Tensor all = at::tensor(ids_, at::kLong);
  FullKvCache full = model.new_cache();
  const at::Tensor want = model.forward(all, 0, full);

  FullKvCache step = model.new_cache(1);  // capacity 1 forces the cache to grow while decoding
  const int64_t prefix = 9;
  at::Tensor head = model.forward(all.narrow(0, 0, prefix), 0, step);
  std::vector<at::Tensor> rows{head};
  for (int64_t t = prefix; t < all.size(0); ++t) rows.push_back(model.forward(all.narrow(0, t, 1), t, step));
  const auto scaled = [&](const at::Tensor& got) { return ((got - want).abs() / (1 + want.abs())).max().item<double>(); };
  EXPECT_LE(scaled(at::cat(rows, 0)), 1e-5);

  FullKvCache chunked = model.new_cache();
  std::vector<at::Tensor> parts;
  for (int64_t s = 0; s < all.size(0); s += 5) parts.push_back(model.forward(all.narrow(0, s, std::min<int64_t>(5, all.size(0) - s)), s, chunked));
  EXPECT_LE(scaled(at::cat(parts, 0)), 1e-5);
}

class RecordingObserver : public ForwardObserver {
 public:
  bool wants_attention(int) const override { return true; }
  void on_layer(const LayerActivations& a) override {
    k_pre.push_back(a.k_pre_rope.clone());
    k.push_back(a.k.clone());
    v.push_back(a.v.clone());
    q.push_back(a.q.clone());
    attn.push_back(a.attention->clone());
  }
  std::vector<at::Tensor> k_pre, k, v, q, attn;
};

double max_diff_4(const at::Tensor& got, const std::vector<std::vector<std::vector<double>>>& want) {
  double worst = 0;
  const at::Tensor g = got.to(at::kDouble);
  for (size_t a = 0; a < want.size(); ++a)
    for (size_t b = 0; b < want[a].size(); ++b)
      for (size_t c = 0; c < want[a][b].size(); ++c)
        worst = std::max(worst, std::abs(g[a][b][c].item<double>() - want[a][b][c]));
  return worst;
}

TEST_P(ForwardTest, ObserverSeesReferenceActivations) {
  const LlamaModel model = LlamaModel::load(dir_.path());
  FullKvCache cache = model.new_cache();
  RecordingObserver obs;
  model.forward(at::tensor(ids_, at::kLong), 0, cache, &obs);
  const auto ref = testing::naive_forward(naive_, tensors_, ids_);
  ASSERT_EQ(obs.k.size(), 2u);
  for (int L = 0; L < 2; ++L) {
    EXPECT_LE(max_diff_4(obs.k_pre[L], ref.k_pre[L]), 1e-5) << "layer " << L;
    EXPECT_LE(max_diff_4(obs.k[L], ref.k_post[L]), 1e-5) << "layer " << L;
    EXPECT_LE(max_diff_4(obs.v[L], ref.v[L]), 1e-5) << "layer " << L;
    EXPECT_LE(max_diff_4(obs.q[L], ref.q_post[L]), 1e-5) << "layer " << L;
    EXPECT_LE(max_diff_4(obs.attn[L], ref.attn[L]), 5e-6) << "layer " << L;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Variants, ForwardTest,
    ::testing::Values(Variant{"mha", 4, 4, "null", "none", 1.0, false, false},
                      Variant{"gqa", 4, 2, "null", "none", 1.0, false, false},
                      Variant{"mqa_tied", 4, 1, "null", "none", 1.0, false, true},
                      Variant{"rope_linear", 4, 2, R"({"type": "linear", "factor": 4.0})", "linear", 4.0, false, false},
                      Variant{"rope_llama3",
                              4, 2,
                              R"({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16})",
                              "llama3", 8.0, false, false},
                      Variant{"qwen2_bias", 4, 2, "null", "none", 1.0, true, false, "qwen2"},
                      Variant{"mistral", 2, 1, "null", "none", 1.0, false, true, "mistral"}),
    [](const ::testing::TestParamInfo<Variant>& info) { return info.param.name; });

// Mistral's sliding window, shorter than the sequence: query i sees only keys j with
// i - j < window. Prefill, chunked prefill and token-by-token decoding all equal the naive
// reference with the window, and attention outside the window is exactly zero.
TEST(Forward, MistralSlidingWindowMatchesNaiveReference) {
  constexpr int kWindow = 5;
  TempDir dir("window");
  RandomModelSpec spec;
  spec.model_type = "mistral";
  spec.vocab_size = 97, spec.hidden_size = 32, spec.intermediate_size = 48, spec.num_layers = 2;
  spec.num_heads = 4, spec.num_kv_heads = 2, spec.seed = 11;
  write_random_model(dir.path().string(), spec);
  nlohmann::json config;
  std::ifstream(dir / "config.json") >> config;
  config["sliding_window"] = kWindow;
  std::ofstream(dir / "config.json") << config.dump(2);

  std::map<std::string, at::Tensor> tensors;
  for (auto& [name, t] : random_model_tensors(spec)) tensors[name] = t;
  NaiveConfig naive{97, 32, 48, 2, 4, 2, 8};
  std::vector<int64_t> ids;
  for (int i = 0; i < 19; ++i) ids.push_back((i * 37 + 5) % 97);
  const auto unwindowed = testing::naive_forward(naive, tensors, ids);
  naive.sliding_window = kWindow;
  const auto ref = testing::naive_forward(naive, tensors, ids);
  // The window really changes the result here, so agreeing with `ref` says something.
  double window_effect = 0;
  for (size_t t = 0; t < ids.size(); ++t)
    for (int v = 0; v < 97; ++v) window_effect = std::max(window_effect, std::abs(ref.logits[t][v] - unwindowed.logits[t][v]));
  ASSERT_GT(window_effect, 1e-2);

  const LlamaModel model = LlamaModel::load(dir.path());
  ASSERT_EQ(model.config().sliding_window.value_or(0), kWindow);
  const at::Tensor all = at::tensor(ids, at::kLong);
  FullKvCache cache = model.new_cache();
  RecordingObserver obs;
  EXPECT_LE(max_scaled_diff(model.forward(all, 0, cache, &obs), ref.logits), 1e-5);
  for (int L = 0; L < 2; ++L) {
    EXPECT_LE(max_diff_4(obs.attn[L], ref.attn[L]), 5e-6) << "layer " << L;
    const at::Tensor a = obs.attn[L];  // [heads, T, T]
    for (int64_t h = 0; h < a.size(0); ++h)
      for (int64_t i = 0; i < a.size(1); ++i)
        for (int64_t j = 0; j < a.size(2); ++j)
          if (i - j >= kWindow || j > i) ASSERT_EQ(a[h][i][j].item<float>(), 0.0f) << "layer " << L << " head " << h << " query " << i << " key " << j;
  }

  FullKvCache step = model.new_cache(1);
  std::vector<at::Tensor> rows{model.forward(all.narrow(0, 0, 3), 0, step)};
  for (int64_t t = 3; t < all.size(0); ++t) rows.push_back(model.forward(all.narrow(0, t, 1), t, step));
  EXPECT_LE(max_scaled_diff(at::cat(rows, 0), ref.logits), 1e-5) << "decode";

  FullKvCache chunked = model.new_cache();
  std::vector<at::Tensor> parts;
  for (int64_t s = 0; s < all.size(0); s += 4) parts.push_back(model.forward(all.narrow(0, s, std::min<int64_t>(4, all.size(0) - s)), s, chunked));
  EXPECT_LE(max_scaled_diff(at::cat(parts, 0), ref.logits), 1e-5) << "chunked prefill";
}

TEST(Forward, ReducedPrecisionStaysCloseToFloat32) {
  TempDir dir("bf16");
  RandomModelSpec spec;
  spec.seed = 3;
  write_random_model(dir.path().string(), spec);
  std::vector<int64_t> ids{1, 5, 9, 33, 7, 2, 200, 17};
  const at::Tensor input = at::tensor(ids, at::kLong);
  const LlamaModel f32 = LlamaModel::load(dir.path());
  const LlamaModel bf16 = LlamaModel::load(dir.path(), LoadOptions{"cpu", "bfloat16"});
  FullKvCache c1 = f32.new_cache(), c2 = bf16.new_cache();
  const at::Tensor a = at::log_softmax(f32.forward(input, 0, c1), -1);
  const at::Tensor b = at::log_softmax(bf16.forward(input, 0, c2), -1);
  EXPECT_EQ(b.scalar_type(), at::kFloat);
  EXPECT_LE((a - b).abs().max().item<double>(), 0.25);  // bf16 keeps ~3 significant digits
  EXPECT_GT((a - b).abs().max().item<double>(), 0.0);   // and really ran in reduced precision
}


// The CPU loop that rotates decode tokens equals the tensor expression (which autograd and
// other devices use) bit for bit, for shared and per-head positions.
TEST(Rope, LoopEqualsTensorExpressionBitwise) {
  ModelConfig c;
  c.head_dim = 10;
  c.max_position_embeddings = 300;
  c.rope.theta = 10000.0;
  const Rope rope(c, at::kCPU);
  at::manual_seed(4);
  for (const bool per_head : {false, true}) {
    const at::Tensor x = at::randn({3, 7, 10});
    const at::Tensor positions = per_head ? at::randint(0, 300, {3, 7}, at::kLong) : at::randint(0, 300, {7}, at::kLong);
    const at::Tensor fast = rope.apply(x, positions);
    const at::Tensor reference = rope.apply(x.clone().requires_grad_(true), positions).detach();
    ASSERT_EQ(fast.sizes(), reference.sizes());
    EXPECT_TRUE(at::equal(fast, reference)) << "per_head " << per_head;
  }
}

}  // namespace
}  // namespace kvscope
