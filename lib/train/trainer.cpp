#include "train/trainer.h"

#include <sys/wait.h>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/host_memory.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "model/config.h"
#include "model/device.h"
#include "model/rope.h"
#include "model/tokenizer.h"

namespace kvscope {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string config_json(const TrainOptions& o) {
  nlohmann::ordered_json j;
  j["architectures"] = {"LlamaForCausalLM"};
  j["model_type"] = "llama";
  j["vocab_size"] = o.vocab_size;
  j["hidden_size"] = o.hidden;
  j["intermediate_size"] = o.intermediate;
  j["num_hidden_layers"] = o.layers;
  j["num_attention_heads"] = o.heads;
  j["num_key_value_heads"] = o.kv_heads;
  j["head_dim"] = o.hidden / o.heads;
  j["max_position_embeddings"] = o.context;
  j["rms_norm_eps"] = 1e-5;
  j["rope_theta"] = o.rope_theta;
  j["rope_scaling"] = nullptr;
  j["hidden_act"] = "silu";
  j["tie_word_embeddings"] = true;
  j["attention_bias"] = false;
  j["bos_token_id"] = 1;
  j["eos_token_id"] = 2;
  j["torch_dtype"] = o.stored_dtype;
  return j.dump(2) + "\n";
}

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream f(p);
  f << text;
  if (!f.flush()) fail(p.string(), ": write failed");
}

// Debian's spm_train (package sentencepiece): BPE, byte fallback, identity normalisation,
// whitespace kept as is, so kvscope's reader and libsentencepiece encode identically.
void train_tokenizer(const TrainOptions& o, const fs::path& dir) {
  std::string inputs;
  for (const auto& f : o.train_files) inputs += (inputs.empty() ? "" : ",") + f;
  const std::string cmd = "spm_train --input='" + inputs + "' --model_prefix='" + (dir / "tokenizer").string() +
                          "' --vocab_size=" + std::to_string(o.vocab_size) +
                          " --model_type=bpe --byte_fallback=true --character_coverage=1.0"
                          " --normalization_rule_name=identity --remove_extra_whitespaces=false --split_digits=true"
                          " --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 --input_sentence_size=2000000"
                          " --shuffle_input_sentence=true --num_threads=2 --minloglevel=2 > '" +
                          (dir / "spm_train.log").string() + "' 2>&1";
  const int status = std::system(cmd.c_str());
  if (status != 0) {
    // Say what spm_train said: usually the vocabulary does not fit the text's characters.
    std::ifstream log_in(dir / "spm_train.log");
    std::string line, last;
    while (std::getline(log_in, line))
      if (!line.empty()) last = line;
    if (last.find("not found") != std::string::npos || WEXITSTATUS(status) == 127) {
      fail("spm_train is not installed (Debian package 'sentencepiece'; scripts/setup.sh installs it)");
    }
    fail("spm_train failed: ", last.empty() ? "no message" : last, " (log: ", (dir / "spm_train.log").string(),
         "; a --vocab below the number of distinct characters plus byte pieces cannot be trained)");
  }
  fs::remove(dir / "tokenizer.vocab");
}

struct Params {
  std::vector<std::pair<std::string, at::Tensor>> named;  // HF names, fp32, requires_grad
  at::Tensor& get(const std::string& name) {
    for (auto& [n, t] : named) if (n == name) return t;
    fail("internal: no parameter ", name);
  }
};

