#include "analysis/correlation.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "core/error.h"

namespace kvscope {

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  if (x.size() != y.size()) fail("pearson: sizes differ (", x.size(), " vs ", y.size(), ")");
  const size_t n = x.size();
  if (n < 2) return std::nan("");
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / n, my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < n; ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  return sxx > 0 && syy > 0 ? sxy / std::sqrt(sxx * syy) : std::nan("");
}

std::vector<double> average_ranks(const std::vector<double>& x) {
  const size_t n = x.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return x[a] < x[b]; });
  std::vector<double> rank(n);
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j + 1 < n && x[order[j + 1]] == x[order[i]]) ++j;
    const double r = 0.5 * static_cast<double>(i + j) + 1.0;  // ranks are 1-based
    for (size_t k = i; k <= j; ++k) rank[order[k]] = r;
    i = j + 1;
  }
  return rank;
}

double spearman(const std::vector<double>& x, const std::vector<double>& y) { return pearson(average_ranks(x), average_ranks(y)); }

namespace {
std::vector<double> cumulative_in_order(const std::vector<double>& a, const std::vector<size_t>& order) {
  std::vector<double> out(a.size() + 1, 0.0);
  for (size_t m = 0; m < order.size(); ++m) out[m + 1] = out[m] + a[order[m]];
  return out;
}
}  // namespace

AttentionLoss attention_loss(const std::vector<double>& attention, const std::vector<double>& key_norm, uint64_t seed) {
  if (attention.size() != key_norm.size()) fail("attention_loss: sizes differ");
  const size_t n = attention.size();
  std::vector<size_t> by_norm(n), by_attention(n), random(n);
  std::iota(by_norm.begin(), by_norm.end(), 0);
  std::iota(by_attention.begin(), by_attention.end(), 0);
  std::iota(random.begin(), random.end(), 0);
  std::stable_sort(by_norm.begin(), by_norm.end(), [&](size_t a, size_t b) { return key_norm[a] > key_norm[b]; });
  std::stable_sort(by_attention.begin(), by_attention.end(), [&](size_t a, size_t b) { return attention[a] < attention[b]; });
  std::mt19937_64 rng(seed);
  for (size_t i = n; i > 1; --i) std::swap(random[i - 1], random[rng() % i]);
  return AttentionLoss{cumulative_in_order(attention, by_norm), cumulative_in_order(attention, by_attention),
                       cumulative_in_order(attention, random)};
}

double attention_loss_ratio(const std::vector<double>& attention, const std::vector<double>& key_norm) {
  const AttentionLoss loss = attention_loss(attention, key_norm, 0);
  double alr = 0;
  for (size_t m = 1; m < loss.l2.size(); ++m) alr += loss.l2[m] - loss.oracle[m];
  return alr;
}

}  // namespace kvscope
