// Cache policies: the paper's toy example, an independent slow replay of every policy's rule
// checked at every step of a real micro-model run, and the exactness properties of kvscope ppl.
#include <gtest/gtest.h>

#include <limits>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <random>

#include "cache/policy_cache.h"
#include "model/rope.h"
#include "core/error.h"
#include "eval/ppl.h"
#include "eval/ppl_results.h"
#include "eval/resume_journal.h"
#include "eval/score.h"
#include "model/llama.h"
#include "model/observer.h"
#include "model/random_model.h"
#include "support/cli.h"
#include "support/test_paths.h"
#include "support/tiny_models.h"

namespace kvscope {
namespace {

using testing::TempDir;

ModelConfig tiny_config(int64_t head_dim) {
  ModelConfig c;
  c.head_dim = head_dim;
  c.rope.theta = 10000;
  return c;
}

// ---------------------------------------------------------------------------------------
// The toy example of the WeightedKV paper: cache size m = 4, one head. Each token i always
// receives attention alpha_i, so its historical average a/n is exactly alpha_i.
TEST(WeightedKvToy, PaperExample) {
  const int hd = 8;
  const ModelConfig rc = tiny_config(hd);
  const Rope rope(rc, at::kCPU);
  PolicyCacheConfig cfg{1, 1, 1, hd, at::kFloat, at::kCPU, PositionMode::Original, AttentionAggregation::Mean};
  PolicyOptions po;
  po.budget = 4;
  po.sinks = 0;
  po.recent = 0;
  PolicyCache cache(cfg, std::shared_ptr<CachePolicy>(make_policy("weightedkv", po)), rope, 4);
  const double alpha[] = {0, 0.3, 0.1, 0.5, 0.4, 0.45, 0.6, 0.7, 0.8};  // alpha[i] for token v_i
  for (int t = 1; t <= 8; ++t) {
    const at::Tensor k = at::randn({1, 1, hd});
    const at::Tensor v = at::zeros({1, 1, hd});
    v[0][0][t - 1] = 1.0;  // v_t = e_t, so every stored value shows its mixing coefficients
    const at::Tensor pos = at::full({1}, t - 1, at::kLong);
    const AttentionInputs in = cache.append(0, NewEntries{k, k, v, pos});
    const HeadCells& s = cache.cells(0, 0);
    at::Tensor probs = at::zeros({1, 1, in.keys.size(1)});
    for (const SlotId slot : s.order()) probs[0][0][index_of(slot)] = alpha[value_of(s.position(slot)) + 1];
    cache.observe_attention(0, probs);
    if (t == 5) {
      // v2 (0.1) merged into its right neighbour v3 (0.5): v2/6 + 5 v3/6.
      EXPECT_EQ(cache.kept_positions(0, 0), (std::vector<int64_t>{0, 2, 3, 4}));
      const auto v3 = cache.value(0, 0, 1);
      EXPECT_NEAR(v3[1], 1.0 / 6.0, 1e-6);
      EXPECT_NEAR(v3[2], 5.0 / 6.0, 1e-6);
    }
  }
  // After step 8 the cache holds v3, v6, v7, v8; v3 and v6 each summarise three values.
  EXPECT_EQ(cache.kept_positions(0, 0), (std::vector<int64_t>{2, 5, 6, 7}));
  const HeadCells& s = cache.cells(0, 0);
  std::vector<int64_t> mult;
  for (const SlotId slot : s.order()) mult.push_back(s.multiplicity(slot));
  EXPECT_EQ(mult, (std::vector<int64_t>{3, 3, 1, 1}));
  const double w1 = 0.3 / (0.3 + 0.5);  // v1 into (v2/6 + 5 v3/6)
  const auto v3 = cache.value(0, 0, 0);
  EXPECT_NEAR(v3[0], w1, 1e-6);
  EXPECT_NEAR(v3[1], (1 - w1) / 6.0, 1e-6);
  EXPECT_NEAR(v3[2], (1 - w1) * 5.0 / 6.0, 1e-6);
  const double w4 = 0.4 / (0.4 + 0.45), w5 = 0.45 / (0.45 + 0.6);  // v4 into v5, then v5' into v6
  const auto v6 = cache.value(0, 0, 1);
  EXPECT_NEAR(v6[3], w5 * w4, 1e-6);
  EXPECT_NEAR(v6[4], w5 * (1 - w4), 1e-6);
  EXPECT_NEAR(v6[5], 1 - w5, 1e-6);
  // Keys are never merged: the receivers keep the key of v3 and v6 (their own a and n too).
}

// ---------------------------------------------------------------------------------------
// An independent replay of each rule from the attention the model really produced.
struct RefEntry {
  int64_t pos;
  double acc = 0;
  int64_t count = 0, mult = 1;
  double norm = 0;
  std::vector<double> value, key;  // key as stored: after RoPE (original positions)
};

struct Capture : ForwardObserver {
  bool wants_attention(int) const override { return true; }
  void on_layer(const LayerActivations& a) override {
    probs[a.layer] = a.attention->to(at::kDouble).clone();
    key_pos[a.layer] = a.key_positions.clone();
    k_pre[a.layer] = a.k_pre_rope.to(at::kDouble).clone();
    k[a.layer] = a.k.to(at::kDouble).clone();
    v[a.layer] = a.v.to(at::kDouble).clone();
  }
  std::map<int, at::Tensor> probs, key_pos, k_pre, k, v;
};

// The options that change a decision, as the reference reads them.
struct RefOptions {
  AttentionAggregation aggregation = AttentionAggregation::Mean;
  MergeReceiver receiver = MergeReceiver::Right;
  bool neighbour_in_middle = false;
  std::vector<int> skip_layers;
};

class Reference {
 public:
  Reference(std::string policy, int layers, int heads, int kv, int64_t budget, int64_t sinks, int64_t recent, uint64_t seed,
            RefOptions options = {})
      : policy_(std::move(policy)), H_(heads), KV_(kv), budget_(budget), sinks_(sinks), recent_(recent), rng_(seed),
        options_(std::move(options)), state_(layers, std::vector<std::vector<RefEntry>>(kv)) {}

