// Parsers of untrusted input (safetensors headers, config.json, selections, id files), on
// hand-built valid and hostile inputs. No LibTorch needed.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "core/error.h"
#include "core/selection.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/tokenizer.h"
#include "support/error_of.h"
#include "support/test_paths.h"

namespace kvscope {
namespace {

std::string safetensors_bytes(const std::string& header, size_t data_bytes, uint64_t claimed_len = UINT64_MAX) {
  const uint64_t n = claimed_len == UINT64_MAX ? header.size() : claimed_len;
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + std::string(data_bytes, '\x01');
}

SafetensorsHeader parse(const std::string& bytes) {
  return parse_safetensors(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size(), "x.safetensors");
}

using testing::error_of;

TEST(Safetensors, ParsesValidHeader) {
  const auto h = parse(safetensors_bytes(
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]}})",
      32));
  ASSERT_EQ(h.tensors.size(), 2u);
  EXPECT_EQ(h.metadata.at("format"), "pt");
  EXPECT_EQ(h.tensors[0].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(h.tensors[1].dtype, StoredDtype::BF16);
  EXPECT_EQ(h.tensors[1].begin, 24u);
}

TEST(Safetensors, RejectsHostileHeaders) {
  const std::string ok = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  struct Case { std::string bytes, expect; };
  const Case cases[] = {
      {"abc", "truncated"},
      {safetensors_bytes(ok, 8, 1ull << 63), "exceeds"},
      {safetensors_bytes(ok, 8, ok.size() + 100), "past the end"},
      {safetensors_bytes("{not json", 8), "not valid JSON"},
      {safetensors_bytes("[1,2]", 8), "not a JSON object"},
      {safetensors_bytes(ok, 4), "outside the file"},
      {safetensors_bytes(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "needs 3 elements"},
      {safetensors_bytes(R"({"w":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", 8), "unsupported dtype I64"},
      {safetensors_bytes(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), "negative"},
      {safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), "reversed"},
      {safetensors_bytes(R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}})", 8), "overflows"},
      {safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2]}})", 8), "data_offsets"},
  };
  for (const Case& c : cases) {
    const std::string msg = error_of([&] { parse(c.bytes); });
    EXPECT_NE(msg.find(c.expect), std::string::npos) << "expected '" << c.expect << "', got '" << msg << "'";
    EXPECT_NE(msg.find("x.safetensors"), std::string::npos) << msg;
  }
}

TEST(Safetensors, ShardedIndexAndMissingTensor) {
  testing::TempDir dir("shards");
  auto write = [&](const std::string& name, const std::string& bytes) { std::ofstream(dir / name, std::ios::binary) << bytes; };
  write("a.safetensors", safetensors_bytes(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4));
  write("b.safetensors", safetensors_bytes(R"({"y":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", 4));
  write("model.safetensors.index.json", R"({"weight_map":{"x":"a.safetensors","y":"b.safetensors"}})");
  const auto archive = SafetensorsArchive::open(dir.path());
  EXPECT_TRUE(archive.contains("x"));
  EXPECT_EQ(archive.get("y").record->dtype, StoredDtype::F16);
  const std::string msg = error_of([&] { archive.get("z"); });
  EXPECT_NE(msg.find("missing tensor 'z'"), std::string::npos) << msg;

  write("model.safetensors.index.json", R"({"weight_map":{"x":"a.safetensors","q":"b.safetensors"}})");
  const std::string msg2 = error_of([&] { SafetensorsArchive::open(dir.path()); });
  EXPECT_NE(msg2.find("'q' is listed in the index but missing"), std::string::npos) << msg2;
}

const char* kLlama = R"({"model_type":"llama","vocab_size":32,"hidden_size":16,"intermediate_size":32,
  "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"rope_theta":500000.0,
  "rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
  "original_max_position_embeddings":8192},"max_position_embeddings":131072,"bos_token_id":128000,
  "eos_token_id":[128001,128009],"tie_word_embeddings":true})";

