// Analyses against independent references: Eigen's JacobiSVD, closed-form ranks, hand-computed
// correlations and a brute-force ALR over all subsets. No LibTorch.
#include <gtest/gtest.h>

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "analysis/correlation.h"
#include "analysis/perturbation.h"
#include "analysis/spectrum_metrics.h"
#include "analysis/svd.h"
#include "core/error.h"

namespace kvscope {
namespace {

std::vector<double> random_matrix(int64_t rows, int64_t cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> n(0, 1);
  std::vector<double> m(rows * cols);
  for (double& x : m) x = n(rng);
  return m;
}

// Orthonormal factors from a QR decomposition, so the spectrum is known exactly.
std::vector<double> matrix_with_spectrum(int64_t rows, int64_t cols, const std::vector<double>& sigma, uint64_t seed) {
  const auto a = random_matrix(rows, rows, seed), b = random_matrix(cols, cols, seed + 1);
  const Eigen::MatrixXd U = Eigen::HouseholderQR<Eigen::MatrixXd>(Eigen::Map<const Eigen::MatrixXd>(a.data(), rows, rows)).householderQ();
  const Eigen::MatrixXd V = Eigen::HouseholderQR<Eigen::MatrixXd>(Eigen::Map<const Eigen::MatrixXd>(b.data(), cols, cols)).householderQ();
  Eigen::MatrixXd S = Eigen::MatrixXd::Zero(rows, cols);
  for (size_t i = 0; i < sigma.size(); ++i) S(i, i) = sigma[i];
  const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> M = U * S * V.transpose();
  return std::vector<double>(M.data(), M.data() + M.size());
}

TEST(Svd, MatchesEigenJacobiInDoublePrecision) {
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{64, 8}, {300, 32}, {16, 40}, {128, 128}}) {
    std::vector<double> m = random_matrix(rows, cols, static_cast<uint64_t>(rows * 131 + cols));
    const Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> e(m.data(), rows, cols);
    const Eigen::VectorXd want = Eigen::JacobiSVD<Eigen::MatrixXd>(e).singularValues();
    std::vector<double> copy = m;
    const std::vector<double> got = singular_values(copy, rows, cols);
    ASSERT_EQ(static_cast<int64_t>(got.size()), std::min(rows, cols));
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-8 * want[0]) << rows << "x" << cols << " sigma " << i;
  }
}

// The QR-first route, the direct route (shapes under 2:1) and both layouts give Jacobi's values.
TEST(Svd, EveryRouteAndLayoutMatchesEigenJacobi) {
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{512, 16}, {16, 512}, {40, 30}, {30, 40}, {257, 128}, {1, 5}, {5, 1}}) {
    const std::vector<double> m = random_matrix(rows, cols, static_cast<uint64_t>(rows * 7 + cols));
    const Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> e(m.data(), rows, cols);
    const Eigen::VectorXd want = Eigen::JacobiSVD<Eigen::MatrixXd>(e).singularValues();
    std::vector<double> row_major = m;
    std::vector<double> column_major(m.size());
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) column_major[j * rows + i] = m[i * cols + j];
    std::vector<float> column_major_float(column_major.begin(), column_major.end());
    const auto by_rows = singular_values(row_major, rows, cols, MatrixLayout::RowMajor);
    const auto by_columns = singular_values(column_major, rows, cols, MatrixLayout::ColumnMajor);
    const auto by_columns_float = singular_values(column_major_float, rows, cols, MatrixLayout::ColumnMajor);
    ASSERT_EQ(static_cast<int64_t>(by_rows.size()), std::min(rows, cols));
    ASSERT_EQ(by_columns.size(), by_rows.size());
    for (size_t i = 0; i < by_rows.size(); ++i) {
      EXPECT_NEAR(by_rows[i], want[i], 1e-10 * want[0]) << rows << "x" << cols << " sigma " << i;
      EXPECT_NEAR(by_columns[i], want[i], 1e-10 * want[0]) << rows << "x" << cols << " sigma " << i;
      EXPECT_NEAR(by_columns_float[i], want[i], 1e-5 * want[0]) << rows << "x" << cols << " sigma " << i;
    }
  }
}

