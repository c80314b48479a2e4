#include <cmath>
#include <cstdio>

#include "analysis/spectrum.h"
#include "commands.h"
#include "core/option_values.h"
#include "common.h"
#include "core/error.h"
#include "core/progress.h"
#include "dump/dump_reader.h"
#include "io/atomic_output.h"

namespace kvscope::tools {

Command register_spectrum(CLI::App& app) {
  auto* cmd = app.add_subcommand("spectrum", "Singular-value spectra of keys (before/after RoPE) and values in a dump");
  static std::string dump_path, out, kinds = "k_pre_rope,k,v", tokens, method = "exact";
  static double gram_tolerance = 1e-4;
  static bool center = false, single = false, force = false, no_layer = false, no_head = false;
  static int threads = 0;
  cmd->add_option("DUMP", dump_path, "a file written by kvscope dump")->required();
  cmd->add_option("-o,--out", out, "output .h5 (a CSV is written beside it)")->required();
  cmd->add_option("--kinds", kinds, "matrices: any of k_pre_rope, k, v")->capture_default_str();
  cmd->add_flag("--center", center, "subtract each column's mean before the SVD (default: off)");
  cmd->add_option("--tokens", tokens, "token range BEGIN:END (default: all)")->check(non_empty());
  cmd->add_flag("--float", single, "single-precision SVD (sgesdd) instead of double");
  cmd->add_option("--method", method,
                  "exact: QR, then divide and conquer on the small factor; gram: eigenvalues of K^T K, about 3x faster, kept per "
                  "matrix only where the error bound of docs/methods.md section 6 guarantees every singular value to --gram-tolerance "
                  "(others fall back to exact; the count is reported)")
      ->capture_default_str()
      ->check(CLI::IsMember({"exact", "gram"}));
  cmd->add_option("--gram-tolerance", gram_tolerance, "relative accuracy the gram method must guarantee for every singular value")
      ->capture_default_str()
      ->check(finite_in(0, false, 0.5));
  cmd->add_flag("--no-layer-matrix", no_layer, "skip the per-layer matrix with all heads side by side");
  cmd->add_flag("--no-head-matrices", no_head, "skip the per-head matrices");
  cmd->add_option("--threads", threads, "parallel SVDs (0 = all cores)")->check(thread_count());
  cmd->add_flag("--force", force, "overwrite existing outputs");
  return {cmd, [cmd] {
            if (cmd->count("--gram-tolerance") > 0 && method != "gram") fail("--gram-tolerance is read only with --method gram");
            AtomicOutput output(out, force);
            const std::string csv = sidecar_path(out, ".csv", force);
            for (const std::string& o : {out, csv}) refuse_output_over_inputs(o, {dump_path});
            const DumpReader dump = DumpReader::open(dump_path, read_timeout_seconds());
            SpectrumOptions o;
            o.kinds = split_option_list(kinds, "--kinds");
            o.center = center;
            o.single_precision = single;
            o.gram = method == "gram";
            o.gram_tolerance = gram_tolerance;
            o.per_layer = !no_layer;
            o.per_head = !no_head;
            o.threads = threads;
            if (!tokens.empty()) {
              const size_t colon = tokens.find(':');
              if (colon == std::string::npos) fail("--tokens '", tokens, "': expected BEGIN:END, e.g. 0:1024");
              o.token_begin = colon == 0 ? 0 : parse_whole(tokens.substr(0, colon), "--tokens BEGIN", 0);
              o.token_end = colon + 1 == tokens.size() ? -1 : parse_whole(tokens.substr(colon + 1), "--tokens END", 0);
              if (o.token_begin < 0 || (o.token_end >= 0 && o.token_end <= o.token_begin)) fail("--tokens '", tokens, "': empty or negative range");
            }
            Progress progress("spectrum", static_cast<int64_t>(dump.documents().size() * dump.layers().size()), "layer");
            const SpectrumReport report = run_spectrum(dump, o, output.temp_path().string(), csv, command_line(),
                                           [&](int64_t done, int64_t) { progress.update(done); });
            progress.finish();
            output.commit();
            const auto& rows = report.rows;
            if (o.gram)
              std::fprintf(stderr, "gram method: %lld of %lld matrices were too ill-conditioned for --gram-tolerance %g and took the exact path\n",
                           static_cast<long long>(report.gram_fallbacks), static_cast<long long>(report.matrices), o.gram_tolerance);
            std::printf("Effective rank (90%% energy; entropy rank) per layer, mean over KV heads and documents\n");
            std::printf("%-6s", "layer");
            for (const auto& k : o.kinds) std::printf("  %-22s", k.c_str());
            std::printf("\n");
            for (size_t i = 0; i < rows.size(); i += o.kinds.size()) {
              std::printf("%-6lld", static_cast<long long>(rows[i].layer));
              for (size_t k = 0; k < o.kinds.size(); ++k) {
                const auto& r = rows[i + k];
                char cell[64];
                std::snprintf(cell, sizeof(cell), "%.1f; %.1f", r.rank90, r.entropy_rank);
                std::printf("  %-22s", cell);
              }
              std::printf("\n");
            }
            std::fprintf(stderr, "wrote %s and %s\n", out.c_str(), csv.c_str());
            return 0;
          }};
}

}  // namespace kvscope::tools
