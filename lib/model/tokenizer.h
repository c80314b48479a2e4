#pragma once
// Text to token ids, through the model directory's tokenizer.json (Hugging Face tokenizers
// format) or, when there is none, its SentencePiece tokenizer.model: tokenizer.json wins
// when both are present, as AutoTokenizer does. Any other model can be fed pre-tokenized
// ids (see read_token_ids_file).
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace kvscope {

struct ModelConfig;

struct Encoding {
  std::vector<int64_t> ids;
  std::vector<std::string> pieces;
  // Byte offsets [begin, end) of each token in the input text; BOS/EOS get {-1, -1}.
  std::vector<std::pair<int64_t, int64_t>> byte_spans;
};

class Tokenizer {
 public:
  // Special tokens (BOS, and EOS where the template has one) follow tokenizer.json's
  // post-processor; for tokenizer.model, BOS is prepended when the model has a BOS id and
  // tokenizer_config.json does not set add_bos_token to false.
  static std::unique_ptr<Tokenizer> load(const std::filesystem::path& model_dir, const ModelConfig& config);
  // Without a model config (a directory holding only tokenizer files): ids are not checked
  // against a vocab_size.
  static std::unique_ptr<Tokenizer> load(const std::filesystem::path& model_dir);
  ~Tokenizer();

  Encoding encode(const std::string& text) const { return encode(text, true); }
  // `add_special` false: no BOS/EOS (add_special_tokens=False).
  Encoding encode(const std::string& text, bool add_special) const;
  std::string decode(const std::vector<int64_t>& ids) const;
  std::string piece(int64_t id) const;
  int64_t vocab_size() const;
  bool adds_bos() const { return add_bos_; }
  const std::string& description() const { return description_; }

 private:
  Tokenizer();
  static std::unique_ptr<Tokenizer> load(const std::filesystem::path& model_dir, const ModelConfig* config);
  struct Impl;
  std::unique_ptr<Impl> impl_;
  bool add_bos_ = true;
  int64_t bos_id_ = -1;
  std::string description_;
};

// The pre-tokenized input format: token ids as decimal integers separated by whitespace
// or commas; '#' starts a comment that runs to the end of the line. The ids are used
// exactly as written (no BOS is added). Every id must be below vocab_size.
std::vector<int64_t> read_token_ids_file(const std::filesystem::path& path, int64_t vocab_size);

std::string read_text_file(const std::filesystem::path& path);

}  // namespace kvscope
