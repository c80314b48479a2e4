#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>

#include "commands.h"
#include "model/device.h"
#include "common.h"
#include "core/error.h"
#include "core/threads.h"
#include "train/trainer.h"

namespace kvscope::tools {

Command register_train(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train a Llama-architecture model (and its SentencePiece tokenizer) from scratch on text files");
  static TrainOptions o;
  static int threads = 0, blas_threads = 0;
  static bool force = false;
  cmd->add_option("--train", o.train_files, "training text files")->required()->check(CLI::ExistingFile);
  cmd->add_option("--eval", o.eval_files, "held-out text files, evaluated periodically")->check(CLI::ExistingFile);
  cmd->add_option("-o,--out", o.out_dir, "output model directory (Hugging Face layout)")->required();
  cmd->add_option("--vocab", o.vocab_size, "tokenizer pieces")->capture_default_str()->check(at_least(8));
  cmd->add_option("--hidden", o.hidden, "hidden size")->capture_default_str()->check(at_least(2));
  cmd->add_option("--layers", o.layers, "layers")->capture_default_str()->check(at_least(1));
  cmd->add_option("--heads", o.heads, "query heads")->capture_default_str()->check(at_least(1));
  cmd->add_option("--kv-heads", o.kv_heads, "KV heads (GQA when fewer than --heads)")->capture_default_str()->check(at_least(1));
  cmd->add_option("--mlp", o.intermediate, "MLP width")->capture_default_str()->check(at_least(1));
  cmd->add_option("--context", o.context, "max_position_embeddings written to config.json")->capture_default_str()->check(at_least(2));
  cmd->add_option("--seq-len", o.seq_len, "training sequence length")->capture_default_str()->check(at_least(2));
  cmd->add_option("--batch", o.batch, "sequences per step")->capture_default_str()->check(at_least(1));
  cmd->add_option("--steps", o.steps, "optimisation steps")->capture_default_str()->check(at_least(1));
  cmd->add_option("--warmup", o.warmup, "linear warm-up steps, then cosine decay")->capture_default_str()->check(at_least(0));
  cmd->add_option("--lr", o.lr, "peak learning rate (AdamW)")->capture_default_str()->check(finite_in(0, false, 1e9));
  cmd->add_option("--min-lr-ratio", o.min_lr_ratio, "final learning rate as a fraction of the peak")->capture_default_str()->check(finite_in(0, true, 1));
  cmd->add_option("--weight-decay", o.weight_decay, "decoupled weight decay on matrices")->capture_default_str()->check(finite_in(0, true, 1e9));
  cmd->add_option("--clip", o.clip, "gradient-norm clipping")->capture_default_str()->check(finite_in(0, false, 1e30));
  cmd->add_option("--eval-every", o.eval_every, "steps between held-out evaluations")->capture_default_str()->check(at_least(1));
  cmd->add_option("--eval-tokens", o.eval_tokens, "tokens per held-out file per evaluation")->capture_default_str()->check(at_least(2));
  cmd->add_option("--log-every", o.log_every, "steps between progress lines (0 = every 10 s)")->check(at_least(0));
  cmd->add_option("--checkpoint-every", o.checkpoint_every, "steps between checkpoints")->capture_default_str()->check(at_least(1));
  cmd->add_option("--stop-at", o.stop_at,
                  "stop after this step, saving everything, while the learning-rate schedule still spans --steps "
                  "(a stage of a longer run; continue it with --resume; 0 = run to --steps)")
      ->check(at_least(0));
  cmd->add_option("--time-limit", o.time_limit_minutes, "stop after this many minutes, saving everything (0 = none)")->check(finite_in(0, true, 1e9));
  cmd->add_option("--seed", o.seed, "initialisation and data-order seed")->capture_default_str()->check(seed_value());
  cmd->add_option("--store-dtype", o.stored_dtype, "dtype of model.safetensors")->capture_default_str()
      ->check(CLI::IsMember({"bfloat16", "float16", "float32"}));
  cmd->add_option("--device", o.device, "cpu, cuda or cuda:N; training runs in float32 there, checkpoints and outputs are the same")
      ->capture_default_str()
      ->check(non_empty());
  cmd->add_flag("--resume", o.resume, "continue from OUT/checkpoint.safetensors");
  cmd->add_flag("--force", force, "write into an existing directory without --resume");
  cmd->add_option("--threads", threads, "LibTorch threads (0 = default)")->check(thread_count());
  cmd->add_option("--blas-threads", blas_threads, "OpenBLAS threads (0 = default)")->check(thread_count());
  return {cmd, [] {
            std::error_code ec;
            if (std::filesystem::exists(std::filesystem::path(o.out_dir) / "config.json", ec) && !o.resume && !force) {
              fail(o.out_dir, ": already holds a model; pass --resume to continue it or --force to start over");
            }
            configure_threads(threads, blas_threads);
            parse_device(o.device);  // refused before anything is written
            std::filesystem::create_directories(o.out_dir);
            std::ofstream train_log(std::filesystem::path(o.out_dir) / "training_log.txt", std::ios::app);
            train_log << "# " << command_line() << "\n";
            const TrainReport r = train_model(o, [&](const std::string& line) {
              std::fprintf(stderr, "train: %s\n", line.c_str());
              train_log << line << "\n";
              train_log.flush();
            });
            std::printf("trained %lld steps, %lld tokens; final smoothed training loss %.4f\n", static_cast<long long>(r.step),
                        static_cast<long long>(r.tokens), r.train_loss);
            for (size_t i = 0; i < r.eval_ppl.size(); ++i) {
              std::printf("held-out %-40s ppl %10.2f   unigram baseline %10.2f\n", r.eval_ppl[i].first.c_str(), r.eval_ppl[i].second,
                          r.unigram_ppl[i].second);
              train_log << "final held-out " << r.eval_ppl[i].first << " ppl " << r.eval_ppl[i].second << " unigram " << r.unigram_ppl[i].second << "\n";
            }
            return 0;
          }};
}

}  // namespace kvscope::tools
