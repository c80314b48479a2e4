#include "model/random_model.h"

#include <filesystem>
#include <fstream>
#include <random>

#include "core/error.h"
#include "core/host_memory.h"
#include "io/atomic_output.h"
#include "io/safetensors_writer.h"
#include "model/config.h"

namespace kvscope {

std::string random_model_config_json(const RandomModelSpec& s) {
  return concat("{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"", s.model_type,
                "\",\n  \"vocab_size\": ", s.vocab_size, ",\n  \"hidden_size\": ", s.hidden_size,
                ",\n  \"intermediate_size\": ", s.intermediate_size, ",\n  \"num_hidden_layers\": ", s.num_layers,
                ",\n  \"num_attention_heads\": ", s.num_heads, ",\n  \"num_key_value_heads\": ", s.num_kv_heads,
                ",\n  \"max_position_embeddings\": ", s.max_position_embeddings,
                ",\n  \"rms_norm_eps\": 1e-05,\n  \"rope_theta\": ", s.rope_theta,
                ",\n  \"rope_scaling\": ", s.rope_scaling_json,
                ",\n  \"attention_bias\": ", s.attention_bias ? "true" : "false",
                ",\n  \"tie_word_embeddings\": ", s.tie_word_embeddings ? "true" : "false",
                ",\n  \"hidden_act\": \"silu\",\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2\n}\n");
}

std::vector<std::pair<std::string, at::Tensor>> random_model_tensors(const RandomModelSpec& s) {
  std::mt19937_64 rng(s.seed);
  auto make = [&](std::vector<int64_t> shape, double scale, double offset = 0.0) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> data(n);
    for (float& x : data) x = static_cast<float>(offset + scale * normal(rng));
    return at::tensor(data, at::TensorOptions().dtype(at::kFloat)).view(shape).clone();
  };
  const int64_t D = s.hidden_size, hd = D / s.num_heads, q = s.num_heads * hd, kv = s.num_kv_heads * hd;
  const int64_t I = s.intermediate_size, V = s.vocab_size;
  const double wd = 1.0 / std::sqrt(static_cast<double>(D));
  std::vector<std::pair<std::string, at::Tensor>> t;
  t.emplace_back("model.embed_tokens.weight", make({V, D}, 1.0));
  for (int64_t i = 0; i < s.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    t.emplace_back(p + "input_layernorm.weight", make({D}, 0.1, 1.0));
    t.emplace_back(p + "post_attention_layernorm.weight", make({D}, 0.1, 1.0));
    // Larger q/k scale gives peaked attention, which exercises softmax more than uniform rows.
    t.emplace_back(p + "self_attn.q_proj.weight", make({q, D}, 2.0 * wd));
    t.emplace_back(p + "self_attn.k_proj.weight", make({kv, D}, 2.0 * wd));
    t.emplace_back(p + "self_attn.v_proj.weight", make({kv, D}, wd));
    t.emplace_back(p + "self_attn.o_proj.weight", make({D, q}, wd));
    if (s.attention_bias) {
      t.emplace_back(p + "self_attn.q_proj.bias", make({q}, 0.5));
      t.emplace_back(p + "self_attn.k_proj.bias", make({kv}, 0.5));
      t.emplace_back(p + "self_attn.v_proj.bias", make({kv}, 0.5));
    }
    t.emplace_back(p + "mlp.gate_proj.weight", make({I, D}, wd));
    t.emplace_back(p + "mlp.up_proj.weight", make({I, D}, wd));
    t.emplace_back(p + "mlp.down_proj.weight", make({D, I}, 1.0 / std::sqrt(static_cast<double>(I))));
  }
  t.emplace_back("model.norm.weight", make({D}, 0.1, 1.0));
  if (!s.tie_word_embeddings) t.emplace_back("lm_head.weight", make({V, D}, wd));
  return t;
}

namespace {

// Free bytes on the file system that will hold `dir` (its nearest existing ancestor).
int64_t free_disk_bytes(std::filesystem::path dir) {
  std::error_code ec;
  dir = std::filesystem::absolute(dir, ec);
  while (!dir.empty() && !std::filesystem::exists(dir, ec)) dir = dir.parent_path();
  const std::filesystem::space_info space = std::filesystem::space(dir.empty() ? "." : dir, ec);
  return ec ? -1 : static_cast<int64_t>(space.available);
}

}  // namespace

void check_random_model_spec(const RandomModelSpec& s, const std::string& dir) {
  // The loader's own checks, so that what is written can be read back.
  (void)parse_model_config(random_model_config_json(s), "--spec");
  const double D = static_cast<double>(s.hidden_size), hd = D / static_cast<double>(s.num_heads);
  const double q = static_cast<double>(s.num_heads) * hd, kv = static_cast<double>(s.num_kv_heads) * hd;
  const double I = static_cast<double>(s.intermediate_size), V = static_cast<double>(s.vocab_size);
  const double per_layer = 2 * D + 2 * q * D + 2 * kv * D + 3 * I * D + (s.attention_bias ? q + 2 * kv : 0);
  const double params = V * D + static_cast<double>(s.num_layers) * per_layer + D + (s.tie_word_embeddings ? 0 : V * D);
  const double bytes = 4 * params;  // float32
  const int64_t disk = free_disk_bytes(dir), memory = available_host_bytes();
  // The tensors are generated in memory before they are written: about twice their size at the peak.
  if (memory >= 0 && 2 * bytes > static_cast<double>(memory)) {
    fail("--spec: ", params / 1e6, " M parameters need about ", 2 * bytes / (1 << 30), " GiB of memory to generate; ",
         static_cast<double>(memory) / (1 << 30), " GiB is available");
  }
  if (disk >= 0 && bytes > static_cast<double>(disk)) {
    fail("--spec: ", params / 1e6, " M parameters take ", bytes / (1 << 30), " GiB on disk; ", static_cast<double>(disk) / (1 << 30),
         " GiB is free where ", dir, " would be written");
  }
}

void write_random_model(const std::string& dir, const RandomModelSpec& spec) {
  check_random_model_spec(spec, dir);
  std::filesystem::create_directories(dir);
  // Weights first, config last, each atomically: an interrupted write leaves no directory
  // that looks like a model.
  {
    AtomicOutput weights(std::filesystem::path(dir) / "model.safetensors", true);
    write_safetensors(weights.temp_path(), random_model_tensors(spec), {{"format", "pt"}});
    weights.commit();
  }
  AtomicOutput config(std::filesystem::path(dir) / "config.json", true);
  std::ofstream(config.temp_path()) << random_model_config_json(spec);
  config.commit();
}

}  // namespace kvscope
