// One-step perturbation closed forms inside a real decode, checked against recomputing the
// attention from q, K and V after the change; and kvscope perturb end to end.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "analysis/perturbation.h"
#include "cache/policy_cache.h"
#include "eval/perturb.h"
#include "eval/perturbation_log.h"
#include "io/h5.h"
#include "io/provenance.h"
#include "model/llama.h"
#include "model/observer.h"
#include "model/random_model.h"
#include "support/cli.h"
#include "support/test_paths.h"

namespace kvscope {
namespace {

struct QueryCapture : ForwardObserver {
  void on_layer(const LayerActivations& a) override { q[a.layer] = a.q.select(1, a.q.size(1) - 1).to(at::kDouble).clone(); }
  std::map<int, at::Tensor> q;
};

struct Expected {
  int layer, kv, head;
  std::vector<double> after;
};

struct ClosedForms : DecisionObserver {
  void on_decisions(int layer, const std::vector<HeadCells>& heads, const std::vector<Decision>& decisions, const at::Tensor& values,
                    const at::Tensor& probs) override {
    const int64_t KV = static_cast<int64_t>(heads.size()), group = probs.size(0) / KV;
    for (int64_t h = 0; h < KV; ++h) {
      if (decisions[h].kind == Decision::None) continue;
      for (int64_t g = 0; g < group; ++g) {
        const int64_t qh = h * group + g;
        expected.push_back(Expected{layer, static_cast<int>(h), static_cast<int>(qh),
                                    PerturbationLog::output_after(decisions[h], heads[h], values[h], probs[qh][probs.size(1) - 1], nullptr)});
      }
    }
  }
  std::vector<Expected> expected;
};

std::vector<double> to_vec(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

class ClosedFormTest : public ::testing::TestWithParam<std::pair<std::string, std::string>> {};

TEST_P(ClosedFormTest, EqualsBruteForceRecomputation) {
  const auto [policy_name, weighting] = GetParam();
  testing::TempDir dir("closedform");
  RandomModelSpec spec;
  spec.vocab_size = 64;
  spec.hidden_size = 32;
  spec.intermediate_size = 40;
  spec.num_heads = 4;
  spec.num_kv_heads = 2;
  spec.seed = 21;
  write_random_model(dir.path().string(), spec);
  const LlamaModel model = LlamaModel::load(dir.path());
  const ModelConfig& c = model.config();
  PolicyOptions po;
  po.budget = 10;
  po.sinks = 1;
  po.recent = policy_name == "cam" ? -1 : 3;
  po.weighting = weighting;
  po.seed = 3;
  po.cam_merge_count = 4;
  PolicyCache cache(PolicyCacheConfig{c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim, at::kFloat, at::kCPU,
                                      PositionMode::Original, AttentionAggregation::Mean},
                    std::shared_ptr<CachePolicy>(make_policy(policy_name, po)), model.rope(), 10);
  ClosedForms forms;
  cache.set_decision_observer(&forms);
  int checked = 0;
  for (int64_t t = 0; t < 40; ++t) {
    QueryCapture cap;
    forms.expected.clear();
    model.forward(at::tensor(std::vector<int64_t>{(t * 13 + 5) % 64}, at::kLong), t, cache, &cap, Logits::None);
    for (const Expected& e : forms.expected) {
      const auto [K, V] = cache.head_keys_values(e.layer, e.kv);
      std::vector<std::vector<double>> keys, values;
      for (int64_t i = 0; i < K.size(0); ++i) { keys.push_back(to_vec(K[i])); values.push_back(to_vec(V[i])); }
      const auto brute = attention_output(to_vec(cap.q[e.layer][e.head]), keys, values, 1.0 / std::sqrt(static_cast<double>(c.head_dim)));
      // The closed form starts from float32 probabilities and divides by (1 - A_j), which
      // amplifies their rounding; recomputation is float64 from q, K, V.
      for (size_t d = 0; d < brute.size(); ++d) ASSERT_NEAR(e.after[d], brute[d], 1e-4 * (1 + std::abs(brute[d]))) << "step " << t;
      ++checked;
    }
  }
  EXPECT_GT(checked, 100);
}

INSTANTIATE_TEST_SUITE_P(Decisions, ClosedFormTest,
                         ::testing::Values(std::make_pair(std::string("weightedkv-evict"), std::string("avg-attention")),
                                           std::make_pair(std::string("h2o"), std::string("avg-attention")),
                                           std::make_pair(std::string("cam"), std::string("avg-attention")),
                                           std::make_pair(std::string("weightedkv"), std::string("avg-attention")),
                                           std::make_pair(std::string("weightedkv"), std::string("acc-attention")),
                                           std::make_pair(std::string("weightedkv"), std::string("uniform")),
                                           std::make_pair(std::string("weightedkv"), std::string("current-softmax")),
                                           std::make_pair(std::string("weightedkv"), std::string("multiplicity")),
                                           std::make_pair(std::string("weightedkv"), std::string("key-similarity")),
                                           std::make_pair(std::string("weightedkv"), std::string("key-norm"))),
                         [](const auto& i) {
                           std::string n = i.param.first + "_" + i.param.second;
                           for (char& ch : n) if (ch == '-') ch = '_';
                           return n;
                         });

TEST(Perturb, UnchangedCacheGivesCosineOneAndKlZero) {
  testing::TempDir dir("perturb-none");
  RandomModelSpec spec;
  spec.seed = 4;
  write_random_model(dir.path().string(), spec);
  const LlamaModel model = LlamaModel::load(dir.path());
  std::vector<int64_t> ids;
  for (int i = 0; i < 60; ++i) ids.push_back((i * 17 + 3) % spec.vocab_size);
  PerturbOptions o;
  o.at = 20;
  o.steps = 30;
  o.variants = {"none", "avg-attention", "evict"};
  o.layers = {0, 1};
  o.kv_heads = {0, 1};
  const auto r = run_perturbation(model, ids, o);
  ASSERT_EQ(r.variants.size(), 3u);
  for (double x : r.variants[0].cos_output) ASSERT_EQ(x, 1.0);
  for (double x : r.variants[0].kl) ASSERT_EQ(x, 0.0);
  for (double x : r.variants[0].rel_output) ASSERT_EQ(x, 0.0);
  // A real merge and a real eviction do change things.
  double worst = 1.0;
  for (double x : r.variants[2].cos_output) worst = std::min(worst, x);
  EXPECT_LT(worst, 1.0);
  EXPECT_EQ(r.variants[1].cos_output.size(), static_cast<size_t>(30 * 2 * spec.num_heads));
}

TEST(Perturb, StoriesOutputsFiniteAndShaped) {
  KVSCOPE_REQUIRE_SHARED();
  testing::TempDir dir("perturb-stories");
  const auto out = (dir / "p.h5").string();
  const auto r = testing::run_kvscope({"perturb", testing::stories_dir().string(), "--text",
                                       (testing::shared_dir() / "text/austen/emma.txt").string(), "--text",
                                       (testing::shared_dir() / "text/kjv/kjv_bible.txt").string(), "--at", "50", "--steps", "60",
                                       "--weighting", "avg-attention,uniform,evict", "--layers", "1-3", "-o", out});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("| evict |"), std::string::npos) << r.out;
  h5::File f = h5::File::open_read(out);
  const h5::Group root = f.root();
  check_schema(root, out, kPerturbSchemaName, kPerturbSchemaVersion, "");
  for (const char* v : {"avg-attention", "uniform", "evict"}) {
    for (const char* doc : {"0", "1"}) {
      const auto g = root.open_group("documents").open_group(doc).open_group(v);
      const auto d = g.open_dataset("cos_output");
      EXPECT_EQ(d.shape(), (std::vector<int64_t>{60, 3, 8}));
      std::vector<double> x;
      d.read_all(x);
      for (double y : x) ASSERT_TRUE(std::isfinite(y) && y <= 1.0 + 1e-12 && y > -1.0);
      std::vector<double> kl;
      g.open_dataset("kl").read_all(kl);
      for (double y : kl) ASSERT_TRUE(std::isfinite(y) && y >= -1e-12);
    }
    std::vector<double> mean;
    root.open_group("aggregate").open_group(v).open_dataset("cos_output_mean").read_all(mean);
    EXPECT_EQ(mean.size(), 60u);
  }
  EXPECT_TRUE(std::filesystem::exists(dir / "p.csv"));
}

TEST(PplPerturbationLog, RecordsEveryDecisionWhenOnAndNothingWhenOff) {
  testing::TempDir dir("pertlog");
  RandomModelSpec spec;
  write_random_model((dir / "m").string(), spec);
  {
    std::ofstream f(dir / "ids.txt");
    for (int i = 0; i < 80; ++i) f << (i * 11 % 256) << ' ';
  }
  for (bool on : {true, false}) {
    const std::string out = (dir / (on ? "on.h5" : "off.h5")).string();
    std::vector<std::string> args{"ppl", (dir / "m").string(), "--ids", (dir / "ids.txt").string(), "--policy", "weightedkv",
                                  "--budget", "32", "-o", out};
    if (on) args.push_back("--log-perturbation");
    const auto r = testing::run_kvscope(args);
    ASSERT_EQ(r.code, 0) << r.err;
    h5::File f = h5::File::open_read(out);
    const auto run = f.root().open_group("runs").open_group("0");
    EXPECT_EQ(run.has("perturbation"), on);
    if (on) {
      std::vector<double> rel;
      run.open_group("perturbation").open_dataset("relative_change").read_all(rel);
      // (80 - 1 - 32) decode steps over budget x 2 layers x 4 query heads
      EXPECT_EQ(rel.size(), static_cast<size_t>((80 - 1 - 32) * 2 * 4));
      for (double x : rel) ASSERT_TRUE(std::isfinite(x) && x >= 0);
    }
  }
}

// Regressions: a merge in a subset of the KV heads used to stop the next step with
// "cache slots out of step"; the receiver recorded was always the right neighbour.
class PerturbHeads : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("perturb-heads");
    RandomModelSpec spec;
    spec.vocab_size = 64;
    spec.hidden_size = 32;
    spec.intermediate_size = 40;
    spec.num_layers = 3;
    spec.num_heads = 4;
    spec.num_kv_heads = 2;
    spec.seed = 8;
    write_random_model(dir_->path().string(), spec);
    model_ = new LlamaModel(LlamaModel::load(dir_->path()));
    for (int i = 0; i < 50; ++i) ids_.push_back((i * 13 + 1) % 64);
  }
  static void TearDownTestSuite() {
    delete model_;
    delete dir_;
  }
  static PerturbOptions options(std::vector<int> layers, std::vector<int> heads, MergeReceiver receiver) {
    PerturbOptions o;
    o.at = 20;
    o.steps = 10;
    o.sinks = 2;
    o.variants = {"avg-attention", "evict"};
    o.layers = std::move(layers);
    o.kv_heads = std::move(heads);
    o.receiver = receiver;
    return o;
  }
  static inline testing::TempDir* dir_ = nullptr;
  static inline LlamaModel* model_ = nullptr;
  static inline std::vector<int64_t> ids_;
};

