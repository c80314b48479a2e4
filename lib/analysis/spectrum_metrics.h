#pragma once
// What is derived from one matrix's singular values (methods §6).
#include <vector>

namespace kvscope {

struct SpectrumMetrics {
  std::vector<double> normalized;  // sigma_i / sigma_1
  std::vector<double> fraction;    // sigma_i / sum sigma
  std::vector<double> energy;      // sum_{<=i} sigma^2 / sum sigma^2; the last entry is exactly 1
  int rank90 = 0, rank95 = 0, rank99 = 0;  // smallest r whose energy reaches the threshold
  double entropy_rank = 0;         // exp(entropy of sigma / sum sigma) (Roy and Vetterli)
};

SpectrumMetrics spectrum_metrics(const std::vector<double>& sigma);
int energy_rank(const std::vector<double>& energy, double threshold);

}  // namespace kvscope
