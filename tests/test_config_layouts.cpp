// Checkpoints as transformers 5 writes them: rope_parameters instead of rope_theta +
// rope_scaling, layer_types for per-layer sliding windows. The same random weights must give
// bit-identical logits under either spelling, and the RoPE frequencies must match their
// published closed forms, computed here independently in float64.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

#include "core/error.h"
#include "model/kv_cache.h"
#include "model/llama.h"
#include "model/random_model.h"
#include "model/rope.h"
#include "support/test_paths.h"

namespace kvscope {
namespace {

using json = nlohmann::json;
using testing::TempDir;

RandomModelSpec small_spec(const std::string& model_type) {
  RandomModelSpec s;
  s.model_type = model_type;
  s.vocab_size = 61;
  s.hidden_size = 32;
  s.intermediate_size = 40;
  s.num_layers = 2;
  s.num_heads = 2;
  s.num_kv_heads = 1;
  s.max_position_embeddings = 64;
  s.seed = 11;
  return s;
}

// Writes the spec's weights with config.json edited by `edit`.
void write_model(const TempDir& dir, const std::string& sub, const RandomModelSpec& spec, const std::function<void(json&)>& edit) {
  const std::string path = (dir / sub).string();
  write_random_model(path, spec);
  json config = json::parse(random_model_config_json(spec));
  edit(config);
  std::ofstream(path + "/config.json") << config.dump(2);
}

at::Tensor logits_of(const std::string& dir, const std::vector<int64_t>& ids, bool decode = false) {
  const LlamaModel model = LlamaModel::load(dir);
  FullKvCache cache = model.new_cache();
  const at::Tensor input = at::tensor(ids, at::kLong);
  if (!decode) return model.forward(input, 0, cache);
  std::vector<at::Tensor> rows;
  for (size_t t = 0; t < ids.size(); ++t) rows.push_back(model.forward(input.narrow(0, static_cast<int64_t>(t), 1), static_cast<int64_t>(t), cache));
  return at::cat(rows, 0);
}

const std::vector<int64_t> kIds{1, 7, 3, 22, 40, 5, 9, 60, 2, 13, 31, 8, 17, 4, 50, 29};

struct Layout {
  std::string name;
  json classic_scaling;  // rope_scaling, or null
  json parameters;       // the same settings as rope_parameters (rope_theta added below)
};

TEST(ConfigLayouts, ClassicAndTransformers5GiveBitIdenticalLogits) {
  TempDir dir("layouts");
  const Layout layouts[] = {
      {"default", nullptr, {{"rope_type", "default"}}},
      {"linear", {{"type", "linear"}, {"factor", 2.0}}, {{"rope_type", "linear"}, {"factor", 2.0}}},
      {"dynamic", {{"type", "dynamic"}, {"factor", 3.0}}, {{"rope_type", "dynamic"}, {"factor", 3.0}}},
      {"llama3",
       {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 16}},
       {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 16}}},
      {"yarn",
       {{"type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 16}, {"beta_fast", 8}},
       {{"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 16}, {"beta_fast", 8}}},
  };
  const RandomModelSpec spec = small_spec("llama");
  at::Tensor default_logits;
  for (const Layout& l : layouts) {
    write_model(dir, l.name + "-classic", spec, [&](json& c) {
      c["rope_theta"] = 5000.0;
      c["rope_scaling"] = l.classic_scaling;
    });
    write_model(dir, l.name + "-v5", spec, [&](json& c) {
      c.erase("rope_theta");
      c.erase("rope_scaling");
      json p = l.parameters;
      p["rope_theta"] = 5000.0;
      c["rope_parameters"] = p;
      c["dtype"] = "float32";
    });
    // transformers 5 keyed per layer type, as hybrid models save it.
    write_model(dir, l.name + "-v5-per-type", spec, [&](json& c) {
      c.erase("rope_theta");
      c.erase("rope_scaling");
      json p = l.parameters;
      p["rope_theta"] = 5000.0;
      c["rope_parameters"] = {{"full_attention", p}};
      c["layer_types"] = {"full_attention", "full_attention"};
    });
    const at::Tensor classic = logits_of((dir / (l.name + "-classic")).string(), kIds);
    const at::Tensor v5 = logits_of((dir / (l.name + "-v5")).string(), kIds);
    const at::Tensor per_type = logits_of((dir / (l.name + "-v5-per-type")).string(), kIds);
    EXPECT_TRUE(at::equal(classic, v5)) << l.name;
    EXPECT_TRUE(at::equal(classic, per_type)) << l.name;
    if (l.name == "default") default_logits = classic;
    // Within max_position_embeddings dynamic scaling is the identity; every other scaling
    // changes the logits (so the settings really reached the forward pass).
    if (l.name == "dynamic") EXPECT_TRUE(at::equal(classic, default_logits));
    else if (l.name != "default") EXPECT_FALSE(at::equal(classic, default_logits)) << l.name;
  }
}

ModelConfig rope_config(int64_t head_dim, double theta, RopeScaling scaling) {
  ModelConfig c;
  c.head_dim = head_dim;
  c.max_position_embeddings = 4096;
  c.rope.theta = theta;
  c.rope.scaling = scaling;
  return c;
}

TEST(ConfigLayouts, InverseFrequenciesMatchClosedForms) {
  const int64_t d = 128;
  const double theta = 500000.0;
  auto base = [&](int64_t j) { return std::pow(theta, -2.0 * j / d); };
  {
    ModelConfig c = rope_config(d, theta, RopeScaling::Linear);
    c.rope.factor = 2.5;
    const auto inv = rope_inverse_frequencies(c);
    for (int64_t j = 0; j < d / 2; ++j) EXPECT_DOUBLE_EQ(inv[j], base(j) / 2.5) << j;
  }
  {
    // Llama 3.1: wavelengths above 8192/1 are divided by 8, below 8192/4 kept, and a
    // linear blend in 1/wavelength between.
    ModelConfig c = rope_config(d, theta, RopeScaling::Llama3);
    c.rope.factor = 8;
    c.rope.low_freq_factor = 1;
    c.rope.high_freq_factor = 4;
    c.rope.original_max_position = 8192;
    const auto inv = rope_inverse_frequencies(c);
    int blended = 0;
    for (int64_t j = 0; j < d / 2; ++j) {
      const double f = base(j), wavelength = 2 * M_PI / f;
      double want;
      if (wavelength < 8192.0 / 4) want = f;
      else if (wavelength > 8192.0) want = f / 8;
      else {
        const double s = (8192.0 / wavelength - 1) / 3;
        want = (1 - s) * f / 8 + s * f;
        ++blended;
      }
      EXPECT_NEAR(inv[j], want, 1e-15 * f) << j;
    }
    EXPECT_GT(blended, 0);
  }
  {
    // Dynamic NTK: base' = base * (factor * L / L_max - (factor - 1))^(d / (d - 2)) at the
    // sequence length L it is evaluated for; kvscope evaluates at L = L_max (L' = base).
    ModelConfig c = rope_config(d, theta, RopeScaling::Dynamic);
    c.rope.factor = 4;
    const double L = 4096, L_max = 4096;
    const double new_base = theta * std::pow(4 * L / L_max - 3, static_cast<double>(d) / (d - 2));
    const auto inv = rope_inverse_frequencies(c);
    for (int64_t j = 0; j < d / 2; ++j) EXPECT_NEAR(inv[j], std::pow(new_base, -2.0 * j / d), 1e-15 * base(j)) << j;
  }
  for (const bool truncate : {true, false}) {
    // YaRN (Peng et al. 2023, as transformers implements it): dimensions that turn more than
    // beta_fast times over the original context keep their frequency, fewer than beta_slow
    // are interpolated by the factor, and a linear ramp over dimension indices joins them.
    ModelConfig c = rope_config(d, theta, RopeScaling::Yarn);
    c.rope.factor = 16;
    c.rope.original_max_position = 4096;
    c.rope.beta_fast = 32;
    c.rope.beta_slow = 1;
    c.rope.truncate = truncate;
    const auto inv = rope_inverse_frequencies(c);
    // Dimension pair j turns original / (2 pi base^(2j/d)) times; solve for `rotations`.
    auto dim_for = [&](double rotations) { return d * std::log(4096 / (rotations * 2 * M_PI)) / (2 * std::log(theta)); };
    double lo = dim_for(32), hi = dim_for(1);
    if (truncate) { lo = std::floor(lo); hi = std::ceil(hi); }
    lo = std::max(lo, 0.0);
    hi = std::min(hi, d - 1.0);
    int ramped = 0;
    for (int64_t j = 0; j < d / 2; ++j) {
      const double t = std::min(1.0, std::max(0.0, (j - lo) / (hi - lo)));
      if (t > 0 && t < 1) ++ramped;
      const double want = (1 - t) * base(j) + t * base(j) / 16;
      EXPECT_NEAR(inv[j], want, 1e-15 * base(j)) << j << " truncate " << truncate;
    }
    EXPECT_GT(ramped, 0);
  }
}

TEST(ConfigLayouts, YarnScalesCosAndSinByTheAttentionFactor) {
  ModelConfig c = rope_config(8, 10000.0, RopeScaling::Yarn);
  c.max_position_embeddings = 32;
  c.rope.factor = 4;
  c.rope.original_max_position = 8;
  c.rope.attention_factor = 0.1 * std::log(4.0) + 1;
  const Rope rope(c, at::kCPU);
  const at::Tensor x = at::zeros({1, 1, 8});
  x[0][0][0] = 1.0;  // rotating e_0 gives (cos, ..., sin, ...) times the factor
  const at::Tensor out = rope.apply(x, at::tensor(std::vector<int64_t>{5}, at::kLong));
  const double angle = 5 * rope_inverse_frequencies(c)[0];
  EXPECT_NEAR(out[0][0][0].item<double>(), std::cos(angle) * c.rope.attention_factor, 1e-6);
  EXPECT_NEAR(out[0][0][4].item<double>(), std::sin(angle) * c.rope.attention_factor, 1e-6);
}

TEST(ConfigLayouts, DynamicScalingIsRefusedBeyondMaxPositions) {
  ModelConfig c = rope_config(8, 10000.0, RopeScaling::Dynamic);
  c.max_position_embeddings = 16;
  c.rope.factor = 2;
  const Rope rope(c, at::kCPU);
  const at::Tensor x = at::randn({1, 2, 8});
  EXPECT_NO_THROW(rope.apply(x, at::tensor(std::vector<int64_t>{14, 15}, at::kLong)));
  try {
    rope.apply(x, at::tensor(std::vector<int64_t>{15, 16}, at::kLong));
    ADD_FAILURE() << "position 16 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rope_type 'dynamic': position 16 is beyond max_position_embeddings (16)"), std::string::npos) << e.what();
  }
}

// Per-layer sliding windows: all-full layer_types equal no window, all-sliding equal the
// classic global window, a mix is neither; prefill and token-by-token decode agree.
TEST(ConfigLayouts, PerLayerSlidingWindows) {
  TempDir dir("windows");
  const RandomModelSpec spec = small_spec("mistral");
  write_model(dir, "none", spec, [](json& c) { c["sliding_window"] = nullptr; });
  write_model(dir, "all-full", spec, [](json& c) {
    c["sliding_window"] = 4;
    c["layer_types"] = {"full_attention", "full_attention"};
  });
  write_model(dir, "classic", spec, [](json& c) { c["sliding_window"] = 4; });
  write_model(dir, "all-sliding", spec, [](json& c) {
    c["sliding_window"] = 4;
    c["layer_types"] = {"sliding_attention", "sliding_attention"};
  });
  write_model(dir, "mixed", spec, [](json& c) {
    c["sliding_window"] = 4;
    c["layer_types"] = {"sliding_attention", "full_attention"};
  });
  RandomModelSpec qspec = small_spec("qwen2");
  write_model(dir, "qwen2-mixed", qspec, [](json& c) {
    c["sliding_window"] = 4;
    c["use_sliding_window"] = true;
    c["max_window_layers"] = 1;
  });
  auto at_dir = [&](const char* name) { return (dir / name).string(); };
  EXPECT_TRUE(at::equal(logits_of(at_dir("none"), kIds), logits_of(at_dir("all-full"), kIds)));
  EXPECT_TRUE(at::equal(logits_of(at_dir("classic"), kIds), logits_of(at_dir("all-sliding"), kIds)));
  const at::Tensor mixed = logits_of(at_dir("mixed"), kIds);
  EXPECT_FALSE(at::equal(mixed, logits_of(at_dir("none"), kIds)));
  EXPECT_FALSE(at::equal(mixed, logits_of(at_dir("classic"), kIds)));
  for (const char* name : {"mixed", "qwen2-mixed"}) {
    const at::Tensor prefill = logits_of(at_dir(name), kIds);
    const at::Tensor decode = logits_of(at_dir(name), kIds, true);
    EXPECT_LE((prefill - decode).abs().max().item<double>(), 1e-4) << name;
  }
}

}  // namespace
}  // namespace kvscope
