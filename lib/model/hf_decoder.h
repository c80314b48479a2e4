#pragma once
// tokenizer.json decoders: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip and
// Sequence, each a step from a list of token strings to another (as the reference does).
#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

namespace kvscope {

class TokenDecoder {
 public:
  virtual ~TokenDecoder() = default;
  // `added`: the contents of added tokens, which byte-level decoding passes through as text.
  virtual void apply(std::vector<std::string>& tokens, const std::unordered_set<std::string>& added) const = 0;
};

// Null JSON gives nullptr (tokens are joined with spaces, as the reference does).
std::unique_ptr<TokenDecoder> parse_decoder(const nlohmann::json& spec, const std::string& label);

}  // namespace kvscope