TEST_F(PerturbHeads, MergingOneKvHeadLeavesTheOtherExactlyAsItWas) {
  const auto r = run_perturbation(*model_, ids_, options({0}, {0}, MergeReceiver::Right));
  const int64_t H = 4, group = 2;
  for (const auto& v : r.variants) {
    EXPECT_EQ(v.merged[2], -1) << "KV head 1 was not merged in";
    // Layer 0 is the first layer: at the first step after the merge, the query heads of KV
    // head 1 read an unchanged cache, those of KV head 0 a changed one.
    for (int64_t h = 0; h < H; ++h) {
      if (h / group == 1) EXPECT_EQ(v.rel_output[static_cast<size_t>(h)], 0.0) << v.name << " head " << h;
      else EXPECT_GT(v.rel_output[static_cast<size_t>(h)], 0.0) << v.name << " head " << h;
    }
  }
}

TEST_F(PerturbHeads, RecordsTheReceiverTheRuleChose) {
  for (MergeReceiver rule : {MergeReceiver::Right, MergeReceiver::Left}) {
    const auto r = run_perturbation(*model_, ids_, options({0, 1, 2}, {0, 1}, rule));
    for (const auto& v : r.variants) {
      for (size_t i = 0; i + 1 < v.merged.size(); i += 2) {
        // A full cache before the merge: positions are sequence indices, so neighbours differ by one.
        EXPECT_EQ(v.merged[i + 1] - v.merged[i], rule == MergeReceiver::Right ? 1 : -1) << v.name;
      }
    }
    // The weight depends on the receiver (avg-attention), so the two rules record different weights.
    if (rule == MergeReceiver::Left) {
      const auto right = run_perturbation(*model_, ids_, options({0, 1, 2}, {0, 1}, MergeReceiver::Right));
      EXPECT_NE(r.variants[0].weights, right.variants[0].weights);
    }
  }
}

