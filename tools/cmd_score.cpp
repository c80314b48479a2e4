#include <chrono>
#include <cstdio>

#include "commands.h"
#include "common.h"
#include "model_runtime.h"
#include "core/error.h"
#include "core/progress.h"
#include "eval/score.h"

namespace kvscope::tools {

Command register_score(CLI::App& app) {
  auto* cmd = app.add_subcommand("score", "Per-token NLL and perplexity of a text with the full KV cache");
  static std::string model_dir;
  static RuntimeOptions rt;
  static InputOptions input;
  static int64_t chunk = 512;
  static bool decode = false, per_token = false;
  cmd->add_option("MODEL_DIR", model_dir, "Hugging Face model directory")->required();
  add_input_options(cmd, input);
  cmd->add_option("--chunk", chunk, "tokens per prefill chunk")->capture_default_str()->check(at_least(1));
  cmd->add_flag("--decode", decode, "decode token by token (same result as chunked prefill, slower)");
  cmd->add_flag("--per-token", per_token, "print one line per scored token: index, id, piece, NLL");
  add_runtime_options(cmd, rt);
  return {cmd, [] {
            const LlamaModel model = load_model(model_dir, rt);
            const TokenInput in = read_input(model_dir, model.config(), input);
            Progress progress("score", static_cast<int64_t>(in.ids.size()));
            ScoreOptions opts;
            opts.chunk = decode ? 1 : chunk;
            opts.progress = [&](int64_t done, int64_t) { progress.update(done); };
            const ScoreResult r = score_tokens(model, in.ids, opts);
            progress.finish();
            const double seconds = progress.elapsed_seconds();
            if (per_token) {
              std::printf("# index\ttoken_id\tpiece\tnll\n");
              for (size_t i = 0; i < r.nll.size(); ++i) {
                const std::string piece = in.pieces.empty() ? "" : in.pieces[i + 1];
                std::printf("%zu\t%lld\t%s\t%.6f\n", i + 1, static_cast<long long>(in.ids[i + 1]), piece.c_str(), r.nll[i]);
              }
            }
            std::printf("tokens %zu  scored %zu  mean_nll %.6f  ppl %.4f  mode %s  %.1f tok/s\n", in.ids.size(),
                        r.nll.size(), r.mean_nll(), r.perplexity(), decode ? "decode" : "prefill",
                        in.ids.size() / std::max(seconds, 1e-9));
            return 0;
          }};
}

}  // namespace kvscope::tools
