#pragma once
// The words BPE has already merged during one encode call. Text repeats its words, so most
// lookups hit; keys and tokens live in flat arrays and the table is open-addressed, so a
// hit touches a few cache lines instead of chasing node, string and vector pointers.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kvscope {

class BpeWordCache {
 public:
  struct Tokens {
    const int32_t* ids;
    const uint32_t* ends;
    size_t count;
  };

  // The tokens of `word`, or {nullptr, nullptr, 0} when it is not cached.
  Tokens find(std::string_view word) const {
    if (slots_.empty()) return {nullptr, nullptr, 0};
    const uint64_t h = hash(word);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.key_len == kEmpty) return {nullptr, nullptr, 0};
      if (s.hash == h && s.key_len == word.size() && keys_.compare(s.key_offset, s.key_len, word) == 0) {
        return {ids_.data() + s.token_offset, ends_.data() + s.token_offset, s.token_count};
      }
    }
  }

  void insert(std::string_view word, const int32_t* ids, const uint32_t* ends, size_t count) {
    if ((used_ + 1) * 2 > slots_.size()) grow();
    const uint64_t h = hash(word);
    size_t i = h & mask_;
    while (slots_[i].key_len != kEmpty) i = (i + 1) & mask_;
    slots_[i] = Slot{h, static_cast<uint32_t>(keys_.size()), static_cast<uint32_t>(word.size()), static_cast<uint32_t>(ids_.size()),
                     static_cast<uint32_t>(count)};
    keys_.append(word);
    ids_.insert(ids_.end(), ids, ids + count);
    ends_.insert(ends_.end(), ends, ends + count);
    ++used_;
  }

 private:
  static constexpr uint32_t kEmpty = 0xFFFFFFFFu;
  struct Slot {
    uint64_t hash;
    uint32_t key_offset, key_len, token_offset, token_count;
  };

  static uint64_t hash(std::string_view s) {
    uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a, then a final mix for the low bits
    for (const char c : s) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
  }

  void grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 4096 : old.size() * 2, Slot{0, 0, kEmpty, 0, 0});
    mask_ = slots_.size() - 1;
    for (const Slot& s : old) {
      if (s.key_len == kEmpty) continue;
      size_t i = s.hash & mask_;
      while (slots_[i].key_len != kEmpty) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }

  std::vector<Slot> slots_;
  size_t mask_ = 0, used_ = 0;
  std::string keys_;
  std::vector<int32_t> ids_;
  std::vector<uint32_t> ends_;
};

}  // namespace kvscope
