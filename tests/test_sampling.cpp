// Sampling (lib/model/sampling.h) against what each option means, on logits whose
// probabilities are known: top-k draws only the k most probable tokens, in proportion to
// their renormalised probabilities; top-p draws exactly the nucleus (the smallest set of most
// probable tokens whose mass reaches p); a vanishing temperature is argmax; a seed fixes the
// draws.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include "model/sampling.h"

namespace kvscope {
namespace {

// Frequencies of `draws` tokens drawn with `o` from `logits`, one generator for all.
std::map<int64_t, int> draw(const at::Tensor& logits, const SamplingOptions& o, int draws, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::map<int64_t, int> counts;
  for (int i = 0; i < draws; ++i) ++counts[choose_token(logits, o, rng)];
  return counts;
}

// Each frequency within 5 standard deviations of its probability (a false alarm is
// about one in a million per token).
void expect_frequencies(const std::map<int64_t, int>& counts, const std::map<int64_t, double>& p, int draws) {
  for (const auto& [token, prob] : p) {
    const double sd = std::sqrt(prob * (1 - prob) / draws);
    const auto it = counts.find(token);
    const double freq = it == counts.end() ? 0.0 : static_cast<double>(it->second) / draws;
    EXPECT_NEAR(freq, prob, 5 * sd + 1e-12) << "token " << token;
  }
}

// Probabilities given per token id, in a shuffled id order, as logits (log p + a constant).
at::Tensor logits_for(const std::vector<double>& probs, std::vector<int64_t>* ids) {
  ids->resize(probs.size());
  std::iota(ids->begin(), ids->end(), 0);
  std::shuffle(ids->begin(), ids->end(), std::mt19937_64(99));
  at::Tensor l = at::empty({static_cast<int64_t>(probs.size())}, at::kFloat);
  for (size_t i = 0; i < probs.size(); ++i) l[(*ids)[i]] = static_cast<float>(std::log(probs[i]) + 3.0);
  return l;
}

TEST(Sampling, TopKDrawsOnlyTheKMostProbableInProportion) {
  at::manual_seed(5);
  const at::Tensor logits = at::randn({40}) * 1.5;
  std::vector<int64_t> order(40);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return logits[a].item<float>() > logits[b].item<float>(); });
  for (const int64_t k : {1, 3, 7}) {
    SamplingOptions o;
    o.temperature = 1.0;
    o.top_k = k;
    constexpr int kDraws = 20000;
    const auto counts = draw(logits, o, kDraws, 11);
    const std::set<int64_t> allowed(order.begin(), order.begin() + k);
    std::set<int64_t> seen;
    for (const auto& [token, n] : counts) seen.insert(token);
    EXPECT_EQ(seen, allowed) << "top-k " << k;
    double z = 0;
    for (int64_t t : allowed) z += std::exp(static_cast<double>(logits[t].item<float>()));
    std::map<int64_t, double> p;
    for (int64_t t : allowed) p[t] = std::exp(static_cast<double>(logits[t].item<float>())) / z;
    expect_frequencies(counts, p, kDraws);
  }
}

TEST(Sampling, TopPDrawsExactlyTheNucleus) {
  const std::vector<double> probs{0.4, 0.25, 0.15, 0.1, 0.06, 0.04};  // cumulative 0.4 0.65 0.8 0.9 0.96 1
  std::vector<int64_t> ids;
  const at::Tensor logits = logits_for(probs, &ids);
  // (top_p, nucleus size): the smallest prefix whose mass reaches top_p.
  for (const auto& [top_p, size] : std::vector<std::pair<double, size_t>>{{0.3, 1}, {0.5, 2}, {0.7, 3}, {0.85, 4}, {0.97, 6}, {1.0, 6}}) {
    SamplingOptions o;
    o.temperature = 1.0;
    o.top_p = top_p;
    constexpr int kDraws = 20000;
    const auto counts = draw(logits, o, kDraws, 3);
    std::set<int64_t> seen;
    for (const auto& [token, n] : counts) seen.insert(token);
    EXPECT_EQ(seen, std::set<int64_t>(ids.begin(), ids.begin() + static_cast<long>(size))) << "top-p " << top_p;
    const double mass = std::accumulate(probs.begin(), probs.begin() + static_cast<long>(size), 0.0);
    std::map<int64_t, double> p;
    for (size_t i = 0; i < size; ++i) p[ids[i]] = probs[i] / mass;
    expect_frequencies(counts, p, kDraws);
  }
}

TEST(Sampling, TopKThenTopPOnTheRenormalisedTopK) {
  const std::vector<double> probs{0.4, 0.25, 0.15, 0.1, 0.06, 0.04};
  std::vector<int64_t> ids;
  const at::Tensor logits = logits_for(probs, &ids);
  SamplingOptions o;
  o.temperature = 1.0;
  o.top_k = 3;     // renormalised: 0.5, 0.3125, 0.1875
  o.top_p = 0.75;  // reached by the first two (0.8125), not by the first alone
  std::set<int64_t> seen;
  for (const auto& [token, n] : draw(logits, o, 5000, 8)) seen.insert(token);
  EXPECT_EQ(seen, std::set<int64_t>(ids.begin(), ids.begin() + 2));
}

TEST(Sampling, VanishingTemperatureIsArgmax) {
  std::mt19937_64 rng(1);
  for (int trial = 0; trial < 200; ++trial) {
    at::manual_seed(trial);
    const at::Tensor logits = at::randn({300}) * 3.0;
    const int64_t argmax = logits.argmax().item<int64_t>();
    SamplingOptions greedy;
    EXPECT_EQ(choose_token(logits, greedy, rng), argmax);
    SamplingOptions cold;
    cold.temperature = 1e-6;
    EXPECT_EQ(choose_token(logits, cold, rng), argmax) << "trial " << trial;
  }
}

TEST(Sampling, SameSeedSameDrawsOtherSeedOtherDraws) {
  at::manual_seed(2);
  const at::Tensor logits = at::randn({64}) * 0.5;  // flat enough that 100 draws cannot repeat by chance
  SamplingOptions o;
  o.temperature = 1.0;
  auto sequence = [&](uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<int64_t> s;
    for (int i = 0; i < 100; ++i) s.push_back(choose_token(logits, o, rng));
    return s;
  };
  EXPECT_EQ(sequence(42), sequence(42));
  EXPECT_NE(sequence(42), sequence(43));
}

}  // namespace
}  // namespace kvscope
