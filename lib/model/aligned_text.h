#pragma once
// Text being tokenised together with where each of its bytes came from in the user's
// input, so token byte spans survive normalisers and pre-tokenisers that rewrite the text.
#include <cstdint>
#include <string>
#include <vector>

namespace kvscope {

struct AlignedText {
  std::string text;
  // starts[i]: input offset of byte i; starts[text.size()]: where the text ends in the input.
  // Empty while the text is an unchanged slice of the input beginning at `offset`.
  std::vector<int64_t> starts;
  int64_t offset = 0;

  int64_t start(size_t i) const { return starts.empty() ? offset + static_cast<int64_t>(i) : starts[i]; }
  AlignedText slice(size_t begin, size_t end) const {
    AlignedText out;
    out.text = text.substr(begin, end - begin);
    if (starts.empty()) out.offset = offset + static_cast<int64_t>(begin);
    else out.starts.assign(starts.begin() + static_cast<std::ptrdiff_t>(begin), starts.begin() + static_cast<std::ptrdiff_t>(end) + 1);
    return out;
  }
  // Switches to explicit starts before an edit that changes lengths.
  void materialise() {
    if (!starts.empty()) return;
    starts.resize(text.size() + 1);
    for (size_t i = 0; i <= text.size(); ++i) starts[i] = offset + static_cast<int64_t>(i);
  }
};

}  // namespace kvscope
