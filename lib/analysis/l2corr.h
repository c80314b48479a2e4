#pragma once
// kvscope l2corr: does a key's low L2 norm predict high attention? Per layer and query head:
// Spearman and Pearson correlation between key norm and mean attention received, the ALR
// metric of Devoto et al. (methods §6, Eq. 11), and attention-loss curves against compression ratio
// for the L2, oracle and random rules. Output schema kvscope.l2corr v1.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace kvscope {

class DumpReader;

inline constexpr const char* kL2CorrSchemaName = "kvscope.l2corr";
inline constexpr int64_t kL2CorrSchemaVersion = 1;

struct L2CorrOptions {
  bool include_self = false;  // count a key's own query in its mean attention
  uint64_t seed = 0;          // random-eviction order
  int ratio_steps = 100;      // compression ratios 0, 1/steps, ..., (steps-1)/steps
};

struct L2CorrSummaryRow {
  int64_t layer;
  double spearman, pearson, alr;  // means over query heads and documents
};

std::vector<L2CorrSummaryRow> run_l2corr(const DumpReader& dump, const L2CorrOptions& options, const std::string& out_path,
                                         const std::string& csv_path, const std::string& command_line,
                                         const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace kvscope
