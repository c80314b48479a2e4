#pragma once
// kvscope train: a Llama-architecture model trained from scratch on text files, written as a
// Hugging Face directory (config.json, model.safetensors, tokenizer.model) that every other
// kvscope command loads like any checkpoint.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace kvscope {

struct TrainOptions {
  std::vector<std::string> train_files, eval_files;
  std::string out_dir;
  // Tokenizer (SentencePiece BPE with byte fallback, trained by Debian's spm_train).
  int64_t vocab_size = 4096;
  // Architecture.
  int64_t hidden = 256, layers = 4, heads = 8, kv_heads = 2, intermediate = 688, context = 2048;
  double rope_theta = 10000.0;
  // Optimisation.
  int64_t seq_len = 512, batch = 16, steps = 2000, warmup = 100;
  double lr = 2e-3, min_lr_ratio = 0.1, weight_decay = 0.1, beta1 = 0.9, beta2 = 0.95, clip = 1.0;
  int64_t eval_every = 100, eval_tokens = 32768, checkpoint_every = 100;
  int64_t log_every = 0;  // steps between progress lines; 0 = every 10 seconds
  double time_limit_minutes = 0;  // stop (and save) after this long; 0 = no limit
  int64_t stop_at = 0;            // stop (and save) after this step, the schedule still spanning `steps`; 0 = at `steps`
  uint64_t seed = 1234;
  std::string stored_dtype = "bfloat16";  // of the final model.safetensors
  std::string device = "cpu";             // where training runs (float32); checkpoints and outputs are the same either way
  bool resume = false;
};

struct TrainReport {
  int64_t step = 0, tokens = 0;
  double train_loss = 0;
  std::vector<std::pair<std::string, double>> eval_ppl;       // per eval file
  std::vector<std::pair<std::string, double>> unigram_ppl;    // add-one unigram baseline from training counts
};

// progress(step, total steps, loss, tokens/s)
TrainReport train_model(const TrainOptions& options, const std::function<void(const std::string&)>& log);

}  // namespace kvscope