  // One decode step of one layer: the new token at `pos`, the attention over the cache.
  void step(int layer, int64_t pos, const Capture& cap) {
    const at::Tensor& p = cap.probs.at(layer);       // [H, 1, S]
    const at::Tensor& kp = cap.key_pos.at(layer);    // [KV, S]
    const int group = H_ / KV_;
    std::vector<double> layer_mean_by_pos;
    std::map<int64_t, double> tova_score;
    for (int h = 0; h < KV_; ++h) {
      auto& entries = state_[layer][h];
      RefEntry e{pos};
      e.norm = cap.k_pre.at(layer)[h][0].norm().item<double>();
      const at::Tensor vv = cap.v.at(layer)[h][0];
      for (int64_t d = 0; d < vv.size(0); ++d) e.value.push_back(vv[d].item<double>());
      const at::Tensor kk = cap.k.at(layer)[h][0];
      for (int64_t d = 0; d < kk.size(0); ++d) e.key.push_back(kk[d].item<double>());
      entries.push_back(e);
      for (int64_t col = 0; col < p.size(2); ++col) {
        const int64_t kpos = kp[h][col].item<int64_t>();
        double sum = 0, largest = -1;
        for (int g = 0; g < group; ++g) {
          sum += p[h * group + g][0][col].item<double>();
          largest = std::max(largest, p[h * group + g][0][col].item<double>());
        }
        const double aggregated = options_.aggregation == AttentionAggregation::Mean ? sum / group
                                  : options_.aggregation == AttentionAggregation::Sum ? sum : largest;
        for (auto& x : entries) {
          if (x.pos == kpos) { x.acc += aggregated; x.count += 1; }
        }
        tova_score[kpos] += sum / H_;
      }
    }
    const auto& skip = options_.skip_layers;
    if (std::find(skip.begin(), skip.end(), layer) != skip.end()) return;
    if (policy_ == "full" || static_cast<int64_t>(state_[layer][0].size()) <= budget_) return;
    int tova_victim = -1;
    for (int h = 0; h < KV_; ++h) {
      auto& e = state_[layer][h];
      const int n = static_cast<int>(e.size());
      const int lo = static_cast<int>(sinks_), hi = n - static_cast<int>(recent_);
      int victim = lo;
      if (policy_ == "h2o") {
        victim = earliest_near_min(lo, hi, [&](int i) { return e[i].acc; });
      } else if (policy_ == "knorm") {
        victim = earliest_near_min(lo, hi, [&](int i) { return -e[i].norm; });
      } else if (policy_ == "tova") {
        if (tova_victim < 0) tova_victim = earliest_near_min(lo, hi, [&](int i) { return tova_score[e[i].pos]; });
        victim = tova_victim;
      } else if (policy_ == "random") {
        victim = lo + static_cast<int>(rng_() % static_cast<uint64_t>(hi - lo));
      } else if (policy_ == "weightedkv" || policy_ == "weightedkv-evict") {
        int end = n - static_cast<int>(std::max<int64_t>(recent_, 1));
        if (options_.neighbour_in_middle && end - 1 > lo) end -= 1;
        victim = earliest_near_min(lo, end, [&](int i) { return e[i].acc / e[i].count; });
        if (policy_ == "weightedkv") {
          int receiver = victim + 1;
          if (options_.receiver == MergeReceiver::Left && victim > 0) receiver = victim - 1;
          if (options_.receiver == MergeReceiver::MostSimilarKey) {
            double best = -2;
            for (int i = 0; i < n; ++i) {
              if (i == victim) continue;
              double dot = 0, na = 0, nb = 0;
              for (size_t d = 0; d < e[i].key.size(); ++d) {
                dot += e[victim].key[d] * e[i].key[d];
                na += e[victim].key[d] * e[victim].key[d];
                nb += e[i].key[d] * e[i].key[d];
              }
              const double cos = dot / std::sqrt(na * nb);
              if (cos > best + 1e-9) {  // float32 keys: a difference below that is no preference
                best = cos;
                receiver = i;
              }
            }
          }
          RefEntry& r = e[receiver];
          const double aj = e[victim].acc / e[victim].count, ar = r.acc / r.count;
          const double w = aj / (aj + ar);
          for (size_t d = 0; d < r.value.size(); ++d) r.value[d] = w * e[victim].value[d] + (1 - w) * r.value[d];
          r.mult += e[victim].mult;
        }
      } else if (policy_ == "cam") {
        double mean = 0;
        int m = 0;
        for (int t = victim + 1; t < n && t <= victim + 16; ++t, ++m) mean += e[t].acc;
        mean /= m;
        const double prob = std::min(1.0, std::max(0.0, e[victim].acc / mean));
        const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
        if (u < prob) {
          for (int t = victim + 1; t < n && t <= victim + 16; ++t)
            for (size_t d = 0; d < e[t].value.size(); ++d) e[t].value[d] += e[victim].value[d] / m;
        }
      }
      e.erase(e.begin() + victim);
    }
  }

