#pragma once
// Perplexity differences between two runs scored on the same tokens, with bootstrap 95%
// intervals (methods §5.1). Paired: one resample of token positions serves both runs, so
// the variation the runs share (hard tokens are hard for every policy) cancels. Unpaired:
// each run resampled on its own, for comparison. Tokens are resampled in blocks of
// `block` consecutive tokens (1: independently), within each document, and the documents
// pooled. Deterministic for a given seed. LibTorch-free.
#include <cstdint>
#include <vector>

namespace kvscope {

struct BootstrapOptions {
  int64_t resamples = 1000;  // 0: no intervals
  uint64_t seed = 0;
  int64_t block = 1;
};

struct PplDifference {
  double delta_ppl = 0, low = 0, high = 0;  // PPL(a) - PPL(b) over the pooled tokens, and its 95% interval
  double delta_nll = 0;                     // mean NLL(a) - mean NLL(b)
  int64_t tokens = 0;
};

// a[d][t] and b[d][t]: per-token NLL of the two runs on document d (equal lengths per document).
PplDifference paired_ppl_difference(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b,
                                    const BootstrapOptions& options);
PplDifference unpaired_ppl_difference(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b,
                                      const BootstrapOptions& options);

}  // namespace kvscope
