#pragma once
// tokenizer.json normalizers: NFC, NFD, NFKC, NFKD (ICU), Prepend, Replace (string
// patterns) and Sequence of these. Each keeps track of where its output bytes came from.
#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>

#include "model/aligned_text.h"

namespace kvscope {

class TextNormalizer {
 public:
  virtual ~TextNormalizer() = default;
  virtual void apply(AlignedText& text) const = 0;
};

// Null JSON gives nullptr (no normaliser); unsupported types are refused by name.
std::unique_ptr<TextNormalizer> parse_normalizer(const nlohmann::json& spec, const std::string& label);

}  // namespace kvscope
