// Sweep planning: every option honoured or refused by name, run keys that change exactly
// when a run's numbers can, and --resume that reuses only runs with the same key.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "eval/ppl_results.h"
#include "eval/sweep_plan.h"
#include "model/random_model.h"
#include "support/cli.h"
#include "support/test_paths.h"
#include "support/tiny_models.h"

namespace kvscope {
namespace {

std::vector<SweepDocument> one_document(int n = 64) {
  std::vector<SweepDocument> d{{{}, "a.txt"}};
  for (int i = 0; i < n; ++i) d[0].ids.push_back((i * 7 + 1) % 50);
  return d;
}

void expect_refused(const SweepSettings& s, const std::vector<std::string>& given, const std::string& message,
                    const std::vector<SweepDocument>& docs = one_document()) {
  try {
    plan_sweep(s, docs, 2, 512, given);
    ADD_FAILURE() << "accepted; expected: " << message;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << "expected '" << message << "' in: " << e.what();
  }
}

TEST(SweepPlan, RefusesEmptyAndDuplicateItems) {
  SweepSettings s;
  s.budget = "64,64";
  expect_refused(s, {}, "'64' is given twice");
  s.budget = "64,,32";
  expect_refused(s, {}, "an empty item");
  s.budget = "32,";
  expect_refused(s, {}, "an empty item");
  s.budget = "0.5,0.50";
  expect_refused(s, {}, "are the same budget");
  s = SweepSettings{};
  s.policy = "streaming,streaming";
  expect_refused(s, {}, "'streaming' is given twice");
  s.policy = "h2o,weightedkv";
  s.weighting = "uniform,uniform";
  expect_refused(s, {}, "'uniform' is given twice");
  auto docs = one_document();
  docs.push_back(docs[0]);
  docs[1].source = "b.txt";
  expect_refused(SweepSettings{}, {}, "the same tokens as an earlier document", docs);
}

TEST(SweepPlan, RefusesAnOptionNoRunReads) {
  SweepSettings s;
  s.policy = "full,h2o";
  expect_refused(s, {"weighting"}, "--weighting is read by none of the policies");
  expect_refused(s, {"cam-merge"}, "--cam-merge is read by none");
  expect_refused(s, {"skip-layers"}, "--skip-layers is read by none");
  expect_refused(s, {"receiver"}, "--receiver is read by none");
  s.policy = "streaming,cam";
  expect_refused(s, {"recent"}, "--recent is read by none");
  s = SweepSettings{};
  expect_refused(s, {"window"}, "--window applies only to --protocol sliding or chunks");
  s.protocol = "chunks";
  s.window = 32;
  expect_refused(s, {"window", "stride"}, "--stride applies only to --protocol sliding");
  // Read by at least one run: accepted.
  s = SweepSettings{};
  s.policy = "h2o,weightedkv";
  s.weighting = "uniform";
  EXPECT_NO_THROW(plan_sweep(s, one_document(), 2, 512, {"weighting", "receiver", "recent"}));
}

TEST(SweepPlan, KeysChangeExactlyWhenARunsNumbersCan) {
  SweepSettings base;
  base.policy = "full,h2o,random";
  base.budget = "16";
  const auto docs = one_document();
  const SweepPlan a = plan_sweep(base, docs, 2, 512);
  ASSERT_EQ(a.runs.size(), 3u);
  EXPECT_EQ(plan_sweep(base, docs, 2, 512).runs[1].key, a.runs[1].key);  // deterministic
  auto keys_with = [&](auto change, std::vector<SweepDocument> d) {
    SweepSettings s = base;
    change(s);
    std::vector<std::string> k;
    for (const auto& r : plan_sweep(s, d, 2, 512).runs) k.push_back(r.key);
    return k;
  };
  auto same = [](SweepSettings&) {};
  std::vector<SweepDocument> edited = docs;
  edited[0].ids[10] += 1;
  for (size_t i = 0; i < 3; ++i) EXPECT_NE(keys_with(same, edited)[i], a.runs[i].key) << "one token changed";
  std::vector<SweepDocument> shorter = docs;
  shorter[0].ids.pop_back();
  for (size_t i = 0; i < 3; ++i) EXPECT_NE(keys_with(same, shorter)[i], a.runs[i].key) << "--max-tokens changed";
  const auto seeded = keys_with([](SweepSettings& s) { s.seed = 7; }, docs);
  EXPECT_NE(seeded[2], a.runs[2].key) << "random reads the seed";
  for (auto change : {+[](SweepSettings& s) { s.sinks = 2; }, +[](SweepSettings& s) { s.positions = "original"; },
                      +[](SweepSettings& s) { s.prefill_chunk = 7; }, +[](SweepSettings& s) { s.aggregation = "max"; }}) {
    EXPECT_NE(keys_with(change, docs)[1], a.runs[1].key);
  }
}

TEST(SweepPlan, RatioBudgetsKeepTheirDecimalPoint) {
  EXPECT_EQ(parse_budget("1.0").label(), "1.0");
  EXPECT_EQ(parse_budget("0.25").label(), "0.25");
  EXPECT_EQ(parse_budget("1").label(), "1");
  SweepSettings s;
  s.policy = "h2o";
  s.sinks = 0;
  s.budget = "1,1.0";  // one token and the whole window: two runs
  EXPECT_EQ(plan_sweep(s, one_document(), 2, 512).runs.size(), 2u);
}

// The reproducer of the integrity issue: a resume after the input changed must not reuse the
// runs of the old input.
TEST(SweepResume, ReusesOnlyRunsWithTheSameKey) {
  testing::TempDir dir("resume-key");
  write_random_model((dir / "m").string(), testing::cli_model_spec());
  auto write_ids = [&](const std::string& name, int mult) {
    std::ofstream f(dir / name);
    for (int i = 0; i < 60; ++i) f << (i * mult % 64) << ' ';
  };
  write_ids("ids.txt", 7);
  auto ppl = [&](const std::string& out, std::vector<std::string> extra) {
    std::vector<std::string> args{"ppl", (dir / "m").string(), "--ids", (dir / "ids.txt").string(), "--policy", "full,h2o",
                                  "--budget", "16", "-o", (dir / out).string()};
    args.insert(args.end(), extra.begin(), extra.end());
    return testing::run_kvscope(args);
  };
  ASSERT_EQ(ppl("old.h5", {}).code, 0);
  // What an interrupted sweep leaves: finished runs of the old text beside the output.
  std::filesystem::create_directory(dir / "new.h5.resume");
  std::filesystem::copy_file(dir / "old.h5", dir / "new.h5.resume" / "run-0123456789abcdef.h5");
  write_ids("ids.txt", 5);
  const auto resumed = ppl("new.h5", {"--resume"});
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("0 of 2 runs already done (2 finished runs of other inputs or settings ignored)"), std::string::npos)
      << resumed.err;
  ASSERT_EQ(ppl("fresh.h5", {}).code, 0);
  const auto a = read_ppl_results((dir / "new.h5").string()), b = read_ppl_results((dir / "fresh.h5").string());
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].nll, b[i].nll);
  // The same input again: every run is reused.
  std::filesystem::copy_file(dir / "fresh.h5", dir / "again.h5.resume.h5");
  const auto again = ppl("again.h5", {"--resume"});
  EXPECT_NE(again.err.find("2 of 2 runs already done"), std::string::npos) << again.err;
  // --max-tokens changes the tokens, so the keys.
  std::filesystem::copy_file(dir / "fresh.h5", dir / "short.h5.resume.h5");
  const auto shorter = ppl("short.h5", {"--resume", "--max-tokens", "40"});
  EXPECT_NE(shorter.err.find("0 of 2 runs already done"), std::string::npos) << shorter.err;
}

}  // namespace
}  // namespace kvscope

