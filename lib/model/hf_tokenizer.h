#pragma once
// Hugging Face tokenizer.json (the `tokenizers` library's format) for the tokenizers
// Llama-family checkpoints ship: BPE with byte-level or SentencePiece-style (Metaspace /
// Prepend + Replace, byte fallback) pre-processing, added tokens matched in the text,
// TemplateProcessing for BOS/EOS. Every other component is refused by name.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kvscope {

struct HfToken {
  int64_t id;
  int64_t begin, end;  // byte range in the input text; {-1, -1} for template tokens
};

class HfTokenizer {
 public:
  // `config_json` is tokenizer_config.json's text, or empty when there is none; `label`
  // names the file in errors.
  static HfTokenizer parse(const std::string& json_text, const std::string& config_json, const std::string& label);
  HfTokenizer(HfTokenizer&&) noexcept;
  HfTokenizer& operator=(HfTokenizer&&) noexcept;
  ~HfTokenizer();

  // `add_special`: apply the post-processor's template (BOS/EOS), as add_special_tokens.
  // Text that is not valid UTF-8 is refused.
  std::vector<HfToken> encode(const std::string& text, bool add_special) const;
  std::string decode(const std::vector<int64_t>& ids) const;

  // Token string of an id ("" when no token has it).
  const std::string& token(int64_t id) const;
  // One past the largest id (model vocabulary and added tokens).
  int64_t size() const;
  bool template_adds_tokens() const;
  // e.g. "BPE (byte-level), 128256 tokens, 280147 merges, 256 added"
  std::string summary() const;

 private:
  HfTokenizer();
  static HfTokenizer parse_checked(const std::string& json_text, const std::string& config_json, const std::string& label);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvscope
