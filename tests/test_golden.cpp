// The real pretrained stories260K against goldens from an independent float64 implementation.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "eval/score.h"
#include "model/kv_cache.h"
#include "model/llama.h"
#include "model/observer.h"
#include "model/tokenizer.h"
#include "support/golden.h"
#include "support/test_paths.h"

namespace kvscope {
namespace {

using testing::read_h5_dataset;
using testing::stories_dir;

nlohmann::json read_json(const std::filesystem::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

std::vector<int64_t> golden_prompt_ids() {
  return read_json(stories_dir() / "golden" / "prompt_ids.json")["ids"].get<std::vector<int64_t>>();
}

TEST(Golden, PromptLogitsMatch) {
  KVSCOPE_REQUIRE_SHARED();
  const LlamaModel model = LlamaModel::load(stories_dir());
  const auto ids = golden_prompt_ids();
  FullKvCache cache = model.new_cache();
  const at::Tensor logits = model.forward(at::tensor(ids, at::kLong), 0, cache).to(at::kDouble);
  const auto golden = read_h5_dataset(stories_dir() / "golden" / "golden.h5", "prompt_logits");
  ASSERT_EQ(golden.shape, (std::vector<int64_t>{static_cast<int64_t>(ids.size()), 512}));
  const at::Tensor want = at::tensor(golden.data, at::kDouble).view({golden.shape[0], golden.shape[1]});
  EXPECT_LE((logits - want).abs().max().item<double>(), 1e-4);
}

TEST(Golden, PromptMeanNll) {
  KVSCOPE_REQUIRE_SHARED();
  const LlamaModel model = LlamaModel::load(stories_dir());
  const ScoreResult r = score_tokens(model, golden_prompt_ids(), ScoreOptions{});
  EXPECT_NEAR(r.mean_nll(), 0.1804, 5e-5);  // stated in golden/README.md
}

TEST(Golden, GreedyContinuation) {
  KVSCOPE_REQUIRE_SHARED();
  const LlamaModel model = LlamaModel::load(stories_dir());
  const auto greedy = read_json(stories_dir() / "golden" / "greedy.json");
  const auto want = greedy["new_ids"].get<std::vector<int64_t>>();
  std::vector<int64_t> ids = greedy["prompt_ids"].get<std::vector<int64_t>>();
  FullKvCache cache = model.new_cache();
  at::Tensor logits = model.forward(at::tensor(ids, at::kLong), 0, cache, nullptr, Logits::Last);
  std::vector<int64_t> got;
  for (size_t i = 0; i < want.size(); ++i) {
    const int64_t next = logits[0].argmax().item<int64_t>();
    got.push_back(next);
    logits = model.forward(at::tensor(std::vector<int64_t>{next}, at::kLong), static_cast<int64_t>(ids.size() + i), cache,
                           nullptr, Logits::Last);
  }
  EXPECT_EQ(got, want);
}

TEST(Golden, TokenizerEncodesPrompt) {
  KVSCOPE_REQUIRE_SHARED();
  const auto prompt = read_json(stories_dir() / "golden" / "prompt_ids.json");
  const ModelConfig config = load_model_config(stories_dir());
  const auto tok = Tokenizer::load(stories_dir(), config);
  const Encoding enc = tok->encode(prompt["text"].get<std::string>());
  EXPECT_EQ(enc.ids, prompt["ids"].get<std::vector<int64_t>>());
  EXPECT_EQ(tok->decode(std::vector<int64_t>(enc.ids.begin() + 1, enc.ids.end())), prompt["text"].get<std::string>());
}

class Capture : public ForwardObserver {
 public:
  bool wants_attention(int) const override { return true; }
  void on_layer(const LayerActivations& a) override {
    k_pre.push_back(a.k_pre_rope.to(at::kDouble));
    v.push_back(a.v.to(at::kDouble));
    attn.push_back(a.attention->to(at::kDouble));
  }
  std::vector<at::Tensor> k_pre, v, attn;
};

TEST(Golden, LayerKeysValuesAttention) {
  KVSCOPE_REQUIRE_SHARED();
  const LlamaModel model = LlamaModel::load(stories_dir());
  const auto ids = golden_prompt_ids();
  FullKvCache cache = model.new_cache();
  Capture cap;
  model.forward(at::tensor(ids, at::kLong), 0, cache, &cap);
  const auto file = stories_dir() / "golden" / "golden.h5";
  for (int L = 0; L < 5; ++L) {
    const std::string p = "layers/" + std::to_string(L) + "/";
    for (auto [name, got, tol] : {std::make_tuple("k_pre_rope", cap.k_pre[L], 1e-4), std::make_tuple("v", cap.v[L], 1e-4),
                                  std::make_tuple("attn", cap.attn[L], 1e-5)}) {
      const auto g = read_h5_dataset(file, p + name);
      const at::Tensor want = at::tensor(g.data, at::kDouble).view(g.shape);
      ASSERT_EQ(got.sizes().vec(), g.shape) << p << name;
      EXPECT_LE((got - want).abs().max().item<double>(), tol) << p << name;
    }
  }
}

}  // namespace
}  // namespace kvscope