  // The documented tie rule (methods §2.2): the earliest score within a relative 1e-5 of the lowest.
  template <typename Score>
  static int earliest_near_min(int lo, int hi, Score score) {
    double best = std::numeric_limits<double>::infinity();
    for (int i = lo; i < hi; ++i) best = std::min(best, score(i));
    for (int i = lo; i < hi; ++i)
      if (score(i) <= best + 1e-5 * std::abs(best)) return i;
    return lo;
  }

  std::vector<int64_t> kept(int layer, int head) const {
    std::vector<int64_t> out;
    for (const auto& e : state_[layer][head]) out.push_back(e.pos);
    return out;
  }
  const std::vector<RefEntry>& entries(int layer, int head) const { return state_[layer][head]; }

 private:
  std::string policy_;
  int H_, KV_;
  int64_t budget_, sinks_, recent_;
  std::mt19937_64 rng_;
  RefOptions options_;
  std::vector<std::vector<std::vector<RefEntry>>> state_;
};

class PolicyTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("policies");
    write_random_model(dir_->path().string(), testing::policy_model_spec(11));
    model_ = new LlamaModel(LlamaModel::load(dir_->path()));
    for (int i = 0; i < 60; ++i) ids_.push_back((i * 29 + 7) % 64);
  }
  static void TearDownTestSuite() {
    delete model_;
    delete dir_;
  }
  static RunConfig config(const std::string& policy, int64_t budget, PositionMode mode, bool prefill) {
    const ModelConfig& c = model_->config();
    RunConfig rc;
    rc.policy = policy;
    rc.budget.tokens = budget;
    rc.options.sinks = 2;
    rc.options.recent = policy == "streaming" || policy == "cam" ? -1 : 4;
    rc.options.seed = 5;
    rc.positions = mode;
    rc.prefill = prefill;
    rc.prefill_chunk = 5;
    return rc;
  }
  static RunOutput run(const RunConfig& rc, std::vector<Window> windows = {}) {
    if (windows.empty()) windows = make_windows(Protocol::Stream, static_cast<int64_t>(ids_.size()), 0, 0);
    return run_document(*model_, ids_, windows, rc);
  }
  static inline TempDir* dir_ = nullptr;
  static inline LlamaModel* model_ = nullptr;
  static inline std::vector<int64_t> ids_;
};

