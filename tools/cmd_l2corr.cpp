#include <cstdio>

#include "analysis/l2corr.h"
#include "commands.h"
#include "common.h"
#include "core/error.h"
#include "core/progress.h"
#include "dump/dump_reader.h"
#include "io/atomic_output.h"

namespace kvscope::tools {

Command register_l2corr(CLI::App& app) {
  auto* cmd = app.add_subcommand("l2corr", "Key L2 norm vs attention: Spearman/Pearson, ALR and attention-loss curves from a dump");
  static std::string dump_path, out;
  static bool include_self = false, force = false;
  static uint64_t seed = 0;
  static int steps = 100;
  cmd->add_option("DUMP", dump_path, "a file written by kvscope dump (with attention summaries)")->required();
  cmd->add_option("-o,--out", out, "output .h5 (a CSV is written beside it)")->required();
  cmd->add_flag("--include-self", include_self, "count a key's own query in its mean attention (default: later queries only)");
  cmd->add_option("--seed", seed, "seed of the random-eviction curve")->capture_default_str()->check(seed_value());
  cmd->add_option("--ratio-steps", steps, "compression ratios 0, 1/N, ..., (N-1)/N")->capture_default_str()->check(CLI::Range(2, 10000));
  cmd->add_flag("--force", force, "overwrite existing outputs");
  return {cmd, [] {
            AtomicOutput output(out, force);
            const std::string csv = sidecar_path(out, ".csv", force);
            for (const std::string& o : {out, csv}) refuse_output_over_inputs(o, {dump_path});
            const DumpReader dump = DumpReader::open(dump_path, read_timeout_seconds());
            Progress progress("l2corr", static_cast<int64_t>(dump.documents().size() * dump.layers().size()), "layer");
            const auto rows = run_l2corr(dump, L2CorrOptions{include_self, seed, steps}, output.temp_path().string(), csv,
                                         command_line(), [&](int64_t done, int64_t) { progress.update(done); });
            progress.finish();
            output.commit();
            std::printf("Key norm vs attention per layer (mean over query heads and documents; negative = low norm, high attention)\n");
            std::printf("%-6s  %9s  %9s  %9s\n", "layer", "spearman", "pearson", "ALR");
            for (const auto& r : rows) {
              std::printf("%-6lld  %9.3f  %9.3f  %9.4f\n", static_cast<long long>(r.layer), r.spearman, r.pearson, r.alr);
            }
            std::fprintf(stderr, "wrote %s and %s\n", out.c_str(), csv.c_str());
            return 0;
          }};
}

}  // namespace kvscope::tools