Params init_params(const TrainOptions& o, uint64_t seed, at::Device device) {
  std::mt19937_64 rng(seed);
  auto normal = [&](std::vector<int64_t> shape, double std) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::normal_distribution<float> g(0.0f, static_cast<float>(std));
    std::vector<float> v(n);
    for (float& x : v) x = g(rng);
    return at::tensor(v, at::kFloat).view(shape).to(device);
  };
  const int64_t D = o.hidden, hd = D / o.heads, q = o.heads * hd, kv = o.kv_heads * hd, I = o.intermediate;
  const double std = 0.02, out_std = 0.02 / std::sqrt(2.0 * o.layers);  // GPT-2 style scaled residual projections
  Params p;
  p.named.emplace_back("model.embed_tokens.weight", normal({o.vocab_size, D}, std));
  for (int64_t l = 0; l < o.layers; ++l) {
    const std::string s = "model.layers." + std::to_string(l) + ".";
    p.named.emplace_back(s + "input_layernorm.weight", at::ones({D}, at::TensorOptions().device(device)));
    p.named.emplace_back(s + "self_attn.q_proj.weight", normal({q, D}, std));
    p.named.emplace_back(s + "self_attn.k_proj.weight", normal({kv, D}, std));
    p.named.emplace_back(s + "self_attn.v_proj.weight", normal({kv, D}, std));
    p.named.emplace_back(s + "self_attn.o_proj.weight", normal({D, q}, out_std));
    p.named.emplace_back(s + "post_attention_layernorm.weight", at::ones({D}, at::TensorOptions().device(device)));
    p.named.emplace_back(s + "mlp.gate_proj.weight", normal({I, D}, std));
    p.named.emplace_back(s + "mlp.up_proj.weight", normal({I, D}, std));
    p.named.emplace_back(s + "mlp.down_proj.weight", normal({D, I}, out_std));
  }
  p.named.emplace_back("model.norm.weight", at::ones({D}, at::TensorOptions().device(device)));
  for (auto& [n, t] : p.named) t.requires_grad_(true);
  return p;
}

at::Tensor rms(const at::Tensor& x, const at::Tensor& w) { return x * at::rsqrt(x.pow(2).mean({-1}, true) + 1e-5) * w; }

// Batched causal forward for training: tokens [B, T] -> mean cross-entropy of next tokens.
at::Tensor training_loss(Params& p, const TrainOptions& o, const Rope& rope, const at::Tensor& tokens, const at::Tensor& causal) {
  const int64_t B = tokens.size(0), T = tokens.size(1) - 1, D = o.hidden, H = o.heads, KV = o.kv_heads, hd = D / H, group = H / KV;
  const at::Tensor input = tokens.narrow(1, 0, T), target = tokens.narrow(1, 1, T);
  const at::Tensor positions = at::arange(T, at::TensorOptions().dtype(at::kLong).device(tokens.device()));
  at::Tensor h = p.get("model.embed_tokens.weight").index_select(0, input.reshape({-1})).view({B, T, D});
  for (int64_t l = 0; l < o.layers; ++l) {
    const std::string s = "model.layers." + std::to_string(l) + ".";
    const at::Tensor x = rms(h, p.get(s + "input_layernorm.weight"));
    at::Tensor q = at::matmul(x, p.get(s + "self_attn.q_proj.weight").t()).view({B, T, H, hd}).transpose(1, 2);   // [B,H,T,hd]
    at::Tensor k = at::matmul(x, p.get(s + "self_attn.k_proj.weight").t()).view({B, T, KV, hd}).transpose(1, 2);  // [B,KV,T,hd]
    const at::Tensor v = at::matmul(x, p.get(s + "self_attn.v_proj.weight").t()).view({B, T, KV, hd}).transpose(1, 2);
    q = rope.apply(q.reshape({B * H, T, hd}), positions).view({B, KV, group * T, hd});
    k = rope.apply(k.reshape({B * KV, T, hd}), positions).view({B, KV, T, hd});
    at::Tensor scores = at::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(hd));  // [B,KV,group*T,T]
    scores = scores.view({B, KV, group, T, T}).masked_fill(causal, -std::numeric_limits<float>::infinity());
    const at::Tensor probs = at::softmax(scores, -1).view({B, KV, group * T, T});
    const at::Tensor att = at::matmul(probs, v).view({B, H, T, hd}).transpose(1, 2).reshape({B, T, H * hd});
    h = h + at::matmul(att, p.get(s + "self_attn.o_proj.weight").t());
    const at::Tensor y = rms(h, p.get(s + "post_attention_layernorm.weight"));
    const at::Tensor act = at::silu(at::matmul(y, p.get(s + "mlp.gate_proj.weight").t())) * at::matmul(y, p.get(s + "mlp.up_proj.weight").t());
    h = h + at::matmul(act, p.get(s + "mlp.down_proj.weight").t());
  }
  const at::Tensor logits = at::matmul(rms(h, p.get("model.norm.weight")), p.get("model.embed_tokens.weight").t());
  return at::cross_entropy_loss(logits.view({B * T, o.vocab_size}), target.reshape({-1}));
}

std::vector<int64_t> encode_files(const Tokenizer& tok, const std::vector<std::string>& files) {
  std::vector<int64_t> out;
  for (const auto& f : files) {
    const auto enc = tok.encode(read_text_file(f));
    out.insert(out.end(), enc.ids.begin(), enc.ids.end());
  }
  return out;
}

