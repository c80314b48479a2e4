#pragma once
// tokenizer.json pre-tokenizers: Split (regex or string; Isolated or Removed), ByteLevel,
// Metaspace and Sequence of these. They cut normalised text into the words BPE sees.
#include <nlohmann/json_fwd.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/aligned_text.h"

namespace kvscope {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  using Emit = std::function<void(AlignedText&&)>;
  // Splits (and may rewrite) one piece, passing each resulting piece to `emit` in order:
  // pieces stream through a Sequence without being collected. `first_section` is true for
  // text before any added token (Metaspace's prepend_scheme "first").
  virtual void split(AlignedText&& piece, bool first_section, const Emit& emit) const = 0;
  // True when words reach the model as bytes mapped to printable characters (GPT-2 style).
  virtual bool byte_level() const { return false; }
};

// Null JSON gives nullptr; unsupported types and options are refused by name.
std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const nlohmann::json& spec, const std::string& label);

}  // namespace kvscope
