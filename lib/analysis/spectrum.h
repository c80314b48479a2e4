#pragma once
// kvscope spectrum: singular-value spectra of keys (before and after RoPE) and values from a
// dump, per document, layer and KV head, and of each layer's matrix with all heads side by
// side (methods §6). Output schema kvscope.spectrum v1 (docs/results_schemas.md).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace kvscope {

class DumpReader;

inline constexpr const char* kSpectrumSchemaName = "kvscope.spectrum";
inline constexpr int64_t kSpectrumSchemaVersion = 1;

struct SpectrumOptions {
  std::vector<std::string> kinds{"k_pre_rope", "k", "v"};
  bool per_head = true;
  bool per_layer = true;     // all heads side by side: [T, kv_heads * head_dim]
  bool center = false;       // subtract each column's mean first
  int64_t token_begin = 0;
  int64_t token_end = -1;    // -1: to the end
  bool single_precision = false;
  // Gram: eigenvalues of K^T K, kept per matrix only where methods §6's bound guarantees every
  // singular value to gram_tolerance (relative); the others take the exact path.
  bool gram = false;
  double gram_tolerance = 1e-4;
  int threads = 0;
};

struct SpectrumSummaryRow {
  int64_t layer;
  std::string kind;
  double rank90, rank95, rank99, entropy_rank;  // means over heads and documents
  double layer_rank90;                          // of the all-heads matrix, mean over documents
};

struct SpectrumReport {
  std::vector<SpectrumSummaryRow> rows;
  int64_t matrices = 0;
  int64_t gram_fallbacks = 0;  // matrices the Gram route handed to the exact path
};

// Computes every spectrum, writes `out_path` (caller's temp file) and `csv_path`, and returns
// the per-layer summary. progress(done, total) counts (document, layer) pairs.
SpectrumReport run_spectrum(const DumpReader& dump, const SpectrumOptions& options, const std::string& out_path,
                                             const std::string& csv_path, const std::string& command_line,
                                             const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace kvscope