namespace kvscope {
namespace {

PplRun synthetic_run(const std::string& policy, const std::string& budget, int64_t document, std::vector<double> nll) {
  PplRun r;
  r.policy = policy;
  r.budget_label = budget;
  r.document = document;
  r.nll = std::move(nll);
  for (size_t i = 0; i < r.nll.size(); ++i) r.token_index.push_back(static_cast<int64_t>(i) + 1);
  return r;
}

// Each row is paired with the full-cache runs of its documents (pooled), the full row with
// nothing, and a row with a document the sweep has no full run for is left unpaired.
TEST(PplResults, RowsArePairedWithTheFullCacheOfTheirDocuments) {
  const std::vector<double> f0{3.0, 1.0, 4.0, 1.5}, f1{2.0, 6.0, 2.5}, s0{3.5, 1.1, 4.2, 1.4}, s1{2.2, 6.5, 2.5};
  std::vector<PplRun> runs{synthetic_run("full", "full", 0, f0), synthetic_run("full", "full", 1, f1),
                           synthetic_run("streaming", "64", 0, s0), synthetic_run("streaming", "64", 1, s1),
                           synthetic_run("h2o", "64", 2, s0)};
  const BootstrapOptions o{400, 7, 1};
  const auto rows = summarise(runs, o);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_FALSE(rows[0].paired);
  ASSERT_TRUE(rows[1].paired);
  const PplDifference expected = paired_ppl_difference({s0, s1}, {f0, f1}, o);
  EXPECT_EQ(rows[1].paired->delta_ppl, expected.delta_ppl);
  EXPECT_EQ(rows[1].paired->low, expected.low);
  EXPECT_EQ(rows[1].paired->high, expected.high);
  EXPECT_FALSE(rows[2].paired) << "document 2 has no full-cache run";
  const auto per_run = paired_per_run(runs, o);
  EXPECT_FALSE(per_run[0]);
  ASSERT_TRUE(per_run[3]);
  EXPECT_EQ(per_run[3]->delta_ppl, paired_ppl_difference({s1}, {f1}, o).delta_ppl);
  EXPECT_FALSE(per_run[4]);
  // The table shows the difference; a run scored on other tokens cannot be paired.
  EXPECT_NE(markdown_table(rows, "").find("| streaming | 64 | - |"), std::string::npos);
  runs[2].token_index[0] = 99;
  EXPECT_THROW(summarise(runs, o), Error);
}

}  // namespace
}  // namespace kvscope
