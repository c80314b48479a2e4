#include "model/config.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "core/error.h"

namespace kvscope {
namespace {

using json = nlohmann::json;

const json* find(const json& obj, const std::string& key) {
  const auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

// nlohmann-json converts a float to an integer with a C cast, which is undefined behaviour
// when the float is out of range: integers are checked here before any conversion.
int64_t int_value(const json* v, const std::string& name, const std::string& label) {
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    fail(label, ": field '", name, "' is out of range: ", v->dump());
  }
  if (v->is_number_integer()) return v->get<int64_t>();
  if (v->is_number_float()) {
    const double d = v->get<double>();
    // Integral floats (4096.0) are what Python writes for some configs; 2^53 keeps them exact.
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) <= 9007199254740992.0) return static_cast<int64_t>(d);
  }
  fail(label, ": field '", name, "' must be an integer, got ", v->dump());
}

std::optional<int64_t> int_field(const json& obj, const std::string& key, const std::string& name, const std::string& label) {
  const json* v = find(obj, key);
  if (!v) return std::nullopt;
  return int_value(v, name, label);
}

std::optional<double> number_field(const json& obj, const std::string& key, const std::string& name, const std::string& label) {
  const json* v = find(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_number() || !std::isfinite(v->get<double>())) fail(label, ": field '", name, "' must be a finite number, got ", v->dump());
  return v->get<double>();
}

std::optional<bool> bool_field(const json& obj, const std::string& key, const std::string& name, const std::string& label) {
  const json* v = find(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) fail(label, ": field '", name, "' must be true or false, got ", v->dump());
  return v->get<bool>();
}

std::optional<std::string> string_field(const json& obj, const std::string& key, const std::string& name, const std::string& label) {
  const json* v = find(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) fail(label, ": field '", name, "' must be a string, got ", v->dump());
  return v->get<std::string>();
}

int64_t require_positive(const json& doc, const char* key, const std::string& label) {
  const auto v = int_field(doc, key, key, label);
  if (!v) fail(label, ": missing required field '", key, "'");
  if (*v <= 0) fail(label, ": field '", key, "' must be a positive integer, got ", *v);
  return *v;
}

int64_t token_id(const json& doc, const char* key, const std::string& label) {
  const json* v = find(doc, key);
  if (!v) return -1;
  if (v->is_array()) {  // Llama-3 lists several EOS ids; the first is the canonical one.
    if (v->empty()) fail(label, ": field '", key, "' is an empty list");
    return int_value(&(*v)[0], std::string(key) + "[0]", label);
  }
  return *int_field(doc, key, key, label);
}