TEST(Config, ParsesLlama3) {
  const ModelConfig c = parse_model_config(kLlama, "config.json");
  EXPECT_EQ(c.head_dim, 4);
  EXPECT_EQ(c.group_size(), 2);
  EXPECT_EQ(c.rope.scaling, RopeScaling::Llama3);
  EXPECT_EQ(c.eos_token_id, 128001);
  EXPECT_TRUE(c.tie_word_embeddings);
}

TEST(Config, Qwen2DefaultsToQkvBiasAndMistralToSlidingWindow) {
  const ModelConfig q = parse_model_config(
      R"({"model_type":"qwen2","vocab_size":32,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":1,"num_attention_heads":2})", "c");
  EXPECT_TRUE(q.attention_bias);
  const ModelConfig m = parse_model_config(
      R"({"model_type":"mistral","vocab_size":32,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":1,"num_attention_heads":2,"sliding_window":4096})", "c");
  ASSERT_TRUE(m.sliding_window.has_value());
  EXPECT_EQ(*m.sliding_window, 4096);
}

TEST(Config, RefusesUnsupportedByName) {
  const std::string base = R"("vocab_size":32,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":1,"num_attention_heads":2)";
  struct Case { std::string json, expect; };
  const Case cases[] = {
      {"{\"model_type\":\"gpt2\"," + base + "}", "unsupported architecture 'gpt2'"},
      {"{\"model_type\":\"llama\"," + base + ",\"rope_scaling\":{\"type\":\"longrope\",\"factor\":4}}", "unsupported rope_type 'longrope'"},
      {"{\"model_type\":\"llama\"," + base + ",\"hidden_act\":\"gelu\"}", "unsupported hidden_act 'gelu'"},
      {"{\"model_type\":\"llama\"," + base + ",\"num_key_value_heads\":3}", "not a multiple"},
      {"{\"model_type\":\"llama\",\"vocab_size\":32}", "missing required field"},
      {"{\"model_type\":\"llama\"," + base + ",\"hidden_size\":-4}", "positive integer"},
      {"not json", "not valid JSON"},
  };
  for (const Case& c : cases) {
    const std::string msg = error_of([&] { parse_model_config(c.json, "config.json"); });
    EXPECT_NE(msg.find(c.expect), std::string::npos) << "expected '" << c.expect << "', got '" << msg << "'";
  }
}

std::string small_config(const std::string& model_type, const std::string& extra) {
  return "{\"model_type\":\"" + model_type + "\",\"vocab_size\":32,\"hidden_size\":16,\"intermediate_size\":32," +
         "\"num_hidden_layers\":4,\"num_attention_heads\":2,\"max_position_embeddings\":4096" + (extra.empty() ? "" : "," + extra) + "}";
}

// The classic and transformers-5 spellings of the same RoPE parse to the same settings.
TEST(Config, BothRopeLayoutsAgree) {
  const std::pair<std::string, std::string> same[] = {
      {R"("rope_theta":500000.0)", R"("rope_parameters":{"rope_type":"default","rope_theta":500000.0})"},
      {R"("rope_theta":1e6,"rope_scaling":{"type":"linear","factor":2.0})", R"("rope_parameters":{"rope_type":"linear","rope_theta":1e6,"factor":2.0})"},
      {R"("rope_scaling":{"rope_type":"dynamic","factor":2.0})", R"("rope_parameters":{"rope_type":"dynamic","factor":2.0,"rope_theta":10000})"},
      {R"("rope_theta":500000,"rope_scaling":{"rope_type":"llama3","factor":8,"low_freq_factor":1,"high_freq_factor":4,"original_max_position_embeddings":1024})",
       R"("rope_parameters":{"rope_type":"llama3","rope_theta":500000,"factor":8,"low_freq_factor":1,"high_freq_factor":4,"original_max_position_embeddings":1024})"},
      {R"("rope_scaling":{"type":"yarn","factor":4,"original_max_position_embeddings":1024,"beta_fast":16})",
       R"("rope_parameters":{"full_attention":{"rope_type":"yarn","rope_theta":10000,"factor":4,"original_max_position_embeddings":1024,"beta_fast":16}})"},
  };
  for (const auto& [classic, v5] : same) {
    const ModelConfig a = parse_model_config(small_config("llama", classic), "a");
    const ModelConfig b = parse_model_config(small_config("llama", v5), "b");
    EXPECT_TRUE(a.rope == b.rope) << classic;
    // Both layouts at once are accepted when they agree.
    const ModelConfig both = parse_model_config(small_config("llama", classic + "," + v5), "both");
    EXPECT_TRUE(both.rope == a.rope) << classic;
  }
  const ModelConfig y = parse_model_config(small_config("llama", R"("rope_parameters":{"rope_type":"yarn","rope_theta":10000,"factor":4})"), "y");
  EXPECT_EQ(y.rope.original_max_position, 4096);  // defaults to max_position_embeddings
  EXPECT_DOUBLE_EQ(y.rope.attention_factor, 0.1 * std::log(4.0) + 1.0);
  const ModelConfig ym = parse_model_config(
      small_config("llama", R"("rope_parameters":{"rope_type":"yarn","rope_theta":10000,"factor":4,"mscale":2,"mscale_all_dim":1})"), "ym");
  EXPECT_DOUBLE_EQ(ym.rope.attention_factor, (0.2 * std::log(4.0) + 1.0) / (0.1 * std::log(4.0) + 1.0));
}

