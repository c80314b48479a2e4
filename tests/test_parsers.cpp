// Parsers of untrusted input (safetensors headers, config.json, selections, id files), on
// hand-built valid and hostile inputs. No LibTorch needed.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "core/error.h"
#include "core/selection.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/tokenizer.h"
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

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

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
      {"{\"model_type\":\"llama\"," + base + ",\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4}}", "unsupported rope_scaling type 'yarn'"},
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

TEST(Selection, ParsesRangesAndRejectsNonsense) {
  EXPECT_EQ(parse_selection("0-3,7", 8, "layer"), (std::vector<int>{0, 1, 2, 3, 7}));
  EXPECT_EQ(parse_selection("all", 3, "layer"), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(parse_selection("2,2,1", 3, "head"), (std::vector<int>{1, 2}));
  for (const char* bad : {"3-1", "8", "a", "1-", "-1", "1,,2", "99999999999"}) {
    EXPECT_THROW(parse_selection(bad, 8, "layer"), Error) << bad;
  }
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