// Runs `policy` token by token and compares the cache with the slow reference after every
// layer of every step: kept tokens, and for merging policies the stored values and multiplicities.
void expect_matches_reference(const LlamaModel& model, const std::vector<int64_t>& ids, const std::string& policy, int64_t budget,
                              int64_t sinks, int64_t recent_option, const RefOptions& options) {
  const ModelConfig& c = model.config();
  PolicyOptions po;
  po.budget = budget;
  po.sinks = sinks;
  po.recent = recent_option;
  po.seed = 5;
  po.receiver = options.receiver;
  po.neighbour_in_middle = options.neighbour_in_middle;
  po.skip_layers = options.skip_layers;
  auto pol = std::shared_ptr<CachePolicy>(make_policy(policy, po));
  const int64_t recent = pol->recent();
  PolicyCache cache(PolicyCacheConfig{c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim, at::kFloat, at::kCPU,
                                      PositionMode::Original, options.aggregation},
                    pol, model.rope(), policy == "full" ? 1000 : budget);
  Reference ref(policy, static_cast<int>(c.num_layers), static_cast<int>(c.num_heads), static_cast<int>(c.num_kv_heads), budget,
                pol->sinks(), recent, 5, options);
  const std::string where = concat(policy, " budget ", budget, " sinks ", sinks, " recent ", recent, " aggregation ",
                                   static_cast<int>(options.aggregation), " receiver ", merge_receiver_name(options.receiver),
                                   options.neighbour_in_middle ? " in-middle" : "", options.skip_layers.empty() ? "" : " skip");
  Capture cap;
  for (int64_t t = 0; t < static_cast<int64_t>(ids.size()); ++t) {
    model.forward(at::tensor(std::vector<int64_t>{ids[t]}, at::kLong), t, cache, &cap, Logits::None);
    for (int l = 0; l < c.num_layers; ++l) {
      ref.step(l, t, cap);
      const bool skipped = std::find(options.skip_layers.begin(), options.skip_layers.end(), l) != options.skip_layers.end();
      for (int h = 0; h < c.num_kv_heads; ++h) {
        ASSERT_EQ(cache.kept_positions(l, h), ref.kept(l, h)) << where << " step " << t << " layer " << l << " head " << h;
        if (policy != "full" && !skipped) ASSERT_LE(cache.size(l), budget);
        if (policy == "weightedkv" || policy == "cam") {
          const auto& entries = ref.entries(l, h);
          for (size_t i = 0; i < entries.size(); ++i) {
            const auto got = cache.value(l, h, static_cast<int>(i));
            for (size_t d = 0; d < got.size(); ++d) ASSERT_NEAR(got[d], entries[i].value[d], 1e-5) << where << " value of entry " << i;
            if (policy == "weightedkv") ASSERT_EQ(cache.cells(l, h).multiplicity(cache.cells(l, h).slot(static_cast<int>(i))), entries[i].mult);
          }
        }
      }
    }
  }
  cache.check_invariants();
  if (policy != "full") EXPECT_EQ(cache.size(c.num_layers - 1), options.skip_layers.empty() ? budget : cache.size(c.num_layers - 1));
}

