#include "model/config.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "core/error.h"

namespace kvscope {
namespace {

using json = nlohmann::json;

int64_t require_positive(const json& doc, const char* key, const std::string& label) {
  const auto it = doc.find(key);
  if (it == doc.end() || it->is_null()) fail(label, ": missing required field '", key, "'");
  if (!it->is_number_integer() || it->get<int64_t>() <= 0) {
    fail(label, ": field '", key, "' must be a positive integer, got ", it->dump());
  }
  return it->get<int64_t>();
}

template <typename T>
T optional_field(const json& doc, const char* key, T fallback, const std::string& label) {
  const auto it = doc.find(key);
  if (it == doc.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    fail(label, ": field '", key, "' has the wrong type: ", it->dump());
  }
}

int64_t token_id(const json& doc, const char* key, const std::string& label) {
  const auto it = doc.find(key);
  if (it == doc.end() || it->is_null()) return -1;
  if (it->is_array()) {  // Llama-3 lists several EOS ids; the first is the canonical one.
    if (it->empty() || !(*it)[0].is_number_integer()) fail(label, ": field '", key, "' is not a token id");
    return (*it)[0].get<int64_t>();
  }
  if (!it->is_number_integer()) fail(label, ": field '", key, "' is not a token id");
  return it->get<int64_t>();
}

void parse_rope_scaling(const json& doc, RopeConfig& rope, const std::string& label) {
  const auto it = doc.find("rope_scaling");
  if (it == doc.end() || it->is_null()) return;
  if (!it->is_object()) fail(label, ": 'rope_scaling' must be an object or null");
  std::string type = optional_field<std::string>(*it, "rope_type", "", label);
  if (type.empty()) type = optional_field<std::string>(*it, "type", "", label);
  if (type.empty() || type == "default") return;
  rope.factor = optional_field<double>(*it, "factor", 1.0, label);
  if (!(rope.factor > 0)) fail(label, ": rope_scaling.factor must be positive");
  if (type == "linear") {
    rope.scaling = RopeScaling::Linear;
  } else if (type == "llama3") {
    rope.scaling = RopeScaling::Llama3;
    rope.low_freq_factor = optional_field<double>(*it, "low_freq_factor", 1.0, label);
    rope.high_freq_factor = optional_field<double>(*it, "high_freq_factor", 4.0, label);
    rope.original_max_position = optional_field<int64_t>(*it, "original_max_position_embeddings", 8192, label);
    if (!(rope.high_freq_factor > rope.low_freq_factor) || rope.original_max_position <= 0) {
      fail(label, ": rope_scaling (llama3) needs high_freq_factor > low_freq_factor and a positive original_max_position_embeddings");
    }
  } else {
    fail(label, ": unsupported rope_scaling type '", type, "' (supported: none, linear, llama3)");
  }
}

}  // namespace

int64_t ModelConfig::parameter_count() const {
  const int64_t q = num_heads * head_dim, kv = num_kv_heads * head_dim;
  int64_t per_layer = hidden_size * (q + 2 * kv) + q * hidden_size +
                      3 * hidden_size * intermediate_size + 2 * hidden_size;
  if (attention_bias) per_layer += q + 2 * kv;
  int64_t total = num_layers * per_layer + vocab_size * hidden_size + hidden_size;
  if (!tie_word_embeddings) total += vocab_size * hidden_size;
  return total;
}

ModelConfig parse_model_config(const std::string& json_text, const std::string& label) {
  json doc = json::parse(json_text, nullptr, false);
  if (doc.is_discarded()) fail(label, ": not valid JSON");
  if (!doc.is_object()) fail(label, ": expected a JSON object");
  ModelConfig c;
  c.raw_json = json_text;
  c.model_type = optional_field<std::string>(doc, "model_type", "", label);
  if (c.model_type.empty()) fail(label, ": missing 'model_type' (supported: llama, mistral, qwen2)");
  if (c.model_type != "llama" && c.model_type != "mistral" && c.model_type != "qwen2") {
    fail(label, ": unsupported architecture '", c.model_type, "' (supported: llama, mistral, qwen2)");
  }
  const std::string act = optional_field<std::string>(doc, "hidden_act", "silu", label);
  if (act != "silu") fail(label, ": unsupported hidden_act '", act, "' (supported: silu)");
  if (optional_field<bool>(doc, "mlp_bias", false, label)) fail(label, ": unsupported feature 'mlp_bias'");
  if (optional_field<int64_t>(doc, "pretraining_tp", 1, label) != 1) {
    fail(label, ": unsupported pretraining_tp != 1");
  }
  c.vocab_size = require_positive(doc, "vocab_size", label);
  c.hidden_size = require_positive(doc, "hidden_size", label);
  c.intermediate_size = require_positive(doc, "intermediate_size", label);
  c.num_layers = require_positive(doc, "num_hidden_layers", label);
  c.num_heads = require_positive(doc, "num_attention_heads", label);
  c.num_kv_heads = doc.contains("num_key_value_heads") && !doc["num_key_value_heads"].is_null()
                       ? require_positive(doc, "num_key_value_heads", label)
                       : c.num_heads;
  if (c.num_heads % c.num_kv_heads != 0) {
    fail(label, ": num_attention_heads (", c.num_heads, ") is not a multiple of num_key_value_heads (", c.num_kv_heads, ")");
  }
  if (doc.contains("head_dim") && !doc["head_dim"].is_null()) {
    c.head_dim = require_positive(doc, "head_dim", label);
  } else {
    if (c.hidden_size % c.num_heads != 0) {
      fail(label, ": hidden_size (", c.hidden_size, ") is not a multiple of num_attention_heads (", c.num_heads, ") and no head_dim is given");
    }
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (c.head_dim % 2 != 0) fail(label, ": head_dim ", c.head_dim, " is odd; RoPE needs an even head_dim");
  c.max_position_embeddings = optional_field<int64_t>(doc, "max_position_embeddings", 2048, label);
  if (c.max_position_embeddings <= 0) fail(label, ": max_position_embeddings must be positive");
  c.rms_norm_eps = optional_field<double>(doc, "rms_norm_eps", 1e-6, label);
  if (!(c.rms_norm_eps > 0)) fail(label, ": rms_norm_eps must be positive");
  c.tie_word_embeddings = optional_field<bool>(doc, "tie_word_embeddings", false, label);
  c.attention_bias = optional_field<bool>(doc, "attention_bias", c.model_type == "qwen2", label);
  c.rope.theta = optional_field<double>(doc, "rope_theta", 10000.0, label);
  if (!(c.rope.theta > 1)) fail(label, ": rope_theta must be greater than 1");
  parse_rope_scaling(doc, c.rope, label);
  if (c.model_type == "mistral") {
    const int64_t w = optional_field<int64_t>(doc, "sliding_window", 0, label);
    if (w > 0) c.sliding_window = w;
  }
  if (c.model_type == "qwen2" && optional_field<bool>(doc, "use_sliding_window", false, label)) {
    fail(label, ": unsupported feature 'use_sliding_window' for qwen2 (per-layer windows)");
  }
  c.bos_token_id = token_id(doc, "bos_token_id", label);
  c.eos_token_id = token_id(doc, "eos_token_id", label);
  return c;
}

ModelConfig load_model_config(const std::filesystem::path& model_dir) {
  std::error_code ec;
  if (!std::filesystem::exists(model_dir, ec)) fail(model_dir.string(), ": no such file or directory");
  const auto path = model_dir / "config.json";
  std::ifstream in(path);
  if (!in) fail(path.string(), ": cannot read (is '", model_dir.string(), "' a Hugging Face model directory?)");
  std::stringstream buf;
  buf << in.rdbuf();
  return parse_model_config(buf.str(), path.string());
}

}  // namespace kvscope