struct AdamState {
  std::vector<at::Tensor> m, v;
  int64_t step = 0;
};

void save_checkpoint(const fs::path& dir, Params& p, const AdamState& s, int64_t step, int64_t tokens, uint64_t rng_draws) {
  std::vector<std::pair<std::string, at::Tensor>> all;
  for (size_t i = 0; i < p.named.size(); ++i) {
    all.emplace_back(p.named[i].first, p.named[i].second.detach().to(at::kCPU));
    all.emplace_back("adam.m." + p.named[i].first, s.m[i].to(at::kCPU));
    all.emplace_back("adam.v." + p.named[i].first, s.v[i].to(at::kCPU));
  }
  write_safetensors(dir / "checkpoint.safetensors", all,
                    {{"step", std::to_string(step)}, {"tokens", std::to_string(tokens)}, {"adam_step", std::to_string(s.step)},
                     {"rng_draws", std::to_string(rng_draws)}});
}

// Refuses, before anything is written, a shape whose training state cannot fit in memory: a
// typo such as --hidden 1000000 would otherwise end in an allocation failure minutes in, or
// in the kernel's OOM killer. Counted in float32: weights, gradients and AdamW's two moments
// (4 copies), plus the activations kept for the backward pass, about (12 D + 3 I) per token
// and layer and the logits (V) per token, and the attention matrices (heads x seq_len) per
// token and layer.
void check_training_fits(const TrainOptions& o) {
  const double D = static_cast<double>(o.hidden), I = static_cast<double>(o.intermediate), V = static_cast<double>(o.vocab_size);
  const double L = static_cast<double>(o.layers), hd = D / static_cast<double>(o.heads);
  const double per_layer = 2 * D * D + 2 * static_cast<double>(o.kv_heads) * hd * D + 3 * D * I + 2 * D;
  const double params = 2 * V * D + L * per_layer + D;
  const double tokens = static_cast<double>(o.batch) * static_cast<double>(o.seq_len);
  const double activations = tokens * (L * (12 * D + 3 * I + static_cast<double>(o.heads) * static_cast<double>(o.seq_len)) + 2 * V);
  const double bytes = 4 * (4 * params + activations);
  const int64_t available = available_host_bytes();
  if (available > 0 && bytes > static_cast<double>(available)) {
    fail("training this shape needs about ", static_cast<int64_t>(bytes / (1 << 20)), " MiB (", static_cast<int64_t>(params),
         " parameters; --batch x --seq-len = ", static_cast<int64_t>(tokens), " tokens per step) but ", available / (1 << 20),
         " MiB are available; lower --hidden, --mlp, --layers, --vocab, --batch or --seq-len");
  }
}

}  // namespace