TEST_P(PolicyTest, AgreesWithSlowReferenceAtEveryStep) {
  const std::string policy = GetParam();
  expect_matches_reference(*model_, ids_, policy, 12, 2, policy == "streaming" || policy == "cam" ? -1 : 4, RefOptions{});
}

// Every option that changes a decision, against the same reference: budget/sinks/recent
// splits, GQA aggregation, receivers, the in-middle rule and skipped layers.
TEST_P(PolicyTest, AgreesWithSlowReferenceUnderEveryDecisionOption) {
  const std::string policy = GetParam();
  const PolicyTraits& traits = policy_info(policy).traits;
  struct Split {
    int64_t budget, sinks, recent;
  };
  for (const Split sp : {Split{9, 0, 0}, Split{14, 3, -1}, Split{11, 1, 2}}) {
    expect_matches_reference(*model_, ids_, policy, sp.budget, sp.sinks, traits.options & kReadsRecent ? sp.recent : -1, RefOptions{});
  }
  for (AttentionAggregation agg : {AttentionAggregation::Sum, AttentionAggregation::Max}) {
    RefOptions o;
    o.aggregation = agg;
    expect_matches_reference(*model_, ids_, policy, 12, 2, -1, o);
  }
  if (traits.options & kReadsReceiver) {
    for (MergeReceiver r : {MergeReceiver::Left, MergeReceiver::MostSimilarKey}) {
      RefOptions o;
      o.receiver = r;
      expect_matches_reference(*model_, ids_, policy, 12, 2, 4, o);
    }
  }
  if (traits.options & kReadsNeighbourInMiddle) {
    RefOptions o;
    o.neighbour_in_middle = true;
    expect_matches_reference(*model_, ids_, policy, 12, 2, 4, o);
  }
  if (traits.options & kReadsSkipLayers) {
    for (int layer : {0, 1}) {
      RefOptions o;
      o.skip_layers = {layer};
      expect_matches_reference(*model_, ids_, policy, 12, 2, 4, o);
    }
  }
}

TEST_P(PolicyTest, PrefillThenDecodeEqualsPureDecoding) {
  const std::string policy = GetParam();
  for (PositionMode mode : {PositionMode::Original, PositionMode::InCache}) {
    const RunOutput a = run(config(policy, 12, mode, true));
    const RunOutput b = run(config(policy, 12, mode, false));
    ASSERT_EQ(a.nll.size(), b.nll.size());
    for (size_t i = 0; i < a.nll.size(); ++i) ASSERT_NEAR(a.nll[i], b.nll[i], 1e-4) << policy << " token " << i;
  }
}

TEST_P(PolicyTest, BudgetCoveringTheTextEqualsFull) {
  const std::string policy = GetParam();
  const int64_t T = static_cast<int64_t>(ids_.size());
  const RunOutput full = run(config("full", T, PositionMode::Original, false));
  const RunOutput same = run(config(policy, T, PositionMode::Original, false));
  EXPECT_EQ(same.nll, full.nll);
  EXPECT_LE(same.max_cache, T);
}

