// Prefill up to the budget leaves the state token-by-token decoding leaves: for every
// registered policy, both position modes, and three models (stories260K, the embedded model,
// a random model with awkward shapes), on text with repeated tokens (so key ties happen), the
// two paths make the same decisions at every step (same token leaves, same receiver), keep
// the same counts and multiplicities, and give the same per-token NLL to float rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "cache/policy_cache.h"
#include "eval/ppl.h"
#include "model/llama.h"
#include "model/random_model.h"
#include "support/test_paths.h"

namespace kvscope {
namespace {

// Every decision, with the state of the decided heads at that moment.
struct DecisionTrace : DecisionObserver {
  struct Entry {
    int layer, head, kind;
    int64_t victim, receiver;
    std::vector<int64_t> positions, steps, multiplicity;
    std::vector<double> attention_sum;
  };
  void on_decisions(int layer, const std::vector<HeadCells>& heads, const std::vector<Decision>& decisions, const at::Tensor&,
                    const at::Tensor&) override {
    for (size_t h = 0; h < heads.size(); ++h) {
      const Decision& d = decisions[h];
      if (d.kind == Decision::None) continue;
      const HeadCells& s = heads[h];
      Entry e{layer, static_cast<int>(h), d.kind, value_of(s.position(s.slot(d.victim))),
              d.receiver >= 0 ? value_of(s.position(s.slot(d.receiver))) : -1, {}, {}, {}, {}};
      for (const SlotId slot : s.order()) {
        e.positions.push_back(value_of(s.position(slot)));
        e.steps.push_back(s.steps(slot));
        e.multiplicity.push_back(s.multiplicity(slot));
        e.attention_sum.push_back(s.attention_sum(slot));
      }
      entries.push_back(std::move(e));
    }
  }
  std::vector<Entry> entries;
};

std::vector<int64_t> golden_ids(const std::string& name) {
  std::ifstream in(std::filesystem::path(KVSCOPE_SOURCE_DIR) / "tests/data/refactor_golden" / (name + ".ids"));
  std::string line;
  std::vector<int64_t> ids;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream f(line);
    for (int64_t id; f >> id;) ids.push_back(id);
  }
  return ids;
}

void expect_prefill_exact(const LlamaModel& model, const std::vector<int64_t>& text, const std::string& label) {
  // A passage and then its first 40 tokens twice more: many tokens recur, so layer-0 keys
  // tie exactly and the tie rule is exercised.
  ASSERT_GT(text.size(), 60u);
  std::vector<int64_t> ids = text;
  for (int r = 0; r < 2; ++r) ids.insert(ids.end(), text.begin() + 1, text.begin() + 41);
  const auto windows = make_windows(Protocol::Stream, static_cast<int64_t>(ids.size()), 0, 0);
  for (const std::string& policy : known_policies()) {
    for (PositionMode mode : {PositionMode::Original, PositionMode::InCache}) {
      RunConfig rc;
      rc.policy = policy;
      rc.budget.tokens = 64;
      rc.options.sinks = 2;
      rc.options.seed = 5;
      rc.options.cam_merge_count = 4;
      rc.positions = mode;
      rc.prefill_chunk = 30;  // chunks that do not divide the budget
      DecisionTrace with, without;
      rc.prefill = true;
      const RunOutput a = run_document(model, ids, windows, rc, {}, &with);
      rc.prefill = false;
      const RunOutput b = run_document(model, ids, windows, rc, {}, &without);
      const std::string where = label + " " + policy + (mode == PositionMode::Original ? " original" : " in-cache");
      ASSERT_EQ(a.nll.size(), b.nll.size()) << where;
      // Prefill's matrix products round differently from one-row decode steps (float32).
      for (size_t i = 0; i < a.nll.size(); ++i) ASSERT_NEAR(a.nll[i], b.nll[i], 5e-5) << where << " token " << i;
      ASSERT_EQ(with.entries.size(), without.entries.size()) << where;
      if (!policy_info(policy).traits.keeps_everything) ASSERT_FALSE(with.entries.empty()) << where;
      for (size_t k = 0; k < with.entries.size(); ++k) {
        const auto &x = with.entries[k], &y = without.entries[k];
        ASSERT_EQ(x.layer, y.layer) << where << " decision " << k;
        ASSERT_EQ(x.head, y.head) << where << " decision " << k;
        ASSERT_EQ(x.kind, y.kind) << where << " decision " << k;
        ASSERT_EQ(x.victim, y.victim) << where << " decision " << k << " layer " << x.layer << " head " << x.head;
        ASSERT_EQ(x.receiver, y.receiver) << where << " decision " << k;
        ASSERT_EQ(x.positions, y.positions) << where << " decision " << k;
        ASSERT_EQ(x.steps, y.steps) << where << " decision " << k;
        ASSERT_EQ(x.multiplicity, y.multiplicity) << where << " decision " << k;
        for (size_t i = 0; i < x.attention_sum.size(); ++i)
          ASSERT_NEAR(x.attention_sum[i], y.attention_sum[i], 1e-5 * (1 + std::abs(y.attention_sum[i]))) << where << " decision " << k;
      }
    }
  }
}

TEST(PrefillExact, Stories260K) {
  KVSCOPE_REQUIRE_SHARED();
  const LlamaModel model = LlamaModel::load(testing::stories_dir());
  expect_prefill_exact(model, golden_ids("stories"), "stories260K");
}

TEST(PrefillExact, EmbeddedModel) {
  const LlamaModel model = LlamaModel::load(std::filesystem::path(KVSCOPE_SOURCE_DIR) / "data/models/tinybooks");
  expect_prefill_exact(model, golden_ids("tinybooks"), "tinybooks");
}

TEST(PrefillExact, RandomModelWithAwkwardShapes) {
  testing::TempDir dir("prefill-exact");
  RandomModelSpec spec;
  spec.num_layers = 2;
  spec.hidden_size = 48;  // head_dim 12
  spec.intermediate_size = 172;
  spec.num_heads = 4;
  spec.num_kv_heads = 2;
  spec.vocab_size = 250;
  spec.max_position_embeddings = 512;
  spec.seed = 11;
  write_random_model(dir.path().string(), spec);
  const LlamaModel model = LlamaModel::load(dir.path());
  expect_prefill_exact(model, golden_ids("random"), "random");
}

}  // namespace
}  // namespace kvscope
