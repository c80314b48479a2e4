// Policies as registered objects: a policy registered from this file takes part in a sweep
// with no change anywhere else; the refactor left every policy's per-token NLL bit for bit
// what the code before it gave (tests/data/refactor_golden).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "cache/policy_registry.h"
#include "core/error.h"
#include "eval/ppl_results.h"
#include "eval/sweep.h"
#include "eval/sweep_plan.h"
#include "model/llama.h"
#include "model/random_model.h"
#include "support/cli.h"
#include "support/test_paths.h"
#include "support/tiny_models.h"

namespace kvscope {
namespace {

// StreamingLLM's rule under another name, registered here and nowhere else.
class TestStreamingCopy : public CachePolicy {
 public:
  using CachePolicy::CachePolicy;
  void decide(int, const std::vector<HeadCells>& heads, const StepView&, std::vector<Decision>& out) override {
    for (size_t h = 0; h < heads.size(); ++h) out[h] = Decision::drop(middle(heads[h]).begin);
  }
};
PolicyTraits copy_traits() {
  PolicyTraits t = policy_info("streaming").traits;
  t.listing = 1000;
  return t;
}
KVSCOPE_REGISTER_POLICY(TestStreamingCopy, "test-streaming-copy", "streaming, registered from a test file", copy_traits());

// The README's worked example ("Adding a cache policy"), compiled and run here so it stays true.
class RedundantKey : public CachePolicy {
 public:
  using CachePolicy::CachePolicy;
  void decide(int, const std::vector<HeadCells>& heads, const StepView& step, std::vector<Decision>& out) override {
    for (size_t h = 0; h < heads.size(); ++h) {
      const HeadCells& s = heads[h];
      // Scores from stored keys compare with the key tolerance; near-ties go to the earliest token.
      out[h] = Decision::drop(argmin_near(middle(s, 1), [&](int i) {
        return -cosine_similarity(step.key(int(h), s.slot(i)), step.key(int(h), s.slot(i + 1)));
      }));
    }
  }
};

PolicyTraits redundant_key_traits() {
  PolicyTraits t;
  t.reads_keys = true;
  t.min_recent = 1;  // the newest token has no right neighbour
  t.options = kReadsSinks | kReadsRecent;
  return t;
}
KVSCOPE_REGISTER_POLICY(RedundantKey, "redundant-key", "the middle key most like its right neighbour's", redundant_key_traits());

std::vector<RunOutput> run_plan(const LlamaModel& model, const SweepPlan& plan, const std::vector<SweepDocument>& docs, int64_t batch) {
  std::vector<SweepRun> runs;
  for (const PlannedRun& r : plan.runs) runs.push_back(SweepRun{&docs[r.document].ids, &plan.windows[r.document], r.config});
  std::vector<RunOutput> out(runs.size());
  run_sweep(model, runs, batch, {}, [&](size_t i, RunOutput&& o) { out[i] = std::move(o); });
  return out;
}

TEST(PolicyRegistry, APolicyRegisteredInATestFileJoinsASweep) {
  testing::TempDir dir("registry");
  write_random_model(dir.path().string(), testing::policy_model_spec(1));
  const LlamaModel model = LlamaModel::load(dir.path());
  std::vector<SweepDocument> docs{{{}, "ids"}};
  for (int i = 0; i < 48; ++i) docs[0].ids.push_back((i * 11 + 3) % 64);

  const auto known = known_policies();
  ASSERT_NE(std::find(known.begin(), known.end(), "test-streaming-copy"), known.end());
  SweepSettings s;
  s.policy = "full,streaming,test-streaming-copy";
  s.budget = "12";
  s.sinks = 2;
  const SweepPlan plan = plan_sweep(s, docs, 2, 512);
  ASSERT_EQ(plan.runs.size(), 3u);
  EXPECT_EQ(plan.runs[2].config.policy, "test-streaming-copy");
  EXPECT_NE(plan.runs[1].key, plan.runs[2].key);
  const auto out = run_plan(model, plan, docs, 3);
  EXPECT_EQ(out[2].nll, out[1].nll);  // the same rule gives the same numbers
  EXPECT_NE(out[2].nll, out[0].nll);  // and it did compress
  EXPECT_EQ(out[2].max_cache, 12);

  s.policy = "full,redundant-key";
  const SweepPlan example = plan_sweep(s, docs, 2, 512);
  const auto ex = run_plan(model, example, docs, 2);
  ASSERT_EQ(ex[1].nll.size(), ex[0].nll.size());
  EXPECT_NE(ex[1].nll, ex[0].nll);
  EXPECT_EQ(ex[1].max_cache, 12);
}

TEST(PolicyRegistry, UnknownNamesListTheRegisteredOnesInListingOrder) {
  try {
    policy_info("lru");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("(known: full, streaming, h2o, tova, knorm, random, cam, weightedkv, weightedkv-evict"),
              std::string::npos)
        << e.what();
  }
}

TEST(PolicyRegistry, OptionsAPolicyDoesNotReadCannotReachIt) {
  PolicyOptions o;
  o.budget = 16;
  o.seed = 99;
  o.weighting = "uniform";
  o.skip_layers = {0};
  const PolicyOptions h2o = resolve_policy_options("h2o", o);
  EXPECT_EQ(h2o.seed, 0u);
  EXPECT_EQ(h2o.weighting, PolicyOptions{}.weighting);
  EXPECT_TRUE(h2o.skip_layers.empty());
  EXPECT_EQ(resolve_policy_options("knorm", o).skip_layers, std::vector<int>{0});
  EXPECT_EQ(resolve_policy_options("random", o).seed, 99u);
  o.sinks = 17;  // more sinks than the budget: refused for every budgeted policy
  for (const auto& p : known_policies()) {
    if (policy_info(p).traits.keeps_everything) continue;
    EXPECT_THROW(resolve_policy_options(p, o), Error) << p;
  }
}

// ---------------------------------------------------------------------------------------
// Goldens written by the code before the refactor, through the CLI, one sweep per model.
struct GoldenRun {
  std::string positions, policy, budget, weighting;
  std::vector<std::string> tokens;  // "index:hexfloat"
};

std::vector<GoldenRun> read_golden(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::vector<GoldenRun> runs;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream f(line);
    GoldenRun r;
    f >> r.positions >> r.policy >> r.budget >> r.weighting;
    for (std::string t; f >> t;) r.tokens.push_back(t);
    runs.push_back(r);
  }
  return runs;
}