INSTANTIATE_TEST_SUITE_P(All, PolicyTest,
                         ::testing::Values("full", "streaming", "h2o", "tova", "knorm", "random", "cam", "weightedkv",
                                           "weightedkv-evict"),
                         [](const ::testing::TestParamInfo<std::string>& i) {
                           std::string n = i.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

TEST_F(PolicyTest, FullEqualsScoreUnderEveryProtocol) {
  const int64_t T = static_cast<int64_t>(ids_.size());
  const ScoreResult whole = score_tokens(*model_, ids_, ScoreOptions{});
  const RunOutput stream = run(config("full", T, PositionMode::Original, false));
  ASSERT_EQ(stream.nll.size(), whole.nll.size());
  for (size_t i = 0; i < whole.nll.size(); ++i) EXPECT_NEAR(stream.nll[i], whole.nll[i], 1e-4);

  for (Protocol p : {Protocol::Chunks, Protocol::Sliding}) {
    const auto windows = make_windows(p, T, 20, 10);
    const RunOutput r = run(config("full", T, PositionMode::Original, false), windows);
    size_t k = 0;
    for (const Window& w : windows) {
      const std::vector<int64_t> sub(ids_.begin() + w.begin, ids_.begin() + w.end);
      const ScoreResult s = score_tokens(*model_, sub, ScoreOptions{});
      for (int64_t target = w.score_from; target < w.end; ++target, ++k) {
        ASSERT_LT(k, r.nll.size());
        EXPECT_EQ(r.token_index[k], target);
        EXPECT_NEAR(r.nll[k], s.nll[target - w.begin - 1], 1e-4);
      }
    }
    EXPECT_EQ(k, r.nll.size());
  }
}

TEST_F(PolicyTest, OriginalAndInCachePositionsAgreeWithoutEviction) {
  const int64_t T = static_cast<int64_t>(ids_.size());
  const RunOutput a = run(config("h2o", T, PositionMode::Original, false));
  const RunOutput b = run(config("h2o", T, PositionMode::InCache, false));
  for (size_t i = 0; i < a.nll.size(); ++i) EXPECT_NEAR(a.nll[i], b.nll[i], 1e-5);
  // ...and differ once tokens are evicted (the positions really change).
  const RunOutput c = run(config("h2o", 12, PositionMode::Original, false));
  const RunOutput d = run(config("h2o", 12, PositionMode::InCache, false));
  double diff = 0;
  for (size_t i = 0; i < c.nll.size(); ++i) diff = std::max(diff, std::abs(c.nll[i] - d.nll[i]));
  EXPECT_GT(diff, 1e-4);
}

TEST(SlidingWindows, FollowTheFixedLengthRecipe) {
  const auto w = make_windows(Protocol::Sliding, 100, 40, 20);
  ASSERT_EQ(w.size(), 4u);
  EXPECT_EQ(w[0].begin, 0);
  EXPECT_EQ(w[0].score_from, 1);
  EXPECT_EQ(w[1].begin, 20);
  EXPECT_EQ(w[1].score_from, 40);
  EXPECT_EQ(w[3].end, 100);
  EXPECT_EQ(w[3].score_from, 80);
  EXPECT_THROW(make_windows(Protocol::Sliding, 30, 40, 20), Error);
}

// ---------------------------------------------------------------------------------------
class PplCli : public ::testing::Test {
 protected:
  void SetUp() override {
    write_random_model((dir_ / "m").string(), testing::cli_model_spec());
    std::ofstream f(dir_ / "ids.txt");
    for (int i = 0; i < 100; ++i) f << (i * 7 % 64) << ' ';
  }
  void expect_error(std::vector<std::string> extra, const std::string& expect) {
    std::vector<std::string> args{"ppl", (dir_ / "m").string(), "--ids", (dir_ / "ids.txt").string(), "-o", (dir_ / "r.h5").string()};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto r = testing::run_kvscope(args);
    EXPECT_TRUE(r.exited) << r.err;
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_NE(r.err.find(expect), std::string::npos) << "expected '" << expect << "' in: " << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir_ / "r.h5"));
  }
  TempDir dir_{"pplcli"};
};

