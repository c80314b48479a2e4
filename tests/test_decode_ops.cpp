// The raw-row steps of a CPU decode step against float64 references: kvscope's exponential
// within its stated 2 ulp and the same wherever an element sits, RMSNorm, SwiGLU and softmax
// to float32 rounding, and q/k/v computed as one section equal, bit for bit, to three
// separate products.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/worker_pool.h"
#include "model/decode_ops.h"
#include "model/row_linear.h"

namespace kvscope {
namespace {

// Distance in units in the last place between two finite floats of the same sign.
int64_t ulps_apart(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  return std::llabs(static_cast<int64_t>(ia) - static_cast<int64_t>(ib));
}

TEST(DecodeOps, ExpIsWithinTwoUlpOfTheExactValue) {
  std::vector<float> xs;
  for (float x = -87.3f; x <= 88.3f; x += 0.0037f) xs.push_back(x);
  std::mt19937 gen(5);
  std::uniform_real_distribution<float> small(-1.0f, 1.0f);
  for (int i = 0; i < 20000; ++i) xs.push_back(small(gen));
  for (float x : {0.0f, -0.0f, 1e-30f, -1e-30f, 0.34657359f, -0.34657359f, -87.0f, 88.0f}) xs.push_back(x);
  std::vector<float> got = xs;
  exp_in_place(got.data(), static_cast<int64_t>(got.size()));
  int64_t worst = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const float exact = static_cast<float>(std::exp(static_cast<double>(xs[i])));
    if (exact < std::numeric_limits<float>::min()) continue;  // subnormal results: absolute error below 1e-38
    worst = std::max(worst, ulps_apart(got[i], exact));
    ASSERT_LE(ulps_apart(got[i], exact), 2) << "exp(" << xs[i] << ") = " << got[i] << ", exactly " << exact;
  }
  EXPECT_GE(worst, 1);  // a reference that agreed everywhere would be no test of the bound
}

TEST(DecodeOps, ExpLimitsAndNonFiniteInputs) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> v = {-inf, -1000.0f, -87.4f, 88.4f, 1000.0f, inf, std::nanf("")};
  // Twice, so each value is met once in a vector of eight and once in a row's scalar tail.
  std::vector<float> twice = v;
  twice.insert(twice.end(), v.begin(), v.end());
  exp_in_place(twice.data(), static_cast<int64_t>(twice.size()));
  for (size_t k = 0; k < 2; ++k) {
    const float* e = twice.data() + k * v.size();
    EXPECT_EQ(e[0], 0.0f);
    EXPECT_EQ(e[1], 0.0f);
    EXPECT_EQ(e[2], 0.0f);
    EXPECT_EQ(e[3], inf);
    EXPECT_EQ(e[4], inf);
    EXPECT_EQ(e[5], inf);
    EXPECT_TRUE(std::isnan(e[6]));
  }
}

TEST(DecodeOps, ExpOfAnElementDoesNotDependOnWhereItSits) {
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> dist(-30.0f, 5.0f);
  std::vector<float> values(61);
  for (float& x : values) x = dist(gen);
  std::vector<float> first = values;
  exp_in_place(first.data(), static_cast<int64_t>(first.size()));
  // Shifted by 1..8 and cut short, each element moves between vector lanes and the tail.
  for (int shift = 1; shift <= 8; ++shift) {
    for (int64_t len : {1, 3, 8, 13, 61 - shift}) {
      std::vector<float> row(values.begin() + shift, values.begin() + shift + len);
      exp_in_place(row.data(), len);
      for (int64_t i = 0; i < len; ++i)
        ASSERT_EQ(std::memcmp(&row[i], &first[shift + i], 4), 0) << "element " << shift + i << " at place " << i << " of " << len;
    }
  }
}