void expect_matches_golden(const std::string& model_dir, const std::string& name) {
  const std::filesystem::path g = std::filesystem::path(KVSCOPE_SOURCE_DIR) / "tests/data/refactor_golden";
  const auto golden = read_golden(g / (name + ".nll"));
  ASSERT_EQ(golden.size(), 2u * (1 + 7 * 2 + 2 * 2));  // per position mode: full, 7 policies x 2 budgets, weightedkv x 2 weightings x 2 budgets
  testing::TempDir dir("refactor_golden");
  size_t compared = 0;
  for (const std::string positions : {"original", "in-cache"}) {
    const auto out = dir / (positions + ".h5");
    const auto r = testing::run_kvscope({"ppl", model_dir, "--ids", (g / (name + ".ids")).string(), "--budget", "16,40", "--weighting",
                                         "avg-attention,uniform", "--positions", positions, "--seed", "3", "--batch", "1", "-o",
                                         out.string()});
    ASSERT_EQ(r.code, 0) << r.err;
    for (const PplRun& run : read_ppl_results(out.string())) {
      const auto it = std::find_if(golden.begin(), golden.end(), [&](const GoldenRun& x) {
        return x.positions == positions && x.policy == run.policy && x.budget == run.budget_label &&
               x.weighting == (run.weighting.empty() ? "-" : run.weighting);
      });
      ASSERT_NE(it, golden.end()) << run.policy << " " << run.budget_label;
      ASSERT_EQ(it->tokens.size(), run.nll.size()) << run.policy;
      for (size_t i = 0; i < run.nll.size(); ++i) {
        const std::string& t = it->tokens[i];
        const size_t colon = t.find(':');
        ASSERT_EQ(std::stoll(t.substr(0, colon)), run.token_index[i]);
        // Hex floats parse exactly: equality here is equality of every bit.
        ASSERT_EQ(std::strtod(t.c_str() + colon + 1, nullptr), run.nll[i])
            << name << " " << positions << " " << run.policy << " " << run.budget_label << " " << run.weighting << " token " << i;
      }
      ++compared;
    }
  }
  EXPECT_EQ(compared, golden.size());
}

TEST(PolicyRefactorGolden, EmbeddedModelBitIdentical) {
  expect_matches_golden((std::filesystem::path(KVSCOPE_SOURCE_DIR) / "data/models/tinybooks").string(), "tinybooks");
}

TEST(PolicyRefactorGolden, RandomModelWithAwkwardShapesBitIdentical) {
  testing::TempDir dir("refactor_random");
  const auto r = testing::run_kvscope({"random-model", (dir / "m").string(), "--spec",
                                       "layers=2,hidden=48,mlp=172,heads=4,kv_heads=2,vocab=250,context=512,seed=11"});
  ASSERT_EQ(r.code, 0) << r.err;
  expect_matches_golden((dir / "m").string(), "random");
}

TEST(PolicyRefactorGolden, Stories260KBitIdentical) {
  KVSCOPE_REQUIRE_SHARED();
  expect_matches_golden(testing::stories_dir().string(), "stories");
}

}  // namespace
}  // namespace kvscope