TEST_F(PplCli, RefusesBadConfigurations) {
  expect_error({"--policy", "h2o", "--budget", "8", "--sinks", "4", "--recent", "6"}, "exceed the budget");
  expect_error({"--budget", "0"}, "must be positive");
  expect_error({"--budget", "-5"}, "must be positive");
  expect_error({"--budget", "1.5"}, "ratio must be in (0, 1]");
  expect_error({"--policy", "lru"}, "unknown policy 'lru' (known: full, streaming");
  expect_error({"--policy", "weightedkv", "--weighting", "magic"}, "unknown merge weighting 'magic' (known: acc-attention, avg-attention");
  expect_error({"--protocol", "sliding", "--window", "32", "--budget", "64"}, "larger than --window");
  expect_error({"--protocol", "chunks", "--window", "500"}, "shorter than one window");
}

TEST_F(PplCli, WritesReadableResults) {
  const auto r = testing::run_kvscope({"ppl", (dir_ / "m").string(), "--ids", (dir_ / "ids.txt").string(), "-o",
                                       (dir_ / "r.h5").string(), "--budget", "16,0.5", "--policy", "full,h2o,weightedkv",
                                       "--weighting", "avg-attention,uniform"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("| weightedkv | 0.5 | uniform |"), std::string::npos) << r.out;
  const auto runs = read_ppl_results((dir_ / "r.h5").string());
  ASSERT_EQ(runs.size(), 1u + 2u + 4u);
  EXPECT_EQ(runs[0].nll.size(), 99u);
  EXPECT_TRUE(std::filesystem::exists(dir_ / "r.csv"));
  EXPECT_TRUE(std::filesystem::exists(dir_ / "r.md"));
}

TEST(PplStories, EveryPolicyFiniteOnABook) {
  KVSCOPE_REQUIRE_SHARED();
  TempDir dir("pplstories");
  const auto out = dir / "r.h5";
  const auto r = testing::run_kvscope({"ppl", testing::stories_dir().string(), "--text",
                                       (testing::shared_dir() / "text/austen/persuasion.txt").string(), "--max-tokens", "300",
                                       "--budget", "64", "-o", out.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto runs = read_ppl_results(out.string());
  ASSERT_EQ(runs.size(), 9u);
  for (const auto& run : runs) {
    ASSERT_EQ(run.nll.size(), 299u) << run.policy;
    for (double x : run.nll) ASSERT_TRUE(std::isfinite(x)) << run.policy;
  }
  const std::string py = "/usr/bin/python3 -c \"import h5py,sys; f=h5py.File(sys.argv[1]); "
                         "assert f.attrs['schema']==b'kvscope.ppl' and f.attrs['complete']==1; "
                         "assert f['runs/0/nll'].shape==(299,) and f['runs/8'].attrs['policy']==b'weightedkv-evict'\" " + out.string();
  EXPECT_EQ(std::system(py.c_str()), 0);
}


// A sweep interrupted after some runs finished, rerun with --resume, skips those runs and
// ends with the same results as an uninterrupted sweep.
TEST(PplResume, ContinuesFromFinishedRuns) {
  testing::TempDir dir("resume");
  RandomModelSpec spec;
  write_random_model((dir / "m").string(), spec);
  {
    std::ofstream f(dir / "ids.txt");
    for (int i = 0; i < 400; ++i) f << (i * 13 % 256) << ' ';
  }
  const std::vector<std::string> base{"ppl", (dir / "m").string(), "--ids", (dir / "ids.txt").string(), "--policy",
                                      "full,streaming,h2o,tova,weightedkv,weightedkv-evict", "--budget", "32,64"};
  auto with_out = [&](const std::string& out, std::vector<std::string> extra = {}) {
    auto a = base;
    a.push_back("-o");
    a.push_back(out);
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  auto reference = testing::run_kvscope(with_out((dir / "ref.h5").string()));
  ASSERT_EQ(reference.code, 0) << reference.err;

  const std::string out = (dir / "r.h5").string();
  const pid_t pid = testing::spawn_kvscope(with_out(out));
  const ResumeJournal journal(out);
  ASSERT_TRUE(testing::wait_until([&] { return journal.has_runs(); }));
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 128 + SIGINT) << "the sweep finished before it could be interrupted";
  EXPECT_FALSE(std::filesystem::exists(out));

  auto again = testing::run_kvscope(with_out(out));
  EXPECT_EQ(again.code, 1);
  EXPECT_NE(again.err.find("--resume"), std::string::npos) << again.err;

  auto resumed = testing::run_kvscope(with_out(out, {"--resume"}));
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resuming: "), std::string::npos) << resumed.err;
  EXPECT_EQ(resumed.err.find("resuming: 0 of"), std::string::npos) << resumed.err;
  EXPECT_FALSE(std::filesystem::exists(journal.directory()));
  const auto a = read_ppl_results((dir / "ref.h5").string()), b = read_ppl_results(out);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].policy, b[i].policy);
    EXPECT_EQ(a[i].budget_label, b[i].budget_label);
    EXPECT_EQ(a[i].nll, b[i].nll) << a[i].policy;
  }
  // Resuming with other settings is refused, naming the difference (here from the single
  // resume file earlier versions kept, which is still read).
  std::filesystem::copy_file(out, ResumeJournal((dir / "x.h5").string()).single_file());
  auto mismatch = testing::run_kvscope(with_out((dir / "x.h5").string(), {"--resume", "--sinks", "2"}));
  EXPECT_EQ(mismatch.code, 1);
  EXPECT_NE(mismatch.err.find("sinks 4, this sweep has 2"), std::string::npos) << mismatch.err;
}


