#pragma once
// The BPE model of tokenizer.json: vocabulary, ranked merges, byte fallback, unknown
// token, ignore_merges. Words are merged with a priority queue over symbol pairs (lowest
// rank first, leftmost first on ties), the order the Hugging Face implementations use.
#include <nlohmann/json_fwd.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/bpe_word_cache.h"

namespace kvscope {

// GPT-2's reversible map from bytes to printable characters (UTF-8 encoded).
const std::array<std::string, 256>& byte_level_alphabet();

class BpeModel {
 public:
  // `byte_level`: words arrive as raw bytes and the vocabulary is written in the GPT-2
  // alphabet (set when the pre-tokenizer is ByteLevel).
  static BpeModel parse(const nlohmann::json& model, bool byte_level, const std::string& label);

  using Cache = BpeWordCache;

  // Appends the tokens of one word: their ids and the byte offset where each ends.
  void encode_word(const std::string& word, std::vector<int32_t>& ids, std::vector<uint32_t>& ends, Cache& cache) const;

  int64_t size() const { return static_cast<int64_t>(id_to_token_.size()); }
  const std::string& token(int64_t id) const { return id_to_token_[static_cast<size_t>(id)]; }
  int32_t find(const std::string& token) const {
    const auto it = vocab_.find(token);
    return it == vocab_.end() ? -1 : it->second;
  }
  bool byte_level() const { return byte_level_; }
  bool byte_fallback() const { return byte_fallback_; }
  size_t merge_count() const { return merges_.size(); }

 private:
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  static uint64_t pair_key(int32_t a, int32_t b) { return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b); }
  void merge(std::vector<int32_t>& sym, std::vector<uint32_t>& len) const;
  void encode_uncached(const std::string& word, std::vector<int32_t>& ids, std::vector<uint32_t>& ends, Cache& cache) const;
  void encode_chunk(const std::string& word, size_t begin, size_t end, std::vector<int32_t>& ids, std::vector<uint32_t>& ends) const;

  std::unordered_map<std::string, int32_t> vocab_;  // as written in tokenizer.json
  std::unordered_map<std::string, int32_t> raw_;    // keyed by the bytes a token stands for
  std::vector<std::string> id_to_token_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::array<int32_t, 256> byte_ids_{};      // byte-level: the symbol of each byte
  std::array<int32_t, 256> fallback_ids_{};  // byte_fallback: <0xXX>
  int32_t unk_id_ = -1;
  bool byte_level_ = false;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  // No token made by a merge holds U+2581 right after another character, so no token can
  // span such a position: a long SentencePiece-style word may be cut there and its parts
  // merged (and cached) separately with the same result.
  bool cut_before_metaspace_ = false;
};

}  // namespace kvscope