TEST(Config, PerLayerSlidingWindows) {
  const ModelConfig m = parse_model_config(
      small_config("mistral", R"("sliding_window":8,"layer_types":["sliding_attention","full_attention","sliding_attention","full_attention"])"), "m");
  EXPECT_EQ(m.layer_window, (std::vector<int64_t>{8, 0, 8, 0}));
  EXPECT_EQ(m.window_for_layer(1), std::nullopt);
  const ModelConfig all = parse_model_config(small_config("mistral", R"("sliding_window":8)"), "all");
  EXPECT_EQ(all.layer_window, (std::vector<int64_t>{8, 8, 8, 8}));
  const ModelConfig none = parse_model_config(small_config("mistral", R"("sliding_window":null)"), "none");
  EXPECT_FALSE(none.sliding_window.has_value());
  EXPECT_EQ(none.layer_window, (std::vector<int64_t>{0, 0, 0, 0}));
  const ModelConfig q = parse_model_config(small_config("qwen2", R"("sliding_window":16,"use_sliding_window":true,"max_window_layers":3)"), "q");
  EXPECT_EQ(q.layer_window, (std::vector<int64_t>{0, 0, 0, 16}));
  const ModelConfig q_off = parse_model_config(small_config("qwen2", R"("sliding_window":16,"use_sliding_window":false,"max_window_layers":3)"), "q");
  EXPECT_FALSE(q_off.sliding_window.has_value());
  // transformers 5 writes layer_types beside the classic keys; they agree here.
  const ModelConfig q5 = parse_model_config(
      small_config("qwen2", R"("sliding_window":16,"use_sliding_window":true,"max_window_layers":1,"layer_types":["full_attention","sliding_attention","sliding_attention","sliding_attention"],"dtype":"bfloat16")"), "q5");
  EXPECT_EQ(q5.layer_window, (std::vector<int64_t>{0, 16, 16, 16}));
  EXPECT_EQ(q5.declared_dtype, "bfloat16");
  // Per-layer-type rope_parameters are accepted when the layer types in use agree.
  const ModelConfig pl = parse_model_config(
      small_config("mistral", R"("sliding_window":8,"layer_types":["sliding_attention","full_attention","sliding_attention","full_attention"],
        "rope_parameters":{"full_attention":{"rope_type":"default","rope_theta":1e6},"sliding_attention":{"rope_type":"default","rope_theta":1e6}})"), "pl");
  EXPECT_EQ(pl.rope.theta, 1e6);
  const ModelConfig unused = parse_model_config(
      small_config("llama", R"("rope_parameters":{"full_attention":{"rope_type":"default","rope_theta":1e6},"sliding_attention":{"rope_type":"default","rope_theta":5e5}})"), "u");
  EXPECT_EQ(unused.rope.theta, 1e6);
}

// Each refused key is named in a one-line message.
TEST(Config, RefusesRopeAndLayoutProblemsByName) {
  struct Case { std::string model_type, extra, expect; };
  const Case cases[] = {
      {"llama", R"("rope_scaling":{"factor":2.0})", "'rope_scaling' has no 'rope_type'"},
      {"llama", R"("rope_parameters":{"rope_theta":10000})", "'rope_parameters' has no 'rope_type'"},
      {"llama", R"("rope_scaling":{"rope_type":"llama3","factor":8,"low_freq_factor":1,"high_freq_factor":4})", "missing required field 'original_max_position_embeddings'"},
      {"llama", R"("rope_scaling":{"rope_type":"llama3","factor":8,"high_freq_factor":4,"original_max_position_embeddings":8192})", "missing required field 'low_freq_factor'"},
      {"llama", R"("rope_scaling":{"rope_type":"linear"})", "missing required field 'factor'"},
      {"llama", R"("rope_scaling":{"rope_type":"su","factor":2})", "unsupported rope_type 'su'"},
      {"llama", R"("rope_scaling":{"rope_type":"linear","factor":2,"low_freq_factor":1})", "has key 'low_freq_factor'"},
      {"llama", R"("rope_parameters":{"rope_type":"default","rope_theta":10000,"partial_rotary_factor":0.5})", "partial_rotary_factor 0.5"},
      {"llama", R"("partial_rotary_factor":0.25)", "partial_rotary_factor 0.25"},
      {"llama", R"("rope_scaling":{"rope_type":"dynamic","factor":2,"original_max_position_embeddings":2048})", "original_max_position_embeddings (2048) differs"},
      {"llama", R"("rope_scaling":{"rope_type":"yarn","factor":4,"mystery":1})", "has key 'mystery'"},
      {"llama", R"("rope_scaling":{"rope_type":"linear","type":"dynamic","factor":2})", "rope_type 'linear' and type 'dynamic'"},
      {"llama", R"("rope_theta":10000,"rope_parameters":{"rope_type":"default","rope_theta":500000})", "rope_theta (10000) and rope_parameters' rope_theta (500000) disagree"},
      {"llama", R"("rope_scaling":{"rope_type":"linear","factor":2},"rope_parameters":{"rope_type":"linear","factor":4})", "rope_scaling and rope_parameters disagree"},
      {"mistral", R"("sliding_window":8,"layer_types":["sliding_attention","full_attention","full_attention","full_attention"],"rope_parameters":{"full_attention":{"rope_type":"default","rope_theta":1e6},"sliding_attention":{"rope_type":"default","rope_theta":1e4}})",
       "rope_parameters differ between layer types"},
      {"mistral", R"("sliding_window":8,"layer_types":["sliding_attention","full_attention","full_attention","full_attention"],"rope_parameters":{"full_attention":{"rope_type":"default"}})",
       "no entry for layer type 'sliding_attention'"},
      {"llama", R"("rope_parameters":{"global":{"rope_type":"default"}})", "layer type 'global'"},
      {"mistral", R"("sliding_window":0)", "sliding_window must be a positive integer or null, got 0"},
      {"mistral", R"("sliding_window":-4)", "sliding_window must be a positive integer or null, got -4"},
      {"mistral", R"("layer_types":["sliding_attention","full_attention","full_attention","full_attention"])", "sliding_window is null"},
      {"mistral", R"("sliding_window":8,"layer_types":["full_attention"])", "layer_types must be a list of 4"},
      {"mistral", R"("sliding_window":8,"layer_types":["chunked_attention","full_attention","full_attention","full_attention"])", "\"chunked_attention\" is not supported"},
      {"llama", R"("sliding_window":8)", "model_type llama has no sliding-window attention"},
      {"qwen2", R"("sliding_window":8,"use_sliding_window":false,"layer_types":["sliding_attention","full_attention","full_attention","full_attention"])", "use_sliding_window is false"},
      {"qwen2", R"("sliding_window":8,"use_sliding_window":true,"max_window_layers":2,"layer_types":["sliding_attention","full_attention","full_attention","full_attention"])", "layer_types disagrees"},
      {"qwen2", R"("use_sliding_window":true)", "use_sliding_window is true but sliding_window is null"},
      {"llama", R"("dtype":"float32","torch_dtype":"bfloat16")", "dtype 'float32' and torch_dtype 'bfloat16' disagree"},
      {"llama", R"("torch_dtype":"int8")", "unsupported dtype 'int8'"},
      {"llama", R"("max_position_embeddings":3.2e111)", "field 'max_position_embeddings' must be an integer"},
      {"llama", R"("hidden_size":64.5)", "field 'hidden_size' must be an integer, got 64.5"},
      {"llama", R"("num_attention_heads":1e300)", "field 'num_attention_heads' must be an integer"},
      {"llama", R"("vocab_size":18446744073709551615)", "field 'vocab_size' is out of range"},
      {"llama", R"("rope_scaling":{"rope_type":"llama3","factor":8,"low_freq_factor":1,"high_freq_factor":4,"original_max_position_embeddings":8192.5})",
       "field 'rope_scaling.original_max_position_embeddings' must be an integer"},
      {"llama", R"("rope_theta":"big")", "field 'rope_theta' must be a finite number"},
  };
  for (const Case& c : cases) {
    // Later keys win in the JSON reader, so a case may override a base field.
    const std::string msg = error_of([&] { parse_model_config(small_config(c.model_type, c.extra), "config.json"); });
    EXPECT_NE(msg.find(c.expect), std::string::npos) << "expected '" << c.expect << "', got '" << msg << "'";
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_EQ(msg.rfind("config.json", 0), 0u) << msg;
  }
  // Integral floats are integers.
  EXPECT_EQ(parse_model_config(small_config("llama", R"("max_position_embeddings":8192.0)"), "c").max_position_embeddings, 8192);
}

// Inputs the fuzzer found, kept as regression tests.
TEST(Config, FuzzerFoundInputsAreRefused) {
  const std::string dir = std::string(KVSCOPE_SOURCE_DIR) + "/tests/fuzz/regressions/";
  const std::string msg = error_of([&] { parse_model_config(read_text_file(dir + "config_huge_float.json"), "config_huge_float.json"); });
  EXPECT_NE(msg.find("field 'max_position_embeddings' must be an integer"), std::string::npos) << msg;
}

TEST(Selection, ParsesRangesAndRejectsNonsense) {
  EXPECT_EQ(parse_selection("0-3,7", 8, "layer", "--layers"), (std::vector<int>{0, 1, 2, 3, 7}));
  EXPECT_EQ(parse_selection("7, 0-1", 8, "layer", "--layers"), (std::vector<int>{0, 1, 7}));
  EXPECT_EQ(parse_selection("all", 3, "layer", "--layers"), (std::vector<int>{0, 1, 2}));
  // Every refusal names the option it came from.
  for (const char* bad : {"3-1", "8", "a", "1-", "-1", "1,,2", "99999999999", "", " ", "2,2", "0-3,2", "all,1", "1,"}) {
    const std::string msg = error_of([&] { parse_selection(bad, 8, "layer", "--layers"); });
    EXPECT_EQ(msg.rfind("--layers", 0), 0u) << "'" << bad << "': " << msg;
  }
  EXPECT_NE(error_of([] { parse_selection("2,2,1", 3, "head", "--heads"); }).find("head 2 is selected twice"), std::string::npos);
}

TEST(TokenIds, ReadsDocumentedFormat) {
  testing::TempDir dir("ids");
  std::ofstream(dir / "ok.txt") << "# a comment\n1 2,3\n\t4 # trailing\n";
  EXPECT_EQ(read_token_ids_file(dir / "ok.txt", 10), (std::vector<int64_t>{1, 2, 3, 4}));
  std::ofstream(dir / "oov.txt") << "1 2 10";
  EXPECT_NE(error_of([&] { read_token_ids_file(dir / "oov.txt", 10); }).find("out of vocabulary"), std::string::npos);
  std::ofstream(dir / "neg.txt") << "1 -2";
  EXPECT_NE(error_of([&] { read_token_ids_file(dir / "neg.txt", 10); }).find("not a token id"), std::string::npos);
  std::ofstream(dir / "empty.txt") << "# nothing\n";
  EXPECT_NE(error_of([&] { read_token_ids_file(dir / "empty.txt", 10); }).find("no token ids"), std::string::npos);
}

}  // namespace
}  // namespace kvscope
