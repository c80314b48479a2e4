#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "common.h"
#include "model_runtime.h"
#include "core/error.h"

namespace kvscope::tools {

Command register_random_model(CLI::App& app) {
  auto* cmd = app.add_subcommand("random-model", "Write a Llama model with seeded random weights (HF layout) for tests and benchmarks");
  static std::string out_dir, spec;
  static bool force = false;
  cmd->add_option("OUT_DIR", out_dir, "directory to create (config.json, model.safetensors)")->required();
  cmd->add_option("--spec", spec, kRandomSpecHelp)->check(non_empty());
  cmd->add_flag("--force", force, "write into an existing directory");
  return {cmd, [] {
            std::error_code ec;
            if (std::filesystem::exists(out_dir, ec) && !force) fail(out_dir, ": already exists; pass --force to overwrite");
            const RandomModelSpec s = parse_random_model_spec(spec, "--spec");
            write_random_model(out_dir, s);
            std::printf("wrote %s (%lld layers, hidden %lld, %lld/%lld heads, vocab %lld)\n", out_dir.c_str(),
                        static_cast<long long>(s.num_layers), static_cast<long long>(s.hidden_size),
                        static_cast<long long>(s.num_heads), static_cast<long long>(s.num_kv_heads),
                        static_cast<long long>(s.vocab_size));
            return 0;
          }};
}

}  // namespace kvscope::tools
