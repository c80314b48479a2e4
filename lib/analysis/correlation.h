#pragma once
// Correlation between key norms and attention, and the attention-loss metric (ALR) of the
// L2-norm paper (methods §6).
#include <cstdint>
#include <vector>

namespace kvscope {

double pearson(const std::vector<double>& x, const std::vector<double>& y);
// Spearman's rho: Pearson on ranks, tied values sharing their average rank.
double spearman(const std::vector<double>& x, const std::vector<double>& y);
std::vector<double> average_ranks(const std::vector<double>& x);

// Attention lost when dropping `m` entries for m = 0..n, under three rules:
//  l2:     drop the highest key norms first,
//  oracle: drop the lowest attention first (the least loss possible),
//  random: drop in a seeded random order.
struct AttentionLoss {
  std::vector<double> l2, oracle, random;  // size n + 1, index m
};
AttentionLoss attention_loss(const std::vector<double>& attention, const std::vector<double>& key_norm, uint64_t seed);

// ALR = sum_{m=1..n} (L2 loss at m - oracle loss at m): the area between the curves.
// Lower means key norms predict attention better.
double attention_loss_ratio(const std::vector<double>& attention, const std::vector<double>& key_norm);

}  // namespace kvscope