TrainReport train_model(const TrainOptions& o, const std::function<void(const std::string&)>& log) {
  if (o.train_files.empty()) fail("no training text given");
  for (const auto& f : o.train_files) {
    std::error_code ec;
    const auto size = fs::file_size(f, ec);
    if (ec) fail(f, ": cannot read");
    if (size == 0) fail(f, ": empty training text");
  }
  if (o.hidden % o.heads || o.heads % o.kv_heads) fail("--hidden must divide by --heads, and --heads by --kv-heads");
  if (o.seq_len + 1 > o.context) fail("--seq-len must be below --context");
  if (o.stop_at > o.steps) fail("--stop-at ", o.stop_at, " is past --steps ", o.steps);
  const at::Device device = parse_device(o.device);
  // The estimate is of host memory; on a GPU an allocation that does not fit fails at the first step.
  if (device.is_cpu()) check_training_fits(o);
  const fs::path dir(o.out_dir);
  fs::create_directories(dir);
  const auto start = Clock::now();

  if (!o.resume || !fs::exists(dir / "tokenizer.model")) {
    log("training the tokenizer (spm_train, BPE, " + std::to_string(o.vocab_size) + " pieces)");
    train_tokenizer(o, dir);
  }
  write_file(dir / "config.json", config_json(o));
  write_file(dir / "tokenizer_config.json",
             "{\n  \"tokenizer_class\": \"LlamaTokenizer\",\n  \"bos_token\": \"<s>\",\n  \"eos_token\": \"</s>\",\n"
             "  \"unk_token\": \"<unk>\",\n  \"add_bos_token\": true,\n  \"add_eos_token\": false\n}\n");
  write_file(dir / "generation_config.json", "{\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2\n}\n");
  const ModelConfig config = parse_model_config(config_json(o), "config.json");
  const auto tok = Tokenizer::load(dir, config);
  const std::vector<int64_t> train = encode_files(*tok, o.train_files);
  std::vector<std::vector<int64_t>> evals;
  for (const auto& f : o.eval_files) evals.push_back(encode_files(*tok, {f}));
  log("corpus: " + std::to_string(train.size()) + " training tokens");
  if (static_cast<int64_t>(train.size()) < o.seq_len + 2) fail("training text has fewer tokens than one sequence");

  TrainReport report;
  // Add-one unigram baseline from the training counts, the floor any model must beat.
  {
    std::vector<double> counts(o.vocab_size, 1.0);
    for (int64_t t : train) counts[t] += 1.0;
    const double total = static_cast<double>(train.size() + o.vocab_size);
    for (size_t e = 0; e < evals.size(); ++e) {
      double nll = 0;
      for (size_t i = 1; i < evals[e].size(); ++i) nll -= std::log(counts[evals[e][i]] / total);
      report.unigram_ppl.emplace_back(o.eval_files[e], std::exp(nll / std::max<size_t>(1, evals[e].size() - 1)));
    }
  }

  const Rope rope(config, device);
  Params params = init_params(o, o.seed, device);
  AdamState adam;
  for (auto& [n, t] : params.named) {
    adam.m.push_back(at::zeros_like(t.detach()));
    adam.v.push_back(at::zeros_like(t.detach()));
  }
  int64_t step = 0, tokens_seen = 0;
  uint64_t rng_draws = 0;
  if (o.resume && fs::exists(dir / "checkpoint.safetensors")) {
    const auto ck = SafetensorsArchive::open(dir / "checkpoint.safetensors");
    auto load = [&](const std::string& name, at::Tensor& into) {
      const TensorView view = ck.get(name);
      at::NoGradGuard guard;
      into.copy_(at::from_blob(const_cast<std::byte*>(view.data), into.sizes(), at::kFloat));
    };
    for (size_t i = 0; i < params.named.size(); ++i) {
      load(params.named[i].first, params.named[i].second);
      load("adam.m." + params.named[i].first, adam.m[i]);
      load("adam.v." + params.named[i].first, adam.v[i]);
    }
    step = std::stoll(ck.metadata().at("step"));
    tokens_seen = std::stoll(ck.metadata().at("tokens"));
    adam.step = std::stoll(ck.metadata().at("adam_step"));
    rng_draws = std::stoull(ck.metadata().at("rng_draws"));
    log("resumed from step " + std::to_string(step));
    if (o.stop_at > 0 && step >= o.stop_at) fail("--stop-at ", o.stop_at, ": the checkpoint is already at step ", step);
  }
  std::mt19937_64 rng(o.seed + 1);
  rng.discard(rng_draws);
  const int64_t T = o.seq_len;
  const at::Tensor causal = at::ones({T, T}, at::TensorOptions().dtype(at::kBool).device(device)).triu(1).view({1, 1, 1, T, T});

  auto evaluate = [&]() {
    at::NoGradGuard guard;
    std::vector<std::pair<std::string, double>> out;
    for (size_t e = 0; e < evals.size(); ++e) {
      const auto& ids = evals[e];
      double nll = 0;
      int64_t n = 0;
      for (int64_t s = 0; s + T + 1 <= static_cast<int64_t>(ids.size()) && n < o.eval_tokens; s += T) {
        const at::Tensor batch = at::tensor(std::vector<int64_t>(ids.begin() + s, ids.begin() + s + T + 1), at::kLong).view({1, T + 1}).to(device);
        nll += training_loss(params, o, rope, batch, causal).item<double>() * T;
        n += T;
      }
      out.emplace_back(o.eval_files[e], n ? std::exp(nll / n) : std::nan(""));
    }
    return out;
  };

  auto lr_at = [&](int64_t s) {
    if (s < o.warmup) return o.lr * static_cast<double>(s + 1) / static_cast<double>(o.warmup);
    const double progress = std::min(1.0, static_cast<double>(s - o.warmup) / std::max<int64_t>(1, o.steps - o.warmup));
    return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + std::cos(M_PI * progress)));
  };

  double smoothed = 0;
  auto last_log = Clock::now();
  const auto run_start = Clock::now();
  const int64_t start_tokens = tokens_seen;
  while (step < o.steps) {
    std::vector<int64_t> batch;
    for (int64_t b = 0; b < o.batch; ++b) {
      const int64_t at_pos = static_cast<int64_t>(rng() % static_cast<uint64_t>(train.size() - T - 1));
      ++rng_draws;
      batch.insert(batch.end(), train.begin() + at_pos, train.begin() + at_pos + T + 1);
    }
    const at::Tensor loss = training_loss(params, o, rope, at::tensor(batch, at::kLong).view({o.batch, T + 1}).to(device), causal);
    loss.backward();
    {
      at::NoGradGuard guard;
      double norm_sq = 0;
      for (auto& [n, t] : params.named) norm_sq += t.grad().pow(2).sum().item<double>();
      const double norm = std::sqrt(norm_sq), scale = norm > o.clip ? o.clip / norm : 1.0;
      const double lr = lr_at(step);
      ++adam.step;
      const double c1 = 1 - std::pow(o.beta1, adam.step), c2 = 1 - std::pow(o.beta2, adam.step);
      for (size_t i = 0; i < params.named.size(); ++i) {
        at::Tensor& p = params.named[i].second;
        const at::Tensor g = p.grad() * scale;
        adam.m[i].mul_(o.beta1).add_(g, 1 - o.beta1);
        adam.v[i].mul_(o.beta2).addcmul_(g, g, 1 - o.beta2);
        // Decoupled weight decay on matrices only (not norms).
        if (p.dim() > 1) p.mul_(1 - lr * o.weight_decay);
        p.addcdiv_(adam.m[i] / c1, (adam.v[i] / c2).sqrt_().add_(1e-8), -lr);
        p.mutable_grad().zero_();
      }
    }
    ++step;
    tokens_seen += o.batch * T;
    const double l = loss.item<double>();
    smoothed = tokens_seen - start_tokens == o.batch * T ? l : 0.95 * smoothed + 0.05 * l;  // first step of this run
    const double elapsed = std::chrono::duration<double>(Clock::now() - run_start).count();
    const double tps = (tokens_seen - start_tokens) / std::max(elapsed, 1e-9);
    const bool out_of_time = (o.time_limit_minutes > 0 &&
                              std::chrono::duration<double>(Clock::now() - start).count() > o.time_limit_minutes * 60.0) ||
                             step == o.stop_at;
    const bool due = o.log_every > 0 ? step % o.log_every == 0 : std::chrono::duration<double>(Clock::now() - last_log).count() > 10.0;
    if (due || step == 1) {
      char buf[256];
      std::snprintf(buf, sizeof(buf), "step %lld/%lld loss %.4f (smoothed %.4f) lr %.2e %.0f tok/s ETA %.0f min",
                    static_cast<long long>(step), static_cast<long long>(o.steps), l, smoothed, lr_at(step - 1), tps,
                    (o.steps - step) * o.batch * T / std::max(tps, 1e-9) / 60.0);
      log(buf);
      last_log = Clock::now();
    }
    if (step % o.eval_every == 0 || step == o.steps || out_of_time) {
      std::string line = "eval at step " + std::to_string(step) + ":";
      for (const auto& [f, ppl] : evaluate()) line += " " + fs::path(f).filename().string() + " ppl " + std::to_string(ppl);
      log(line);
    }
    if (step % o.checkpoint_every == 0 || step == o.steps || out_of_time) save_checkpoint(dir, params, adam, step, tokens_seen, rng_draws);
    if (out_of_time) {
      log((step == o.stop_at ? "stopped at step " : "time limit reached at step ") + std::to_string(step));
      break;
    }
  }

  // The model itself, in the stored dtype.
  std::vector<std::pair<std::string, at::Tensor>> out;
  const at::ScalarType dt = o.stored_dtype == "float32" ? at::kFloat : o.stored_dtype == "float16" ? at::kHalf : at::kBFloat16;
  for (auto& [n, t] : params.named) out.emplace_back(n, t.detach().to(at::kCPU, dt));
  write_safetensors(dir / "model.safetensors", out, {{"format", "pt"}});
  report.step = step;
  report.tokens = tokens_seen;
  report.train_loss = smoothed;
  report.eval_ppl = evaluate();
  return report;
}

}  // namespace kvscope
