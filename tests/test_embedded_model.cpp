// The embedded model in data/models/tinybooks: loads through the normal loader, matches its
// documented shape (context 2048, GQA, at most 16 MB), and on held-out text beats a unigram
// model by a wide margin — even a unigram fitted to that very text, which no honest baseline
// could be — on the Bible and on Frankenstein's modern typography.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>

#include "eval/score.h"
#include "model/llama.h"
#include "model/tokenizer.h"
#include "support/test_paths.h"

namespace kvscope {
namespace {

const std::filesystem::path kModel = std::filesystem::path(KVSCOPE_SOURCE_DIR) / "data" / "models" / "tinybooks";

// The held-out Epistles: from Debian's `bible` command (as the study uses), else ../shared.
std::string held_out_bible() {
  std::string text;
  if (FILE* p = ::popen("bible Rom1:1-Jude1:25 2>/dev/null", "r")) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) text.append(buf, n);
    ::pclose(p);
  }
  if (text.size() > 100000) return text;
  const auto kjv = testing::shared_dir() / "text" / "kjv" / "kjv_bible.txt";
  if (!std::filesystem::exists(kjv)) return "";
  const std::string all = read_text_file(kjv);
  const size_t a = all.find("\nRomans 1\n"), b = all.find("\nRevelation 1\n");
  return a == std::string::npos || b == std::string::npos ? "" : all.substr(a, b - a);
}

TEST(EmbeddedModel, LoadsAndMatchesItsConfig) {
  const LlamaModel model = LlamaModel::load(kModel);
  const ModelConfig& c = model.config();
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_LT(c.num_kv_heads, c.num_heads) << "the embedded model must use GQA";
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_LE(std::filesystem::file_size(kModel / "model.safetensors"), 16u << 20);
  EXPECT_EQ(model.weights().stored_dtype, at::kBFloat16);
  EXPECT_EQ(Tokenizer::load(kModel, c)->vocab_size(), c.vocab_size);
}

// Perplexity of the first `context` tokens of `text` against a unigram fitted to those tokens.
void expect_far_below_unigram(const std::string& text, const std::string& label) {
  const LlamaModel model = LlamaModel::load(kModel);
  const auto tok = Tokenizer::load(kModel, model.config());
  std::vector<int64_t> ids = tok->encode(text).ids;
  ids.resize(std::min<size_t>(ids.size(), static_cast<size_t>(model.config().max_position_embeddings)));
  const double model_ppl = score_tokens(model, ids, ScoreOptions{}).perplexity();
  std::map<int64_t, double> counts;
  for (size_t i = 1; i < ids.size(); ++i) counts[ids[i]] += 1;
  double nll = 0;
  for (size_t i = 1; i < ids.size(); ++i) nll -= std::log(counts[ids[i]] / static_cast<double>(ids.size() - 1));
  const double oracle_unigram_ppl = std::exp(nll / static_cast<double>(ids.size() - 1));
  std::printf("%s: embedded model ppl %.2f, unigram fitted to the same text %.2f\n", label.c_str(), model_ppl, oracle_unigram_ppl);
  EXPECT_LT(model_ppl, 0.5 * oracle_unigram_ppl) << label;
}

TEST(EmbeddedModel, HeldOutPerplexityFarBelowUnigram) {
  const std::string text = held_out_bible();
  if (text.empty()) GTEST_SKIP() << "no held-out Bible text (install bible-kjv, or provide ../shared)";
  expect_far_below_unigram(text, "KJV Epistles");
}

// Frankenstein was held out of training entirely; it is printed with curly quotes and dashes.
TEST(EmbeddedModel, ModernTypographyFarBelowUnigram) {
  const auto path = testing::shared_dir() / "text" / "frankenstein" / "frankenstein.txt";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no Frankenstein text (../shared/text)";
  const std::string text = read_text_file(path);
  const size_t start = text.find("\xE2\x80\x9C");  // from the first typographic quote on
  ASSERT_NE(start, std::string::npos);
  expect_far_below_unigram(text.substr(start), "Frankenstein");
}

}  // namespace
}  // namespace kvscope