// A decode step's attention bookkeeping on the host (a loop over float probabilities) equals
// the tensor path (taken for float64 probabilities) exactly, for every aggregation, through
// evictions; so decisions never depend on which path ran.
TEST(PolicyCacheObserve, DecodeLoopEqualsTensorPath) {
  ModelConfig mc;
  mc.head_dim = 8;
  mc.max_position_embeddings = 512;
  const Rope rope(mc, at::kCPU);
  at::manual_seed(11);
  for (const auto aggregation : {AttentionAggregation::Mean, AttentionAggregation::Sum, AttentionAggregation::Max}) {
    const PolicyCacheConfig cfg{2, 6, 2, 8, at::kFloat, at::kCPU, PositionMode::Original, aggregation};
    PolicyOptions po;
    po.budget = 10;
    po.sinks = 2;
    PolicyCache loop(cfg, std::shared_ptr<CachePolicy>(make_policy("h2o", po)), rope, 10);
    PolicyCache tensors(cfg, std::shared_ptr<CachePolicy>(make_policy("h2o", po)), rope, 10);
    for (int64_t step = 0; step < 40; ++step) {
      const at::Tensor k = at::randn({2, 1, 8}), v = at::randn({2, 1, 8}), pos = at::full({1}, step, at::kLong);
      for (int layer = 0; layer < 2; ++layer) {
        const AttentionInputs a = loop.append(layer, NewEntries{k, k, v, pos});
        tensors.append(layer, NewEntries{k, k, v, pos});
        const at::Tensor probs = at::softmax(at::randn({6, 1, a.keys.size(1)}), -1);
        loop.observe_attention(layer, probs);
        tensors.observe_attention(layer, probs.to(at::kDouble));
        for (int h = 0; h < 2; ++h) {
          const HeadCells &x = loop.cells(layer, h), &y = tensors.cells(layer, h);
          ASSERT_EQ(x.order(), y.order()) << "step " << step;
          for (const SlotId slot : x.order()) {
            ASSERT_EQ(x.attention_sum(slot), y.attention_sum(slot)) << "step " << step;
            ASSERT_EQ(x.last_attention(slot), y.last_attention(slot));
            ASSERT_EQ(x.steps(slot), y.steps(slot));
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace kvscope
