// kvscope ppl --batch: a sweep stepped in lockstep gives every run exactly the per-token
// NLL it gets alone, for every policy, both position modes and every protocol, with runs of
// different budgets, weightings and document lengths sharing a batch.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "eval/ppl_results.h"
#include "eval/sweep.h"
#include "model/llama.h"
#include "model/random_model.h"
#include "support/cli.h"
#include "support/test_paths.h"

namespace kvscope {
namespace {

using testing::TempDir;

class BatchedSweep : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("sweep");
    RandomModelSpec spec;
    spec.num_kv_heads = 2;
    spec.attention_bias = true;  // the bias path of the row kernel too
    write_random_model((*dir_ / "m").string(), spec);
    // Two documents of different lengths: their runs end at different steps of one batch.
    write_ids("long.txt", 170, 3);
    write_ids("short.txt", 97, 11);
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::vector<int64_t> write_ids(const std::string& name, int n, int salt) {
    std::vector<int64_t> ids;
    for (int i = 0; i < n; ++i) ids.push_back((i * 37 + salt * i * i + salt) % 256);
    std::ofstream f(*dir_ / name);
    for (int64_t id : ids) f << id << ' ';
    return ids;
  }
  static std::vector<PplRun> sweep(const std::string& name, const std::vector<std::string>& extra) {
    std::vector<std::string> args{"ppl", (*dir_ / "m").string(), "--ids", (*dir_ / "long.txt").string(), "--ids",
                                  (*dir_ / "short.txt").string(), "-o", (*dir_ / name).string(), "--force", "--sinks", "2"};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto r = testing::run_kvscope(args);
    EXPECT_EQ(r.code, 0) << r.err;
    return read_ppl_results((*dir_ / name).string());
  }
  static void expect_identical(const std::vector<PplRun>& alone, const std::vector<PplRun>& together) {
    ASSERT_EQ(alone.size(), together.size());
    for (size_t i = 0; i < alone.size(); ++i) {
      const PplRun &a = alone[i], &b = together[i];
      ASSERT_EQ(a.policy, b.policy);
      ASSERT_EQ(a.budget_label, b.budget_label);
      ASSERT_EQ(a.weighting, b.weighting);
      ASSERT_EQ(a.document, b.document);
      EXPECT_EQ(a.token_index, b.token_index) << a.policy << " @" << a.budget_label;
      ASSERT_EQ(a.nll.size(), b.nll.size()) << a.policy << " @" << a.budget_label;
      for (size_t t = 0; t < a.nll.size(); ++t)
        ASSERT_EQ(a.nll[t], b.nll[t]) << a.policy << " @" << a.budget_label << " " << a.weighting << " doc " << a.document << " token " << t;
      EXPECT_EQ(a.max_cache, b.max_cache);
    }
  }
  static inline TempDir* dir_ = nullptr;
};

const std::vector<std::string> kEveryPolicy{"--policy", "full,streaming,h2o,tova,knorm,random,cam,weightedkv,weightedkv-evict",
                                            "--budget", "12,40", "--weighting", "avg-attention,uniform,key-norm", "--seed", "9"};

TEST_F(BatchedSweep, EveryPolicyBothPositionModesIdenticalToOneAtATime) {
  for (const std::string positions : {"original", "in-cache"}) {
    auto args = kEveryPolicy;
    args.insert(args.end(), {"--positions", positions});
    auto with_batch = [&](const std::string& b) {
      auto a = args;
      a.insert(a.end(), {"--batch", b});
      return a;
    };
    const auto alone = sweep("alone.h5", with_batch("1"));
    // 1 full + 7 policies x 2 budgets + weightedkv x 2 budgets x 3 weightings, x 2 documents.
    ASSERT_EQ(alone.size(), 2u * (1 + 7 * 2 + 2 * 3));
    for (const PplRun& r : alone) EXPECT_EQ(r.nll.size(), r.document == 0 ? 169u : 96u) << r.policy;
    expect_identical(alone, sweep("all.h5", with_batch("64")));
    expect_identical(alone, sweep("some.h5", with_batch("5")));
  }
}

// Windows: each run opens, prefills and closes several caches while others keep decoding.
TEST_F(BatchedSweep, SlidingAndChunkWindowsIdenticalToOneAtATime) {
  for (const std::string protocol : {"sliding", "chunks"}) {
    std::vector<std::string> base{"--policy", "full,h2o,weightedkv", "--budget", "10,0.5", "--protocol", protocol,
                                  "--window", "48", "--positions", "original"};
    if (protocol == "sliding") base.insert(base.end(), {"--stride", "20"});  // chunks refuse a stride: they do not overlap
    auto a = base, b = base;
    a.insert(a.end(), {"--batch", "1"});
    b.insert(b.end(), {"--batch", "4"});
    expect_identical(sweep("w1.h5", a), sweep("w4.h5", b));
  }
}

TEST_F(BatchedSweep, PerturbationLogIdenticalToOneAtATime) {
  const std::vector<std::string> base{"--policy", "weightedkv,h2o", "--budget", "16", "--log-perturbation"};
  auto a = base, b = base;
  a.insert(a.end(), {"--batch", "1"});
  b.insert(b.end(), {"--batch", "3"});
  const auto alone = sweep("p1.h5", a), together = sweep("p3.h5", b);
  ASSERT_EQ(alone.size(), together.size());
  for (size_t i = 0; i < alone.size(); ++i) {
    EXPECT_FALSE(alone[i].perturbation_step.empty());
    EXPECT_EQ(alone[i].perturbation_step, together[i].perturbation_step);
    EXPECT_EQ(alone[i].perturbation_cosine, together[i].perturbation_cosine);
    EXPECT_EQ(alone[i].perturbation_relative_change, together[i].perturbation_relative_change);
  }
}

// A batch larger than the memory allowed is refused before any work, naming a size that
// fits; that size then runs.
TEST_F(BatchedSweep, RefusesABatchThatDoesNotFitAndNamesOneThatDoes) {
  const LlamaModel model = LlamaModel::load(*dir_ / "m");
  const std::vector<int64_t> ids = write_ids("long.txt", 170, 3);
  const std::vector<Window> windows = make_windows(Protocol::Stream, 170, 0, 0);
  RunConfig full;
  full.policy = "full";  // the largest run of the sweep below: its cache holds the whole document
  const SweepMemory m = estimate_sweep_memory(model, {SweepRun{&ids, &windows, full}});
  const int64_t limit = m.total(2) + m.per_run_bytes / 2;
  auto run = [&](const std::string& batch) {
    return testing::run_kvscope({"ppl", (*dir_ / "m").string(), "--ids", (*dir_ / "long.txt").string(), "-o",
                                 (*dir_ / "fit.h5").string(), "--force", "--policy", "full,h2o,tova", "--budget", "32",
                                 "--batch", batch, "--max-memory", std::to_string(limit)});
  };
  const auto refused = run("3");
  EXPECT_EQ(refused.code, 1);
  EXPECT_NE(refused.err.find("--batch 3 needs about"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("--batch 2 fits"), std::string::npos) << refused.err;
  EXPECT_FALSE(std::filesystem::exists(*dir_ / "fit.h5"));
  const auto accepted = run("2");
  EXPECT_EQ(accepted.code, 0) << accepted.err;
  const auto tiny = testing::run_kvscope({"ppl", (*dir_ / "m").string(), "--ids", (*dir_ / "long.txt").string(), "-o",
                                          (*dir_ / "fit.h5").string(), "--force", "--max-memory", "1K"});
  EXPECT_EQ(tiny.code, 1);
  EXPECT_NE(tiny.err.find("even one run needs about"), std::string::npos) << tiny.err;
}

// --max-memory's units: a size just above what one run needs, written in each unit, runs; just
// below, it is refused for memory (so it was parsed, and scaled by 1024s); malformed sizes are
// refused by name before any work.
TEST(ByteSizes, ParsedOrRefusedThroughTheCli) {
  TempDir dir("sizes");
  RandomModelSpec spec;
  write_random_model((dir / "m").string(), spec);
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < 40; ++i) ids.push_back((i * 7 + 3) % spec.vocab_size);
  {
    std::ofstream f(dir / "ids.txt");
    for (int64_t id : ids) f << id << ' ';
  }
  const LlamaModel model = LlamaModel::load(dir / "m");
  const std::vector<Window> windows = make_windows(Protocol::Stream, static_cast<int64_t>(ids.size()), 0, 0);
  RunConfig full;
  full.policy = "full";
  const int64_t need = estimate_sweep_memory(model, {SweepRun{&ids, &windows, full}}).total(1);
  ASSERT_GT(need, 4 * 1024);
  auto run = [&](const std::string& size) {
    return testing::run_kvscope({"ppl", (dir / "m").string(), "--ids", (dir / "ids.txt").string(), "-o", (dir / "o.h5").string(),
                                 "--force", "--policy", "full", "--max-memory", size});
  };
  auto mib = [](double bytes) {
    std::ostringstream s;
    s.precision(9);
    s << bytes / (1024.0 * 1024.0);
    return s.str();
  };
  const std::vector<std::pair<std::string, std::string>> above_below{
      {std::to_string(need + 1), std::to_string(need - 1)},
      {std::to_string(need / 1024 + 1) + "KiB", std::to_string(need / 1024 - 1) + "kb"},
      {mib(static_cast<double>(need + 2048)) + "M", mib(static_cast<double>(need - 2048)) + "MiB"},
      {"1.5GiB", "0.000000001T"},
  };
  for (const auto& [above, below] : above_below) {
    const auto ok = run(above);
    EXPECT_EQ(ok.code, 0) << above << ": " << ok.err;
    const auto short_of = run(below);
    EXPECT_EQ(short_of.code, 1) << below;
    EXPECT_NE(short_of.err.find("even one run needs about"), std::string::npos) << below << ": " << short_of.err;
  }
  std::filesystem::remove(dir / "o.h5");
  for (const std::string bad : {"-5G", "abc", "12X", "0", "nan", "1e30T", "5GG"}) {
    const auto r = run(bad);
    EXPECT_EQ(r.code, 1) << bad;
    EXPECT_NE(r.err.find("kvscope: error: --max-memory '" + bad + "': expected a positive size"), std::string::npos) << bad << ": " << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir / "o.h5")) << bad;
  }
}

}  // namespace
}  // namespace kvscope