TEST(Svd, NonFiniteEntriesAreReportedNotReturned) {
  // Tall (QR first), nearly square and wide (straight to ?gesdd), in both precisions; the bad
  // entry inside, in the last row's last column and in its first column.
  for (const double bad : {std::nan(""), HUGE_VAL, -HUGE_VAL}) {
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{300, 8}, {40, 30}, {8, 300}}) {
      for (const int64_t at : {int64_t{77}, rows * cols - 1, (rows - 1) * cols}) {
        std::vector<double> m = random_matrix(rows, cols, 5);
        m[static_cast<size_t>(at)] = bad;
        std::vector<double> copy = m;
        std::vector<float> single(m.begin(), m.end());
        const std::string where = std::to_string(rows) + "x" + std::to_string(cols) + " at " + std::to_string(at);
        EXPECT_THROW(singular_values(copy, rows, cols), Error) << where;
        EXPECT_THROW(singular_values(single, rows, cols), Error) << where;
        EXPECT_THROW(gram_singular_values(m, rows, cols, MatrixLayout::RowMajor, 1e-4), Error) << where;
      }
    }
  }
}

// methods §6: where the Gram route keeps a result, every singular value is within the
// stated relative bound of the known one; where the condition number breaks the bound, it
// declines, whatever the tolerance asked.
TEST(Svd, GramRouteHonoursItsBoundOrDeclines) {
  int kept = 0, declined = 0;
  for (const double condition : {1.0, 10.0, 1e3, 1e5, 1e8}) {
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{400, 24}, {24, 400}}) {
      std::vector<double> sigma(24);
      for (size_t i = 0; i < sigma.size(); ++i) sigma[i] = 3.0 * std::pow(condition, -static_cast<double>(i) / 23.0);
      const std::vector<double> m = matrix_with_spectrum(rows, cols, sigma, static_cast<uint64_t>(condition) + 11);
      std::vector<double> exact_copy = m;
      const auto exact = singular_values(exact_copy, rows, cols);
      for (const double tolerance : {1e-12, 1e-6, 1e-2}) {
        const auto gram = gram_singular_values(m, rows, cols, MatrixLayout::RowMajor, tolerance);
        // The bound is about 2 (m + k) u kappa^2 (||A||_F / sigma_1)^2: a matrix of condition 1e8 can never meet it.
        if (condition >= 1e8) EXPECT_FALSE(gram.has_value());
        if (condition == 1.0 && tolerance >= 1e-6) EXPECT_TRUE(gram.has_value());
        if (!gram) { ++declined; continue; }
        ++kept;
        EXPECT_LE(gram->worst_relative_bound, tolerance);
        ASSERT_EQ(gram->sigma.size(), sigma.size());
        for (size_t i = 0; i < sigma.size(); ++i) {
          // Within the bound of the true value (up to the exact path's own error, 1e-13 relative here).
          EXPECT_LE(std::abs(gram->sigma[i] - sigma[i]), gram->worst_relative_bound * gram->sigma[i] + 1e-13 * sigma[0]) << condition << " " << i;
          EXPECT_NEAR(gram->sigma[i], exact[i], gram->worst_relative_bound * gram->sigma[i] + 1e-13 * sigma[0]);
        }
      }
    }
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(declined, 0);
  // The zero matrix is exact; a rank-deficient one has no bound relative to a zero value.
  EXPECT_TRUE(gram_singular_values(std::vector<double>(60, 0.0), 20, 3, MatrixLayout::RowMajor, 1e-4).has_value());
  const auto rank_one = matrix_with_spectrum(20, 3, {2.0}, 4);
  EXPECT_FALSE(gram_singular_values(rank_one, 20, 3, MatrixLayout::RowMajor, 0.4).has_value());
}

TEST(Svd, SinglePrecisionIsCloseAndParallelForRunsEveryJob) {
  std::vector<double> m = random_matrix(200, 16, 3);
  std::vector<double> d = m;
  std::vector<float> f(m.begin(), m.end());
  const auto sd = singular_values(d, 200, 16);
  const auto sf = singular_values(f, 200, 16);
  for (size_t i = 0; i < sd.size(); ++i) EXPECT_NEAR(sf[i], sd[i], 1e-4 * sd[0]);
  std::vector<int> hit(97, 0);
  parallel_for(97, [&](int64_t i) { hit[i] += 1; });
  EXPECT_EQ(std::count(hit.begin(), hit.end(), 1), 97);
}

TEST(Spectrum, ConstructedRankRGivesEffectiveRankR) {
  for (int r : {1, 3, 5, 8}) {
    std::vector<double> m = matrix_with_spectrum(100, 16, std::vector<double>(r, 2.5), static_cast<uint64_t>(r));
    const SpectrumMetrics s = spectrum_metrics(singular_values(m, 100, 16));
    EXPECT_EQ(s.rank90, r);
    EXPECT_EQ(s.rank95, r);
    EXPECT_EQ(s.rank99, r);
    EXPECT_NEAR(s.entropy_rank, r, 1e-6);
    EXPECT_EQ(s.energy.back(), 1.0);
    EXPECT_NEAR(s.normalized[r - 1], 1.0, 1e-9);
    if (r < 16) EXPECT_LT(s.normalized[r], 1e-12);
  }
}

