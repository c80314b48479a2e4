// The paired bootstrap of perplexity differences (methods §5.1): it covers the true
// difference at about its nominal rate on synthetic runs with known per-token differences,
// is narrower than the unpaired interval when the runs are positively correlated, and
// degenerates where it must (identical runs; one block spanning the whole document).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "eval/paired_bootstrap.h"

namespace kvscope {
namespace {

// Hard tokens are hard for both runs: b_t ~ 3 Exp(1), a_t = b_t + d_t, d_t ~ N(mu, 0.3).
void synthetic(std::mt19937_64& rng, size_t n, double mu, std::vector<double>& a, std::vector<double>& b) {
  std::exponential_distribution<double> hard(1.0 / 3.0);
  std::normal_distribution<double> diff(mu, 0.3);
  a.resize(n);
  b.resize(n);
  for (size_t t = 0; t < n; ++t) {
    b[t] = hard(rng);
    a[t] = b[t] + diff(rng);
  }
}

TEST(PairedBootstrap, CoversTheTrueDifferenceAtAboutItsNominalRate) {
  // Population means 3.05 and 3.00: the true PPL difference is e^3.05 - e^3.
  const double truth = std::exp(3.05) - std::exp(3.0);
  std::mt19937_64 rng(1);
  int covered = 0;
  const int trials = 200;
  for (int k = 0; k < trials; ++k) {
    std::vector<double> a, b;
    synthetic(rng, 2000, 0.05, a, b);
    const PplDifference d = paired_ppl_difference({a}, {b}, BootstrapOptions{1000, static_cast<uint64_t>(k), 1});
    EXPECT_LE(d.low, d.delta_ppl);
    EXPECT_GE(d.high, d.delta_ppl);
    covered += d.low <= truth && truth <= d.high;
  }
  // 95% nominal; the percentile bootstrap of a ratio-like statistic runs a little below it.
  EXPECT_GE(covered, 180) << covered << " of " << trials;
  EXPECT_LE(covered, 198) << covered << " of " << trials;
}

TEST(PairedBootstrap, NarrowerThanUnpairedForPositivelyCorrelatedRuns) {
  std::mt19937_64 rng(2);
  for (int k = 0; k < 20; ++k) {
    std::vector<double> a, b;
    synthetic(rng, 1500, 0.04, a, b);
    const BootstrapOptions o{500, static_cast<uint64_t>(k), 1};
    const PplDifference paired = paired_ppl_difference({a}, {b}, o), unpaired = unpaired_ppl_difference({a}, {b}, o);
    EXPECT_DOUBLE_EQ(paired.delta_ppl, unpaired.delta_ppl);
    EXPECT_LT(paired.high - paired.low, unpaired.high - unpaired.low) << "trial " << k;
    // Here the runs differ by 0.04 nats a token on average: pairing sees it, the unpaired interval does not.
    EXPECT_GT(paired.low, 0.0) << "trial " << k;
    EXPECT_LT(unpaired.low, 0.0) << "trial " << k;
  }
}

TEST(PairedBootstrap, DegeneratesWhereItMust) {
  std::mt19937_64 rng(3);
  std::vector<double> a, b;
  synthetic(rng, 300, 0.1, a, b);
  const PplDifference same = paired_ppl_difference({b}, {b}, BootstrapOptions{200, 1, 1});
  EXPECT_EQ(same.delta_ppl, 0.0);
  EXPECT_EQ(same.low, 0.0);
  EXPECT_EQ(same.high, 0.0);
  // One block the length of the document: every resample is the document itself.
  const PplDifference whole = paired_ppl_difference({a}, {b}, BootstrapOptions{200, 1, 300});
  EXPECT_NEAR(whole.low, whole.delta_ppl, 1e-9 * std::abs(whole.delta_ppl));
  EXPECT_NEAR(whole.high, whole.delta_ppl, 1e-9 * std::abs(whole.delta_ppl));
  // No resamples: the point estimate alone.
  const PplDifference none = paired_ppl_difference({a}, {b}, BootstrapOptions{0, 1, 1});
  EXPECT_EQ(none.low, none.delta_ppl);
}

TEST(PairedBootstrap, PoolsDocumentsAndIsDeterministicPerSeed) {
  std::mt19937_64 rng(4);
  std::vector<double> a1, b1, a2, b2;
  synthetic(rng, 100, 0.1, a1, b1);
  synthetic(rng, 400, 0.1, a2, b2);
  const BootstrapOptions o{300, 9, 4};
  const PplDifference d = paired_ppl_difference({a1, a2}, {b1, b2}, o);
  double sa = 0, sb = 0;
  for (double x : a1) sa += x;
  for (double x : a2) sa += x;
  for (double x : b1) sb += x;
  for (double x : b2) sb += x;
  EXPECT_EQ(d.tokens, 500);
  EXPECT_NEAR(d.delta_nll, (sa - sb) / 500.0, 1e-12);
  EXPECT_NEAR(d.delta_ppl, std::exp(sa / 500.0) - std::exp(sb / 500.0), 1e-9);
  const PplDifference again = paired_ppl_difference({a1, a2}, {b1, b2}, o);
  EXPECT_EQ(again.low, d.low);
  EXPECT_EQ(again.high, d.high);
  const PplDifference other = paired_ppl_difference({a1, a2}, {b1, b2}, BootstrapOptions{300, 10, 4});
  EXPECT_NE(other.low, d.low);
}

}  // namespace
}  // namespace kvscope