// One RoPE parameter set: a classic `rope_scaling` object or one `rope_parameters` entry
// (which also carries rope_theta). Every key is either read or refused.
void parse_rope_object(const json& obj, const std::string& name, bool carries_theta, const ModelConfig& c,
                       RopeConfig& rope, const std::string& label) {
  if (!obj.is_object()) fail(label, ": '", name, "' must be an object or null");
  std::set<std::string> read{"rope_type", "type"};
  const auto key = [&](const char* k) { read.insert(k); return name + "." + k; };
  const auto rope_type = string_field(obj, "rope_type", key("rope_type"), label);
  const auto legacy_type = string_field(obj, "type", key("type"), label);
  if (rope_type && legacy_type && *rope_type != *legacy_type) {
    fail(label, ": ", name, " gives rope_type '", *rope_type, "' and type '", *legacy_type, "'");
  }
  if (!rope_type && !legacy_type) fail(label, ": '", name, "' has no 'rope_type' (or 'type'); write \"rope_type\": \"default\" for unscaled RoPE");
  const std::string type = rope_type ? *rope_type : *legacy_type;
  if (carries_theta) {
    if (const auto theta = number_field(obj, "rope_theta", key("rope_theta"), label)) rope.theta = *theta;
  }
  if (const auto prf = number_field(obj, "partial_rotary_factor", key("partial_rotary_factor"), label); prf && *prf != 1.0) {
    fail(label, ": ", name, ".partial_rotary_factor ", *prf, " is not supported (only full rotary embeddings, factor 1)");
  }
  const auto required_number = [&](const char* k) {
    const auto v = number_field(obj, k, key(k), label);
    if (!v) fail(label, ": ", name, " (rope_type '", type, "') is missing required field '", k, "'");
    return *v;
  };
  const auto positive_factor = [&] {
    const double f = required_number("factor");
    if (!(f > 0)) fail(label, ": ", name, ".factor must be positive, got ", f);
    return f;
  };
  if (type == "default") {
    rope.scaling = RopeScaling::None;
  } else if (type == "linear") {
    rope.scaling = RopeScaling::Linear;
    rope.factor = positive_factor();
  } else if (type == "dynamic") {
    rope.scaling = RopeScaling::Dynamic;
    rope.factor = positive_factor();
    // transformers scales against max_position_embeddings; a different original length
    // would be a second definition of the same threshold.
    if (const auto o = int_field(obj, "original_max_position_embeddings", key("original_max_position_embeddings"), label);
        o && *o != c.max_position_embeddings) {
      fail(label, ": ", name, ".original_max_position_embeddings (", *o, ") differs from max_position_embeddings (",
           c.max_position_embeddings, "), which dynamic scaling uses as its threshold");
    }
  } else if (type == "llama3") {
    rope.scaling = RopeScaling::Llama3;
    rope.factor = positive_factor();
    rope.low_freq_factor = required_number("low_freq_factor");
    rope.high_freq_factor = required_number("high_freq_factor");
    const auto o = int_field(obj, "original_max_position_embeddings", key("original_max_position_embeddings"), label);
    if (!o) fail(label, ": ", name, " (rope_type 'llama3') is missing required field 'original_max_position_embeddings'");
    rope.original_max_position = *o;
    if (!(rope.low_freq_factor > 0) || !(rope.high_freq_factor > rope.low_freq_factor) || rope.original_max_position <= 0) {
      fail(label, ": ", name, " (llama3) needs 0 < low_freq_factor < high_freq_factor and a positive original_max_position_embeddings");
    }
  } else if (type == "yarn") {
    rope.scaling = RopeScaling::Yarn;
    rope.factor = positive_factor();
    const auto o = int_field(obj, "original_max_position_embeddings", key("original_max_position_embeddings"), label);
    rope.original_max_position = o ? *o : c.max_position_embeddings;
    if (rope.original_max_position <= 0) fail(label, ": ", name, ".original_max_position_embeddings must be positive");
    // As transformers: a missing or zero beta falls back to the paper's 32 / 1.
    const auto beta_fast = number_field(obj, "beta_fast", key("beta_fast"), label);
    const auto beta_slow = number_field(obj, "beta_slow", key("beta_slow"), label);
    rope.beta_fast = beta_fast && *beta_fast != 0 ? *beta_fast : 32.0;
    rope.beta_slow = beta_slow && *beta_slow != 0 ? *beta_slow : 1.0;
    if (!(rope.beta_fast > 0) || !(rope.beta_slow > 0)) fail(label, ": ", name, ".beta_fast and beta_slow must be positive");
    rope.truncate = bool_field(obj, "truncate", key("truncate"), label).value_or(true);
    const auto mscale_of = [](double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; };
    const auto attention_factor = number_field(obj, "attention_factor", key("attention_factor"), label);
    const auto mscale = number_field(obj, "mscale", key("mscale"), label);
    const auto mscale_all_dim = number_field(obj, "mscale_all_dim", key("mscale_all_dim"), label);
    if (attention_factor) {
      rope.attention_factor = *attention_factor;
    } else if (mscale && *mscale != 0 && mscale_all_dim && *mscale_all_dim != 0) {
      rope.attention_factor = mscale_of(rope.factor, *mscale) / mscale_of(rope.factor, *mscale_all_dim);
    } else {
      rope.attention_factor = mscale_of(rope.factor, 1.0);
    }
    if (!(rope.attention_factor > 0)) fail(label, ": ", name, ": yarn attention factor must be positive, got ", rope.attention_factor);
  } else {
    fail(label, ": unsupported rope_type '", type, "' in ", name, " (supported: default, linear, dynamic, llama3, yarn)");
  }
  for (const auto& item : obj.items()) {
    if (!read.count(item.key()) && !item.value().is_null()) {
      fail(label, ": ", name, " has key '", item.key(), "', which kvscope does not implement for rope_type '", type, "'");
    }
  }
}

const char* kFull = "full_attention";
const char* kSliding = "sliding_attention";

