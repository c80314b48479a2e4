#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "dump_info.h"
#include "common.h"
#include "model_runtime.h"
#include "core/error.h"
#include "dump/dump_reader.h"
#include "io/safetensors.h"
#include "model/device.h"
#include "model/kv_cache.h"
#include "model/tokenizer.h"

namespace kvscope::tools {
namespace {

int print_model_info(const std::string& dir, const RuntimeOptions& rt) {
  const LlamaModel model = load_model(dir, rt);
  const ModelConfig& c = model.config();
  std::printf("model          %s\n", dir.c_str());
  std::printf("architecture   %s\n", c.model_type.c_str());
  std::printf("parameters     %lld (%.2f M)\n", static_cast<long long>(c.parameter_count()), c.parameter_count() / 1e6);
  std::printf("stored dtype   %s; compute dtype %s on %s\n", dtype_name(model.weights().stored_dtype).c_str(),
              dtype_name(model.dtype()).c_str(), model.device().str().c_str());
  std::printf("layers         %lld\n", static_cast<long long>(c.num_layers));
  std::printf("hidden         %lld (mlp %lld)\n", static_cast<long long>(c.hidden_size), static_cast<long long>(c.intermediate_size));
  std::printf("heads          %lld query, %lld kv (%s), head_dim %lld\n", static_cast<long long>(c.num_heads),
              static_cast<long long>(c.num_kv_heads), c.num_heads == c.num_kv_heads ? "MHA" : "GQA",
              static_cast<long long>(c.head_dim));
  std::printf("context        %lld positions\n", static_cast<long long>(c.max_position_embeddings));
  std::printf("rope           theta %g, scaling %s (factor %g", c.rope.theta, rope_scaling_name(c.rope.scaling), c.rope.factor);
  if (c.rope.scaling == RopeScaling::Yarn) std::printf(", attention factor %g", c.rope.attention_factor);
  std::printf(")\n");
  if (c.sliding_window) {
    const auto sliding = std::count_if(c.layer_window.begin(), c.layer_window.end(), [](int64_t w) { return w > 0; });
    std::printf("sliding window %lld tokens on %lld of %lld layers\n", static_cast<long long>(*c.sliding_window),
                static_cast<long long>(sliding), static_cast<long long>(c.num_layers));
  }
  if (!c.declared_dtype.empty()) std::printf("declared dtype %s\n", c.declared_dtype.c_str());
  std::printf("vocab          %lld; embeddings %s; qkv bias %s\n", static_cast<long long>(c.vocab_size),
              c.tie_word_embeddings ? "tied" : "untied", c.attention_bias ? "yes" : "no");
  const double kv_bytes_per_token = 2.0 * c.num_layers * c.num_kv_heads * c.head_dim * at::elementSize(model.dtype());
  std::printf("kv cache       %.1f KiB per token\n", kv_bytes_per_token / 1024.0);
  try {
    const auto tok = Tokenizer::load(dir, c);
    std::printf("tokenizer      %s\n", tok->description().c_str());
  } catch (const Error& e) {
    std::printf("tokenizer      none usable (%s)\n", e.what());
  }
  return 0;
}

// A directory holding only tokenizer files.
int print_tokenizer_info(const std::string& dir) {
  const auto tok = Tokenizer::load(dir);
  std::printf("tokenizer      %s\n", tok->description().c_str());
  std::printf("vocabulary     %lld ids\n", static_cast<long long>(tok->vocab_size()));
  return 0;
}

}  // namespace

Command register_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Summarise a model directory (architecture, parameters, heads, context, tokenizer) or a kvscope .h5 file");
  static std::string path;
  static RuntimeOptions rt;
  cmd->add_option("PATH", path, "Hugging Face model directory, or a dump written by kvscope dump")->required();
  add_runtime_options(cmd, rt);
  return {cmd, [] {
            std::error_code ec;
            if (!std::filesystem::exists(path, ec)) fail(path, ": no such file or directory");
            if (std::filesystem::is_regular_file(path, ec)) return print_dump_info(path);
            if (!std::filesystem::exists(std::filesystem::path(path) / "config.json", ec)) return print_tokenizer_info(path);
            return print_model_info(path, rt);
          }};
}

}  // namespace kvscope::tools