TEST(Spectrum, EnergyCurvesEndAtExactlyOneAndRanksFollowThresholds) {
  for (uint64_t seed = 0; seed < 20; ++seed) {
    std::vector<double> m = random_matrix(50, 12, seed);
    const SpectrumMetrics s = spectrum_metrics(singular_values(m, 50, 12));
    EXPECT_EQ(s.energy.back(), 1.0);
    EXPECT_TRUE(std::is_sorted(s.energy.begin(), s.energy.end()));
    EXPECT_GE(s.energy[s.rank90 - 1], 0.90);
    if (s.rank90 > 1) EXPECT_LT(s.energy[s.rank90 - 2], 0.90);
    EXPECT_LE(s.rank90, s.rank95);
    EXPECT_LE(s.rank95, s.rank99);
  }
  // sigma = (3, 2, 1): energy 9/14, 13/14, 1 -> rank90 = 2, rank95 = 3.
  const SpectrumMetrics s = spectrum_metrics({3, 2, 1});
  EXPECT_DOUBLE_EQ(s.energy[0], 9.0 / 14.0);
  EXPECT_EQ(s.rank90, 2);
  EXPECT_EQ(s.rank95, 3);
  EXPECT_DOUBLE_EQ(s.fraction[1], 2.0 / 6.0);
}

TEST(Correlation, HandComputedCases) {
  // Pearson of (1,2,3,4) and (2,4,5,9): computed by hand, r = 18/sqrt(5 * 26 * 2.5)... see below.
  // mean x = 2.5, mean y = 5; sxy = (-1.5)(-3)+(-0.5)(-1)+(0.5)(0)+(1.5)(4) = 11; sxx = 5; syy = 26.
  EXPECT_NEAR(pearson({1, 2, 3, 4}, {2, 4, 5, 9}), 11.0 / std::sqrt(5.0 * 26.0), 1e-12);
  EXPECT_NEAR(pearson({1, 2, 3}, {3, 2, 1}), -1.0, 1e-12);
  // Ties share the average rank: (10, 20, 20, 30) -> (1, 2.5, 2.5, 4).
  EXPECT_EQ(average_ranks({10, 20, 20, 30}), (std::vector<double>{1, 2.5, 2.5, 4}));
  // Spearman with ties in both: x ranks (1, 2.5, 2.5, 4), y = (1, 3, 2, 2) ranks (1, 4, 2.5, 2.5).
  // Pearson of the ranks: means 2.5; dx = (-1.5, 0, 0, 1.5), dy = (-1.5, 1.5, 0, 0)
  // sxy = 2.25, sxx = 4.5, syy = 4.5 -> 0.5.
  EXPECT_NEAR(spearman({10, 20, 20, 30}, {1, 3, 2, 2}), 0.5, 1e-12);
  EXPECT_NEAR(spearman({1, 2, 3, 4, 5}, {5, 6, 7, 8, 7}), pearson({1, 2, 3, 4, 5}, {1, 2, 3.5, 5, 3.5}), 1e-12);
  EXPECT_TRUE(std::isnan(pearson({1, 1, 1}, {1, 2, 3})));
}

// ALR straight from its definition: the oracle loss at m is the least total attention of any
// m entries (found by enumerating every subset), the L2 loss drops the m highest norms.
double brute_force_alr(const std::vector<double>& a, const std::vector<double>& norm) {
  const int n = static_cast<int>(a.size());
  std::vector<double> oracle(n + 1, 1e300);
  for (uint32_t mask = 0; mask < (1u << n); ++mask) {
    double s = 0;
    for (int i = 0; i < n; ++i) if (mask & (1u << i)) s += a[i];
    const int m = __builtin_popcount(mask);
    oracle[m] = std::min(oracle[m], s);
  }
  std::vector<int> idx(n);
  for (int i = 0; i < n; ++i) idx[i] = i;
  std::stable_sort(idx.begin(), idx.end(), [&](int x, int y) { return norm[x] > norm[y]; });
  double alr = 0, l2 = 0;
  for (int m = 1; m <= n; ++m) {
    l2 += a[idx[m - 1]];
    alr += l2 - oracle[m];
  }
  return alr;
}