TEST(DecodeOps, SoftmaxMatchesFloat64Reference) {
  std::mt19937 gen(11);
  std::normal_distribution<float> dist(0.0f, 4.0f);
  for (int64_t n : {1, 2, 3, 7, 8, 9, 31, 64, 257, 1000}) {
    std::vector<float> s(static_cast<size_t>(n));
    for (float& x : s) x = dist(gen);
    if (n > 4) s[3] = -std::numeric_limits<float>::infinity();  // a masked key
    double top = -1e300, sum = 0.0;
    for (float x : s) top = std::max(top, static_cast<double>(x));
    std::vector<double> ref(s.size());
    for (size_t i = 0; i < s.size(); ++i) sum += ref[i] = std::exp(static_cast<double>(s[i]) - top);
    softmax_row(s.data(), n);
    double total = 0.0;
    for (size_t i = 0; i < s.size(); ++i) {
      EXPECT_NEAR(s[i], ref[i] / sum, 1e-6 * (ref[i] / sum) + 1e-12) << "n=" << n << " i=" << i;
      total += s[i];
    }
    EXPECT_NEAR(total, 1.0, 1e-6) << "n=" << n;
    if (n > 4) EXPECT_EQ(s[3], 0.0f);
  }
  std::vector<float> hidden(5, -std::numeric_limits<float>::infinity());
  softmax_row(hidden.data(), 5);
  for (float p : hidden) EXPECT_TRUE(std::isnan(p)) << "a row with every key masked is NaN, as at::softmax gives";
}

TEST(DecodeOps, RmsNormAndSwigluMatchFloat64Reference) {
  std::mt19937 gen(13);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  const int64_t rows = 3, dim = 77;
  std::vector<float> x(rows * dim), w(dim), y(rows * dim);
  for (float& v : x) v = dist(gen);
  for (float& v : w) v = dist(gen);
  rms_norm_rows(x.data(), rows, dim, w.data(), 1e-5, y.data());
  for (int64_t r = 0; r < rows; ++r) {
    double ms = 0.0;
    for (int64_t d = 0; d < dim; ++d) ms += static_cast<double>(x[r * dim + d]) * x[r * dim + d];
    const double inv = 1.0 / std::sqrt(ms / dim + 1e-5);
    for (int64_t d = 0; d < dim; ++d) {
      const double ref = x[r * dim + d] * inv * w[d];
      EXPECT_NEAR(y[r * dim + d], ref, 3e-7 * std::abs(ref) + 1e-30);
    }
  }
  std::vector<float> gate(600), up(600);
  for (float& v : gate) v = dist(gen) * 5.0f;
  for (float& v : up) v = dist(gen);
  std::vector<float> act = gate;
  silu_times(act.data(), up.data(), static_cast<int64_t>(act.size()));
  for (size_t i = 0; i < gate.size(); ++i) {
    const double g = gate[i], ref = g / (1.0 + std::exp(-g)) * up[i];
    EXPECT_NEAR(act[i], ref, 1e-6 * std::abs(ref) + 1e-30) << "gate " << g;
  }
}

TEST(DecodeOps, ProjectionsInOneSectionEqualSeparateProducts) {
  at::manual_seed(3);
  const int threads_before = worker_threads();
  const int64_t K = 96;
  const at::Tensor x = at::randn({5, K}), wq = at::randn({64, K}), wk = at::randn({17, K}), wv = at::randn({17, K}), bq = at::randn({64});
  for (int threads : {1, 2, 3}) {
    set_worker_threads(threads);
    for (int64_t B : {1, 2, 5}) {
      at::Tensor q = at::empty({B, 64}), k = at::empty({B, 17}), v = at::empty({B, 17});
      const RowLinearPart parts[] = {{wq.data_ptr<float>(), 64, bq.data_ptr<float>(), q.data_ptr<float>()},
                                     {wk.data_ptr<float>(), 17, nullptr, k.data_ptr<float>()},
                                     {wv.data_ptr<float>(), 17, nullptr, v.data_ptr<float>()}};
      row_linear_parts_raw(x.data_ptr<float>(), B, K, parts, 3);
      const at::Tensor xb = x.narrow(0, 0, B);
      EXPECT_TRUE(at::equal(q, row_linear(xb, wq, bq))) << B << " rows, " << threads << " threads";
      EXPECT_TRUE(at::equal(k, row_linear(xb, wk))) << B << " rows, " << threads << " threads";
      EXPECT_TRUE(at::equal(v, row_linear(xb, wv))) << B << " rows, " << threads << " threads";
    }
  }
  set_worker_threads(threads_before);
}

}  // namespace
}  // namespace kvscope
