// kvscope's SentencePiece reader against libsentencepiece itself, on real text. This
// binary links libsentencepiece and not LibTorch (the two cannot share a process).
#include <gtest/gtest.h>
#include <sentencepiece_processor.h>

#include "model/config.h"
#include "model/sentencepiece_model.h"
#include "model/tokenizer.h"
#include "support/test_paths.h"

namespace kvscope {
namespace {

void expect_same_encoding(const std::string& text, std::string model_path = "") {
  if (model_path.empty()) model_path = (testing::stories_dir() / "tokenizer.model").string();
  sentencepiece::SentencePieceProcessor reference;
  ASSERT_TRUE(reference.Load(model_path).ok());
  const SentencePieceModel ours = SentencePieceModel::parse(read_text_file(model_path), model_path);
  const auto proto = reference.EncodeAsImmutableProto(text);
  const auto got = ours.encode(text);
  ASSERT_EQ(got.size(), proto.pieces().size()) << "text: " << text.substr(0, 80);
  for (size_t i = 0; i < got.size(); ++i) {
    const auto p = proto.pieces(static_cast<int>(i));
    ASSERT_EQ(got[i].id, static_cast<int>(p.id())) << "piece " << i << " of: " << text.substr(0, 80);
  }
  std::vector<int> ids;
  std::vector<int64_t> ids64;
  for (const auto& p : got) { ids.push_back(p.id); ids64.push_back(p.id); }
  std::string want_text;
  reference.Decode(ids, &want_text);
  EXPECT_EQ(ours.decode(ids64), want_text);
}

TEST(TokenizerReference, EdgeCases) {
  KVSCOPE_REQUIRE_SHARED();
  for (const char* s : {"Hello world", "  leading and  double  spaces ", "new\nlines\n\nand\ttabs", "",
                        "caf\xc3\xa9 na\xc3\xafve \xe2\x80\x94 \xe6\x97\xa5\xe6\x9c\xac", "\xff\xfe broken utf8",
                        "Once upon a time, there was a little girl named Lily."}) {
    expect_same_encoding(s);
  }
}

TEST(TokenizerReference, BooksParagraphByParagraph) {
  KVSCOPE_REQUIRE_SHARED();
  for (const char* book : {"text/austen/persuasion.txt", "text/mobydick/mobydick_pg2701.txt", "text/kjv/kjv_bible.txt"}) {
    const std::string text = read_text_file(testing::shared_dir() / book);
    // 40 windows of 2000 bytes spread through each book.
    for (size_t k = 0; k < 40; ++k) expect_same_encoding(text.substr(k * (text.size() / 40), 2000));
  }
}


// The embedded model's tokenizer (trained by spm_train) encodes as libsentencepiece does.
TEST(TokenizerReference, EmbeddedModelTokenizer) {
  const std::string model = std::string(KVSCOPE_SOURCE_DIR) + "/data/models/tinybooks/tokenizer.model";
  for (const char* s : {"Paul, a servant of Jesus Christ, called to be an apostle,", "  two  spaces\nand a newline\n\n",
                        "It is a truth universally acknowledged, that a single man in possession of a good fortune",
                        "caf\xc3\xa9 \xe2\x80\x94 1234567 \xff"}) {
    expect_same_encoding(s, model);
  }
}

}  // namespace
}  // namespace kvscope
