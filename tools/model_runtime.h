#pragma once
// Options and loading for the commands that run a model (LibTorch): the analysis-only
// commands, built into the fast-starting kvscope launcher too, must not include this.
#include <CLI/CLI.hpp>

#include <string>

#include "model/llama.h"
#include "model/random_model.h"

namespace kvscope::tools {

struct RuntimeOptions {
  std::string device = "cpu";
  std::string dtype = "float32";
  int threads = 0;       // LibTorch intra-op threads; 0 = measured default
  int blas_threads = 0;  // OpenBLAS threads; 0 = measured default
};

void add_runtime_options(CLI::App* cmd, RuntimeOptions& o);
LlamaModel load_model(const std::string& model_dir, const RuntimeOptions& o);

// "layers=8,hidden=512,..." over a 30M-parameter default (8 layers, hidden 512, mlp 1376,
// 8 heads / 2 KV heads, vocab 32000, context 4096).
RandomModelSpec parse_random_model_spec(const std::string& text, const std::string& option);
inline const char* kRandomSpecHelp =
    "key=value list over layers, hidden, mlp, heads, kv_heads, vocab, context, seed "
    "(default layers=8,hidden=512,mlp=1376,heads=8,kv_heads=2,vocab=32000,context=4096)";

}  // namespace kvscope::tools