// Which layers attend through a sliding window, from the classic keys and/or layer_types.
void parse_attention_layout(const json& doc, ModelConfig& c, std::vector<std::string>& types, const std::string& label) {
  const auto window = int_field(doc, "sliding_window", "sliding_window", label);
  if (window && *window <= 0) fail(label, ": sliding_window must be a positive integer or null, got ", *window);
  std::optional<std::vector<std::string>> given;
  if (const json* lt = find(doc, "layer_types")) {
    if (!lt->is_array() || static_cast<int64_t>(lt->size()) != c.num_layers) {
      fail(label, ": layer_types must be a list of ", c.num_layers, " entries (one per layer)");
    }
    given.emplace();
    for (const auto& t : *lt) {
      if (!t.is_string() || (t.get<std::string>() != kFull && t.get<std::string>() != kSliding)) {
        fail(label, ": layer_types entry ", t.dump(), " is not supported (supported: full_attention, sliding_attention)");
      }
      given->push_back(t.get<std::string>());
    }
  }
  std::vector<std::string> derived(static_cast<size_t>(c.num_layers), kFull);
  if (c.model_type == "llama") {
    if (window) fail(label, ": sliding_window is set but model_type llama has no sliding-window attention");
  } else if (c.model_type == "mistral") {
    if (window) derived.assign(derived.size(), kSliding);
  } else if (c.model_type == "qwen2") {
    const bool use = bool_field(doc, "use_sliding_window", "use_sliding_window", label).value_or(false);
    const int64_t first = int_field(doc, "max_window_layers", "max_window_layers", label).value_or(28);
    if (first < 0) fail(label, ": max_window_layers must not be negative, got ", first);
    if (use) {
      if (!window) fail(label, ": use_sliding_window is true but sliding_window is null");
      for (int64_t l = first; l < c.num_layers; ++l) derived[static_cast<size_t>(l)] = kSliding;
    }
    if (given && !use && std::count(given->begin(), given->end(), kSliding)) {
      fail(label, ": layer_types lists sliding_attention layers but use_sliding_window is false");
    }
    if (given && use && *given != derived) {
      fail(label, ": layer_types disagrees with use_sliding_window and max_window_layers (", first, ")");
    }
  }
  types = given ? *given : derived;
  c.layer_window.assign(static_cast<size_t>(c.num_layers), 0);
  for (size_t l = 0; l < types.size(); ++l) {
    if (types[l] != kSliding) continue;
    if (c.model_type == "llama") fail(label, ": layer_types lists sliding_attention layers but model_type llama has no sliding-window attention");
    if (!window) fail(label, ": layer_types lists sliding_attention layers but sliding_window is null");
    c.layer_window[l] = *window;
    c.sliding_window = *window;
  }
}

// RoPE from either layout; both may be present (configs saved by transformers 5 from an old
// checkpoint keep rope_theta), and then they must agree.
void parse_rope(const json& doc, ModelConfig& c, const std::vector<std::string>& types, const std::string& label) {
  const auto top_theta = number_field(doc, "rope_theta", "rope_theta", label);
  if (const auto prf = number_field(doc, "partial_rotary_factor", "partial_rotary_factor", label); prf && *prf != 1.0) {
    fail(label, ": partial_rotary_factor ", *prf, " is not supported (only full rotary embeddings, factor 1)");
  }
  std::optional<RopeConfig> classic_scaling;
  if (const json* rs = find(doc, "rope_scaling")) {
    classic_scaling.emplace();
    parse_rope_object(*rs, "rope_scaling", false, c, *classic_scaling, label);
  }
  const json* rp = find(doc, "rope_parameters");
  RopeConfig rope;
  if (top_theta) rope.theta = *top_theta;
  if (!rp) {
    if (classic_scaling) {
      classic_scaling->theta = rope.theta;
      rope = *classic_scaling;
    }
  } else {
    if (!rp->is_object()) fail(label, ": 'rope_parameters' must be an object or null");
    const bool per_layer_type = !rp->empty() && !rp->contains("rope_type") && !rp->contains("type") && !rp->contains("rope_theta") &&
                                std::all_of(rp->begin(), rp->end(), [](const json& v) { return v.is_object(); });
    std::map<std::string, RopeConfig> parsed;
    if (per_layer_type) {
      for (const auto& item : rp->items()) {
        if (item.key() != kFull && item.key() != kSliding) {
          fail(label, ": rope_parameters has an entry for layer type '", item.key(), "' (supported: full_attention, sliding_attention)");
        }
        RopeConfig r;
        r.theta = rope.theta;
        parse_rope_object(item.value(), "rope_parameters." + item.key(), true, c, r, label);
        parsed[item.key()] = r;
      }
    } else {
      RopeConfig r;
      r.theta = rope.theta;
      parse_rope_object(*rp, "rope_parameters", true, c, r, label);
      parsed[""] = r;
    }
    std::optional<std::pair<std::string, RopeConfig>> used;
    for (const std::string& t : types) {
      const std::string k = per_layer_type ? t : "";
      const auto it = parsed.find(k);
      if (it == parsed.end()) fail(label, ": rope_parameters has no entry for layer type '", t, "'");
      if (used && used->second != it->second) {
        fail(label, ": rope_parameters differ between layer types '", used->first, "' and '", t,
             "' (kvscope applies one RoPE to every layer)");
      }
      used.emplace(t, it->second);
    }
    rope = used->second;
    if (top_theta && *top_theta != rope.theta) {
      fail(label, ": rope_theta (", *top_theta, ") and rope_parameters' rope_theta (", rope.theta, ") disagree");
    }
    if (classic_scaling) {
      RopeConfig scaled = *classic_scaling;
      scaled.theta = rope.theta;
      if (scaled != rope) fail(label, ": rope_scaling and rope_parameters disagree (rope_type '", rope_scaling_name(classic_scaling->scaling),
                               "' vs '", rope_scaling_name(rope.scaling), "' or their fields)");
    }
  }
  if (!(rope.theta > 1)) fail(label, ": rope_theta must be greater than 1");
  c.rope = rope;
}

}  // namespace

