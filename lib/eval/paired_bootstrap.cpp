#include "eval/paired_bootstrap.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace kvscope {
namespace {

// splitmix64: the same draws on every platform (std::uniform_int_distribution is not).
struct Draws {
  uint64_t state;
  uint64_t next() {
    uint64_t x = (state += 0x9e3779b97f4a7c15ull);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  }
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }
};

// Sums of one resample of a document: blocks of `block` tokens starting anywhere the block
// fits (moving blocks), as many as cover the document, the last one cut to its length.
struct Resampler {
  int64_t block;
  void add(const std::vector<double>& x, const std::vector<int64_t>& starts, double& sum) const {
    const int64_t n = static_cast<int64_t>(x.size());
    int64_t left = n;
    for (int64_t s : starts) {
      for (int64_t i = 0; i < std::min(block, left); ++i) sum += x[static_cast<size_t>(s + i)];
      left -= block;
    }
  }
  std::vector<int64_t> draw(Draws& rng, int64_t n) const {
    const int64_t b = std::min(block, n), positions = n - b + 1, count = (n + b - 1) / b;
    std::vector<int64_t> starts(static_cast<size_t>(count));
    for (int64_t& s : starts) s = rng.below(positions);
    return starts;
  }
};

void check(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b, const BootstrapOptions& o) {
  if (a.size() != b.size()) fail("internal: paired runs over different numbers of documents");
  for (size_t d = 0; d < a.size(); ++d)
    if (a[d].size() != b[d].size()) fail("internal: paired runs scored different numbers of tokens on document ", d);
  if (o.resamples < 0 || o.block < 1) fail("internal: bootstrap resamples must be >= 0 and blocks >= 1");
}

double pooled_mean(const std::vector<std::vector<double>>& x, int64_t* n) {
  double sum = 0;
  *n = 0;
  for (const auto& doc : x) {
    for (double v : doc) sum += v;
    *n += static_cast<int64_t>(doc.size());
  }
  return *n ? sum / static_cast<double>(*n) : 0.0;
}

PplDifference difference(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b,
                         const BootstrapOptions& o, bool paired) {
  check(a, b, o);
  PplDifference out;
  int64_t n = 0;
  const double ma = pooled_mean(a, &n), mb = pooled_mean(b, &n);
  out.tokens = n;
  out.delta_nll = ma - mb;
  out.delta_ppl = std::exp(ma) - std::exp(mb);
  out.low = out.high = out.delta_ppl;
  if (o.resamples == 0 || n == 0) return out;
  Draws rng{o.seed};
  const Resampler resample{o.block};
  std::vector<double> deltas(static_cast<size_t>(o.resamples));
  for (double& delta : deltas) {
    double sa = 0, sb = 0;
    for (size_t d = 0; d < a.size(); ++d) {
      if (a[d].empty()) continue;
      const int64_t len = static_cast<int64_t>(a[d].size());
      const std::vector<int64_t> starts = resample.draw(rng, len);
      resample.add(a[d], starts, sa);
      resample.add(b[d], paired ? starts : resample.draw(rng, len), sb);
    }
    delta = std::exp(sa / static_cast<double>(n)) - std::exp(sb / static_cast<double>(n));
  }
  std::sort(deltas.begin(), deltas.end());
  // Percentile interval, linear interpolation between order statistics.
  auto quantile = [&](double q) {
    const double at = q * static_cast<double>(deltas.size() - 1);
    const size_t lo = static_cast<size_t>(std::floor(at));
    const size_t hi = std::min(lo + 1, deltas.size() - 1);
    return deltas[lo] + (at - static_cast<double>(lo)) * (deltas[hi] - deltas[lo]);
  };
  out.low = quantile(0.025);
  out.high = quantile(0.975);
  return out;
}

}  // namespace

PplDifference paired_ppl_difference(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b,
                                    const BootstrapOptions& options) {
  return difference(a, b, options, true);
}

PplDifference unpaired_ppl_difference(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b,
                                      const BootstrapOptions& options) {
  return difference(a, b, options, false);
}

}  // namespace kvscope