TEST(Alr, MatchesBruteForceAndOracleNeverAboveL2) {
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> u(0, 1);
  for (int trial = 0; trial < 200; ++trial) {
    const int n = 1 + trial % 11;
    std::vector<double> a(n), norm(n);
    double total = 0;
    for (int i = 0; i < n; ++i) { a[i] = std::exp(4 * u(rng)); total += a[i]; norm[i] = u(rng) * 10; }
    for (double& x : a) x /= total;
    if (trial % 7 == 0 && n > 2) norm[1] = norm[0];  // ties in norm
    EXPECT_NEAR(attention_loss_ratio(a, norm), brute_force_alr(a, norm), 1e-12) << "trial " << trial;
    const AttentionLoss loss = attention_loss(a, norm, static_cast<uint64_t>(trial));
    for (int m = 0; m <= n; ++m) {
      EXPECT_LE(loss.oracle[m], loss.l2[m] + 1e-15);
      EXPECT_LE(loss.oracle[m], loss.random[m] + 1e-15);
    }
    EXPECT_NEAR(loss.l2[n], 1.0, 1e-12);
    EXPECT_NEAR(loss.random[n], 1.0, 1e-12);
  }
  // Norms that rank attention perfectly in reverse give ALR 0.
  EXPECT_NEAR(attention_loss_ratio({0.1, 0.2, 0.3, 0.4}, {4, 3, 2, 1}), 0.0, 1e-15);
}


std::vector<std::vector<double>> random_rows(int n, int d, std::mt19937_64& rng, double scale) {
  std::normal_distribution<double> g(0, scale);
  std::vector<std::vector<double>> m(n, std::vector<double>(d));
  for (auto& r : m) for (double& x : r) x = g(rng);
  return m;
}

TEST(Perturbation, IdealMergeLeavesTheOutputUnchanged) {
  std::mt19937_64 rng(9);
  for (int trial = 0; trial < 50; ++trial) {
    const int n = 3 + trial % 20, d = 8;
    const auto q = random_rows(1, d, rng, 1.0)[0];
    const auto K = random_rows(n, d, rng, 1.0), V = random_rows(n, d, rng, 1.0);
    const int j = trial % (n - 1), r = j + 1;
    const double scale = 1.0 / std::sqrt(d);
    std::vector<double> A;
    const auto o = attention_output(q, K, V, scale, &A);
    const auto ideal = ideal_merged_value(q, K, V, j, r, scale);
    const auto closed = output_after_merge(o, A[j], V[j], A[r], V[r], ideal);
    for (int k = 0; k < d; ++k) EXPECT_NEAR(closed[k], o[k], 1e-10);
    // Brute force: drop key j, give r the ideal value, recompute attention.
    auto K2 = K, V2 = V;
    V2[r] = ideal;
    K2.erase(K2.begin() + j);
    V2.erase(V2.begin() + j);
    const auto brute = attention_output(q, K2, V2, scale);
    for (int k = 0; k < d; ++k) EXPECT_NEAR(brute[k], o[k], 1e-10);
    // The convex approximation is not exact in general.
    std::vector<double> convex(d);
    for (int k = 0; k < d; ++k) convex[k] = (A[j] * V[j][k] + A[r] * V[r][k]) / (A[j] + A[r]);
    EXPECT_GT(relative_l2(output_after_merge(o, A[j], V[j], A[r], V[r], convex), o), 0.0);
  }
}

TEST(Perturbation, ClosedFormEvictionEqualsRecomputation) {
  std::mt19937_64 rng(10);
  for (int trial = 0; trial < 50; ++trial) {
    const int n = 2 + trial % 15, d = 6;
    const auto q = random_rows(1, d, rng, 2.0)[0];
    const auto K = random_rows(n, d, rng, 1.0), V = random_rows(n, d, rng, 1.0);
    std::vector<double> A;
    const auto o = attention_output(q, K, V, 0.5, &A);
    const int j = trial % n;
    auto K2 = K, V2 = V;
    K2.erase(K2.begin() + j);
    V2.erase(V2.begin() + j);
    const auto brute = attention_output(q, K2, V2, 0.5);
    const auto closed = output_after_eviction(o, A[j], V[j]);
    for (int k = 0; k < d; ++k) EXPECT_NEAR(closed[k], brute[k], 1e-10);
  }
  EXPECT_EQ(cosine({0.1, 0.2, 0.3}, {0.1, 0.2, 0.3}), 1.0);
}

}  // namespace
}  // namespace kvscope
