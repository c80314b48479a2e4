// Retrieval: the prompts are built exactly, and --compress prefill cuts every head to its
// budget by the policy's score, checked against a slow reference computed from the full
// cache's attention.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "cache/policy_cache.h"
#include "cache/policy_registry.h"
#include "core/error.h"
#include "eval/retrieval.h"
#include "eval/retrieval_prompt.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "model/llama.h"
#include "model/observer.h"
#include "model/random_model.h"
#include "model/tokenizer.h"
#include "support/test_paths.h"
#include "support/tiny_models.h"

namespace kvscope {
namespace {

std::unique_ptr<Tokenizer> stories_tokenizer() {
  return Tokenizer::load(testing::stories_dir(), load_model_config(testing::stories_dir()));
}

TEST(RetrievalPrompt, PasskeyGoldenForASeed) {
  KVSCOPE_REQUIRE_SHARED();
  const auto tok = stories_tokenizer();
  PromptSpec spec;
  spec.length = 300;
  spec.depth = 0.5;
  spec.seed = 7;
  const RetrievalPrompt p = passkey_prompt(*tok, spec);
  const std::string key = retrieval_key(7, 300, 0.5, 5);
  EXPECT_EQ(key, "95681");
  const std::string f = kPasskeyFiller;
  EXPECT_EQ(p.text, std::string(kPasskeyTask) + "\n" + f + "\nThe pass key is 95681. Remember it. 95681 is the pass key.\n" + f +
                        "\nWhat is the pass key? The pass key is");
  EXPECT_EQ(p.answer, "95681");
  EXPECT_EQ(tok->decode(p.answer_ids), "95681");  // SentencePiece drops a leading space when decoding
}

TEST(RetrievalPrompt, NeedleGoldenForASeed) {
  KVSCOPE_REQUIRE_SHARED();
  const auto tok = stories_tokenizer();
  PromptSpec spec;
  spec.length = 130;
  spec.depth = 0.5;
  spec.seed = 3;
  spec.digits = 4;
  const std::string hay = "One day a cat sat.  It was happy!\nThe dog ran \"far.\" Then it slept. The end came soon. More words follow here and here.";
  const RetrievalPrompt p = needle_prompt(*tok, hay, "Elinor", spec);
  const std::string key = retrieval_key(3, 130, 0.5, 4);
  EXPECT_EQ(key, "5616");
  // The haystack's whitespace collapsed, its words cut to the length, the needle at the
  // sentence end nearest the middle.
  EXPECT_EQ(p.text,
            "One day a cat sat. It was happy! The special magic number of Elinor is 5616. The dog ran \"far.\" Then it slept. The\n"
            "What is the special magic number of Elinor? The special magic number of Elinor is");
  EXPECT_EQ(p.answer, "5616");
}

// Properties every prompt has, on every length and depth: the cell fits its length and one
// more filler sentence would not; the key sits where the depth puts it; the answer follows.
TEST(RetrievalPrompt, PasskeyFillsItsLengthAndPlacesTheKeyByDepth) {
  KVSCOPE_REQUIRE_SHARED();
  const auto tok = stories_tokenizer();
  for (int64_t length : {300, 500, 800}) {
    int64_t last_needle = -1, first_needle = -1;
    for (double depth : {0.0, 0.25, 0.5, 0.75, 1.0}) {
      PromptSpec spec;
      spec.length = length;
      spec.depth = depth;
      const RetrievalPrompt p = passkey_prompt(*tok, spec);
      const int64_t cell = static_cast<int64_t>(p.ids.size() + p.answer_ids.size()) + kTokensPastAnswer;
      EXPECT_LE(cell, length);
      const std::string more = p.text + " " + kPasskeyFiller;  // a cell with one more sentence
      EXPECT_GT(static_cast<int64_t>(tok->encode(more).ids.size() + p.answer_ids.size()) + kTokensPastAnswer, length);
      EXPECT_GE(p.needle_token, last_needle) << "length " << length << " depth " << depth;
      if (depth == 1.0) EXPECT_GT(p.needle_token, first_needle) << "length " << length;
      if (depth == 0.0) first_needle = p.needle_token;
      last_needle = p.needle_token;
      EXPECT_EQ(tok->encode(p.text + " " + p.answer).ids, [&] {
        std::vector<int64_t> all = p.ids;
        all.insert(all.end(), p.answer_ids.begin(), p.answer_ids.end());
        return all;
      }());
      const std::string key_line = "The pass key is " + p.answer + ". Remember it.";
      EXPECT_EQ(p.text.find(key_line), p.text.rfind(key_line));
    }
  }
}

TEST(RetrievalPrompt, RefusesWhatCannotBeBuilt) {
  KVSCOPE_REQUIRE_SHARED();
  const auto tok = stories_tokenizer();
  PromptSpec spec;
  spec.length = 100;
  EXPECT_THROW(passkey_prompt(*tok, spec), Error);
  spec.length = 900;
  EXPECT_THROW(needle_prompt(*tok, "Too short a haystack.", "Elinor", spec), Error);
  EXPECT_THROW(needle_prompt(*tok, "Some text here.", "two words", spec), Error);
  spec.depth = 1.5;
  EXPECT_THROW(passkey_prompt(*tok, spec), Error);
}

TEST(RetrievalPrompt, ExactMatchReadsTheFirstNumber) {
  EXPECT_TRUE(answer_matches(" 68401. Remember", "68401"));
  EXPECT_TRUE(answer_matches("68401", "68401"));
  EXPECT_FALSE(answer_matches(" 684012", "68401"));
  EXPECT_FALSE(answer_matches(" 6840", "68401"));
  EXPECT_FALSE(answer_matches(" the 1 and 68401", "68401"));
  EXPECT_FALSE(answer_matches("no number", "68401"));
}

// The full cache's attention and pre-RoPE keys for every query of the prompt.
struct FullAttention : ForwardObserver {
  explicit FullAttention(int64_t layers) : probs(static_cast<size_t>(layers)), keys(static_cast<size_t>(layers)) {}
  bool wants_attention(int) const override { return true; }
  void on_layer(const LayerActivations& a) override {
    // Each call's rows [H, T, S], padded to the prompt's length on the key axis.
    probs[static_cast<size_t>(a.layer)].push_back(a.attention->to(at::kDouble).clone());
    keys[static_cast<size_t>(a.layer)].push_back(a.k_pre_rope.to(at::kDouble).clone());
  }
  at::Tensor attention(int layer, int64_t P) const {  // [H, P, P]
    std::vector<at::Tensor> rows;
    for (const at::Tensor& t : probs[static_cast<size_t>(layer)])
      rows.push_back(at::constant_pad_nd(t, {0, P - t.size(2)}));
    return at::cat(rows, 1);
  }
  at::Tensor key_norms(int layer) const { return at::cat(keys[static_cast<size_t>(layer)], 1).norm(2, -1); }  // [KV, P]
  std::vector<std::vector<at::Tensor>> probs, keys;
};

// The positions a head keeps when the (P - B) lowest middle scores leave, ties to the earliest.
std::vector<int64_t> expected_kept(const std::vector<double>& score, int64_t P, int64_t B, int64_t sinks, int64_t protected_recent) {
  std::vector<int64_t> middle;
  for (int64_t i = sinks; i < P - protected_recent; ++i) middle.push_back(i);
  std::stable_sort(middle.begin(), middle.end(), [&](int64_t a, int64_t b) { return score[static_cast<size_t>(a)] < score[static_cast<size_t>(b)]; });
  std::vector<char> gone(static_cast<size_t>(P), 0);
  for (int64_t k = 0; k < P - B; ++k) gone[static_cast<size_t>(middle[static_cast<size_t>(k)])] = 1;
  std::vector<int64_t> kept;
  for (int64_t i = 0; i < P; ++i)
    if (!gone[static_cast<size_t>(i)]) kept.push_back(i);
  return kept;
}

TEST(PrefillCut, EachHeadKeepsTheBudgetChosenByThePolicysScore) {
  testing::TempDir dir("prefill-cut");
  write_random_model(dir.path().string(), testing::policy_model_spec(21));
  const LlamaModel model = LlamaModel::load(dir.path());
  const ModelConfig& c = model.config();
  const int64_t P = 57, B = 17, chunk = 20, group = c.num_heads / c.num_kv_heads;
  std::vector<int64_t> prompt(static_cast<size_t>(P));
  for (int64_t i = 0; i < P; ++i) prompt[static_cast<size_t>(i)] = (i * 37 + 11) % c.vocab_size;
  const at::Tensor ids = at::tensor(prompt, at::TensorOptions().dtype(at::kLong));

  FullAttention full(c.num_layers);
  FullKvCache reference = model.new_cache(P);
  for (int64_t pos = 0; pos < P; pos += chunk) model.forward(ids.narrow(0, pos, std::min(chunk, P - pos)), pos, reference, &full);

  for (const std::string policy : {"streaming", "h2o", "tova", "knorm", "weightedkv", "weightedkv-evict"}) {
    for (const bool skip_first : {false, true}) {
      if (skip_first && policy != "knorm") continue;
      PolicyOptions po;
      po.budget = B;
      po.sinks = 3;
      if (skip_first) po.skip_layers = {0};
      const PolicyOptions resolved = resolve_policy_options(policy, po);
      const PolicyCacheConfig cc{c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim, model.dtype(), model.device(),
                                 PositionMode::Original, AttentionAggregation::Mean};
      PolicyCache cache(cc, std::shared_ptr<CachePolicy>(make_policy(policy, po)), model.rope(), B);
      cache.set_compression(Compression::Hold);
      for (int64_t pos = 0; pos < P; pos += chunk) model.forward(ids.narrow(0, pos, std::min(chunk, P - pos)), pos, cache);
      cache.cut_to_budget(std::shared_ptr<CachePolicy>(make_policy(policy, po)), B);
      cache.check_invariants();
      const int64_t protected_recent = std::max(resolved.recent, policy_info(policy).traits.min_recent);
      for (int l = 0; l < c.num_layers; ++l) {
        const at::Tensor A = full.attention(l, P);  // [H, P, P]
        const at::Tensor norms = full.key_norms(l);
        for (int h = 0; h < c.num_kv_heads; ++h) {
          const std::string where = policy + " layer " + std::to_string(l) + " head " + std::to_string(h);
          const std::vector<int64_t> kept = cache.kept_positions(l, h);
          if (skip_first && l == 0) {
            EXPECT_EQ(static_cast<int64_t>(kept.size()), P) << where;
            continue;
          }
          ASSERT_EQ(static_cast<int64_t>(kept.size()), B) << where;
          std::vector<double> score(static_cast<size_t>(P), 0.0);
          const at::Tensor group_mean = A.narrow(0, h * group, group).mean(0);  // [P, P]
          for (int64_t i = 0; i < P; ++i) {
            const double a = group_mean.select(1, i).sum().item<double>();
            if (policy == "h2o") score[static_cast<size_t>(i)] = a;
            if (policy == "weightedkv" || policy == "weightedkv-evict") score[static_cast<size_t>(i)] = a / static_cast<double>(P - i);
            if (policy == "knorm") score[static_cast<size_t>(i)] = -norms[h][i].item<double>();
            if (policy == "tova") {
              double total = 0;
              for (int k = 0; k < c.num_kv_heads; ++k) total += A.narrow(0, k * group, group).select(1, P - 1).select(1, i).mean().item<double>();
              score[static_cast<size_t>(i)] = total / static_cast<double>(c.num_kv_heads);
            }
            if (policy == "streaming") score[static_cast<size_t>(i)] = static_cast<double>(i);
          }
          EXPECT_EQ(kept, expected_kept(score, P, B, resolved.sinks, protected_recent)) << where;
        }
      }
    }
  }
}

TEST(PrefillCut, RetrievalRunsKeepTheBudgetAndFullCacheMatchesScoring) {
  testing::TempDir dir("retrieval-run");
  write_random_model(dir.path().string(), testing::policy_model_spec(22));
  const LlamaModel model = LlamaModel::load(dir.path());
  std::vector<int64_t> prompt;
  for (int64_t i = 0; i < 45; ++i) prompt.push_back((i * 13 + 5) % model.config().vocab_size);
  const std::vector<int64_t> answer = {7, 9, 11};
  RunConfig rc;
  rc.budget.tokens = 12;
  rc.options.sinks = 2;
  rc.prefill_chunk = 16;
  rc.policy = "full";
  const PrefilledPrompt shared = prefill_prompt(model, prompt, rc);  // one prefill for every policy below
  for (const CompressAt at : {CompressAt::Prefill, CompressAt::Decode}) {
    for (const std::string& policy : known_policies()) {
      rc.policy = policy;
      const RetrievalOutcome r = run_retrieval(model, prompt, answer, rc, at, 5, {});
      const bool full = policy_info(policy).traits.keeps_everything;
      EXPECT_EQ(r.cache_after_prompt, full ? 45 : 12) << policy << " " << compress_at_name(at);
      EXPECT_EQ(r.generated.size(), 5u);
      EXPECT_EQ(r.answer_nll.size(), answer.size());
      if (at == CompressAt::Prefill) {
        // A cell started from the shared prefill (which earlier cells cut copies of) is the
        // cell run on its own.
        const RetrievalOutcome s = run_retrieval(model, prompt, answer, rc, at, 5, {}, &shared);
        EXPECT_EQ(s.generated, r.generated) << policy;
        EXPECT_EQ(s.answer_nll, r.answer_nll) << policy;
      }
    }
  }
  // The full cache's answer NLL is teacher-forced scoring of prompt + answer.
  rc.policy = "full";
  const RetrievalOutcome r = run_retrieval(model, prompt, answer, rc, CompressAt::Prefill, 1, {});
  std::vector<int64_t> all = prompt;
  all.insert(all.end(), answer.begin(), answer.end());
  FullKvCache cache = model.new_cache(64);
  const at::Tensor logits = model.forward(at::tensor(all, at::TensorOptions().dtype(at::kLong)), 0, cache);
  for (size_t i = 0; i < answer.size(); ++i) {
    const at::Tensor row = at::log_softmax(logits[static_cast<int64_t>(prompt.size() + i - 1)].to(at::kDouble), -1);
    EXPECT_NEAR(r.answer_nll[i], -row[answer[i]].item<double>(), 1e-4) << i;
  }
}

}  // namespace
}  // namespace kvscope
