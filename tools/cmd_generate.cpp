#include <cmath>
#include <cstdio>
#include <random>

#include "commands.h"
#include "io/input_file.h"
#include "common.h"
#include "model_runtime.h"
#include "core/error.h"
#include "model/kv_cache.h"
#include "model/sampling.h"

namespace kvscope::tools {

Command register_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Continue a prompt, greedily or by seeded sampling, with the full KV cache");
  static std::string model_dir, prompt;
  static RuntimeOptions rt;
  static InputOptions input;
  static int64_t max_new = 64;
  static SamplingOptions sampling;
  static uint64_t seed = 0;
  static bool print_ids = false, stop_at_eos = true;
  cmd->add_option("MODEL_DIR", model_dir, "Hugging Face model directory")->required();
  auto* p = cmd->add_option("--prompt", prompt, "prompt text (default: BOS only)");
  add_input_options(cmd, input);
  p->excludes("--text")->excludes("--ids");
  // Real ranges are checked in the runner, not by CLI11: its range checks let NaN through
  // (every comparison with NaN is false) and print the bounds as 300-digit numbers.
  cmd->add_option("-n,--max-new", max_new, "tokens to generate (at least 1)")->capture_default_str()->check(at_least(1));
  cmd->add_option("--temperature", sampling.temperature, "finite, >= 0; 0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", sampling.top_k, "sample among the k most likely (0 = all)")->capture_default_str()->check(at_least(0));
  cmd->add_option("--top-p", sampling.top_p, "nucleus sampling mass, in (0, 1]")->capture_default_str();
  cmd->add_option("--seed", seed, "sampling seed")->capture_default_str()->check(seed_value());
  cmd->add_flag("--print-ids", print_ids, "also print the generated token ids");
  cmd->add_flag("!--no-stop", stop_at_eos, "keep generating past the EOS token");
  add_runtime_options(cmd, rt);
  return {cmd, [] {
            if (!std::isfinite(sampling.temperature) || sampling.temperature < 0)
              fail("--temperature ", sampling.temperature, ": expected a finite number >= 0 (0 = greedy)");
            if (!(sampling.top_p > 0 && sampling.top_p <= 1)) fail("--top-p ", sampling.top_p, ": expected a probability mass in (0, 1]");
            const LlamaModel model = load_model(model_dir, rt);
            const ModelConfig& c = model.config();
            std::vector<int64_t> ids;
            std::unique_ptr<Tokenizer> tok;
            if (!input.ids_file.empty()) {
              ids = read_input(model_dir, c, input).ids;
            } else {
              std::string text = prompt;
              if (!input.text_file.empty()) {
                text = read_text_file(input.text_file);
                check_utf8_text(text, input.text_file);
                // As score does: an empty file is a mistake, not a request to start from BOS (--prompt "" is that).
                if (text.find_first_not_of(" \t\r\n") == std::string::npos) fail(input.text_file, ": empty text (nothing to continue)");
              }
              tok = Tokenizer::load(model_dir, c);
              ids = text.empty() ? std::vector<int64_t>{} : tok->encode(text).ids;
              if (ids.empty()) {
                if (c.bos_token_id < 0) fail("empty prompt and the model has no BOS token to start from");
                if (c.bos_token_id >= c.vocab_size) {
                  fail("config.json: bos_token_id ", c.bos_token_id, " is outside the vocabulary (vocab_size ", c.vocab_size, ")");
                }
                ids = {c.bos_token_id};
              }
            }
            if (static_cast<int64_t>(ids.size()) + max_new > c.max_position_embeddings) {
              fail("prompt (", ids.size(), " tokens) + --max-new ", max_new, " exceeds the model's context of ", c.max_position_embeddings);
            }
            FullKvCache cache = model.new_cache(static_cast<int64_t>(ids.size()) + max_new);
            std::mt19937_64 rng(seed);
            at::Tensor logits = model.forward(at::tensor(ids, at::kLong), 0, cache, nullptr, Logits::Last);
            std::vector<int64_t> generated;
            int64_t pos = static_cast<int64_t>(ids.size());
            for (int64_t i = 0; i < max_new; ++i) {
              const int64_t next = choose_token(logits[0], sampling, rng);
              generated.push_back(next);
              if (stop_at_eos && next == c.eos_token_id) break;
              if (i + 1 < max_new) logits = model.forward(at::tensor(std::vector<int64_t>{next}, at::kLong), pos++, cache, nullptr, Logits::Last);
            }
            if (tok) {
              std::printf("%s\n", tok->decode(generated).c_str());
            }
            if (print_ids || !tok) {
              for (size_t i = 0; i < generated.size(); ++i) std::printf("%s%lld", i ? " " : "", static_cast<long long>(generated[i]));
              std::printf("\n");
            }
            return 0;
          }};
}

}  // namespace kvscope::tools