TEST_F(PerturbHeads, AHeadsSubsetMergeOnEveryLayerMatchesBruteForceAttention) {
  const ModelConfig& c = model_->config();
  for (PositionMode mode : {PositionMode::Original, PositionMode::InCache}) {
    PolicyCache cache(PolicyCacheConfig{c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim, at::kFloat, at::kCPU, mode,
                                        AttentionAggregation::Mean},
                      std::shared_ptr<CachePolicy>(make_policy("full", PolicyOptions{})), model_->rope(), 1000);
    model_->forward(at::tensor(std::vector<int64_t>(ids_.begin(), ids_.begin() + 20), at::kLong), 0, cache, nullptr, Logits::None);
    for (int layer = 0; layer < c.num_layers; ++layer) {
      std::vector<Decision> d(2);
      d[0] = Decision::convex_merge(5 + layer, 6 + layer, 0.25);  // KV head 0 only
      cache.apply_decisions(layer, d);
    }
    cache.check_invariants();
    EXPECT_EQ(cache.cells(1, 0).size(), 19);
    EXPECT_EQ(cache.cells(1, 1).size(), 20);
    for (int64_t t = 20; t < 26; ++t) {
      struct Capture : ForwardObserver {
        void on_layer(const LayerActivations& a) override {
          q[a.layer] = a.q.select(1, a.q.size(1) - 1).to(at::kDouble).clone();
          out[a.layer] = a.attention_output.select(1, a.attention_output.size(1) - 1).to(at::kDouble).clone();
        }
        std::map<int, at::Tensor> q, out;
      } cap;
      model_->forward(at::tensor(std::vector<int64_t>{ids_[static_cast<size_t>(t)]}, at::kLong), t, cache, &cap, Logits::None);
      for (int layer = 0; layer < c.num_layers; ++layer) {
        for (int64_t h = 0; h < c.num_heads; ++h) {
          // Attention over exactly the tokens the head keeps, recomputed in float64.
          const auto [K, V] = cache.head_keys_values(layer, static_cast<int>(h / (c.num_heads / c.num_kv_heads)));
          std::vector<std::vector<double>> keys, values;
          for (int64_t i = 0; i < K.size(0); ++i) {
            keys.push_back(to_vec(K[i]));
            values.push_back(to_vec(V[i]));
          }
          const auto brute = attention_output(to_vec(cap.q[layer][h]), keys, values, 1.0 / std::sqrt(static_cast<double>(c.head_dim)));
          const auto got = to_vec(cap.out[layer][h]);
          for (size_t k = 0; k < got.size(); ++k) ASSERT_NEAR(got[k], brute[k], 1e-5) << "layer " << layer << " head " << h << " step " << t;
        }
      }
    }
  }
}

}  // namespace
}  // namespace kvscope