const char* rope_scaling_name(RopeScaling s) {
  switch (s) {
    case RopeScaling::None: return "default";
    case RopeScaling::Linear: return "linear";
    case RopeScaling::Llama3: return "llama3";
    case RopeScaling::Dynamic: return "dynamic";
    case RopeScaling::Yarn: return "yarn";
  }
  return "?";
}

bool RopeConfig::operator==(const RopeConfig& o) const {
  return theta == o.theta && scaling == o.scaling && factor == o.factor && low_freq_factor == o.low_freq_factor &&
         high_freq_factor == o.high_freq_factor && original_max_position == o.original_max_position && beta_fast == o.beta_fast &&
         beta_slow == o.beta_slow && truncate == o.truncate && attention_factor == o.attention_factor;
}

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
  c.model_type = string_field(doc, "model_type", "model_type", label).value_or("");
  if (c.model_type.empty()) fail(label, ": missing 'model_type' (supported: llama, mistral, qwen2)");
  if (c.model_type != "llama" && c.model_type != "mistral" && c.model_type != "qwen2") {
    fail(label, ": unsupported architecture '", c.model_type, "' (supported: llama, mistral, qwen2)");
  }
  const std::string act = string_field(doc, "hidden_act", "hidden_act", label).value_or("silu");
  if (act != "silu") fail(label, ": unsupported hidden_act '", act, "' (supported: silu)");
  if (bool_field(doc, "mlp_bias", "mlp_bias", label).value_or(false)) fail(label, ": unsupported feature 'mlp_bias'");
  if (int_field(doc, "pretraining_tp", "pretraining_tp", label).value_or(1) != 1) fail(label, ": unsupported pretraining_tp != 1");
  c.vocab_size = require_positive(doc, "vocab_size", label);
  c.hidden_size = require_positive(doc, "hidden_size", label);
  c.intermediate_size = require_positive(doc, "intermediate_size", label);
  c.num_layers = require_positive(doc, "num_hidden_layers", label);
  c.num_heads = require_positive(doc, "num_attention_heads", label);
  c.num_kv_heads = find(doc, "num_key_value_heads") ? require_positive(doc, "num_key_value_heads", label) : c.num_heads;
  if (c.num_heads % c.num_kv_heads != 0) {
    fail(label, ": num_attention_heads (", c.num_heads, ") is not a multiple of num_key_value_heads (", c.num_kv_heads, ")");
  }
  if (find(doc, "head_dim")) {
    c.head_dim = require_positive(doc, "head_dim", label);
  } else {
    if (c.hidden_size % c.num_heads != 0) {
      fail(label, ": hidden_size (", c.hidden_size, ") is not a multiple of num_attention_heads (", c.num_heads, ") and no head_dim is given");
    }
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (c.head_dim % 2 != 0) fail(label, ": head_dim ", c.head_dim, " is odd; RoPE needs an even head_dim");
  c.max_position_embeddings = int_field(doc, "max_position_embeddings", "max_position_embeddings", label).value_or(2048);
  if (c.max_position_embeddings <= 0) fail(label, ": max_position_embeddings must be positive");
  c.rms_norm_eps = number_field(doc, "rms_norm_eps", "rms_norm_eps", label).value_or(1e-6);
  if (!(c.rms_norm_eps > 0)) fail(label, ": rms_norm_eps must be positive");
  c.tie_word_embeddings = bool_field(doc, "tie_word_embeddings", "tie_word_embeddings", label).value_or(false);
  c.attention_bias = bool_field(doc, "attention_bias", "attention_bias", label).value_or(c.model_type == "qwen2");
  std::vector<std::string> layer_types;
  parse_attention_layout(doc, c, layer_types, label);
  parse_rope(doc, c, layer_types, label);
  const auto dtype = string_field(doc, "dtype", "dtype", label);
  const auto torch_dtype = string_field(doc, "torch_dtype", "torch_dtype", label);
  if (dtype && torch_dtype && *dtype != *torch_dtype) fail(label, ": dtype '", *dtype, "' and torch_dtype '", *torch_dtype, "' disagree");
  c.declared_dtype = dtype ? *dtype : torch_dtype.value_or("");
  if (!c.declared_dtype.empty() && c.declared_dtype != "float32" && c.declared_dtype != "float16" && c.declared_dtype != "bfloat16") {
    fail(label, ": unsupported dtype '", c.declared_dtype, "' (supported: float32, float16, bfloat16)");
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
