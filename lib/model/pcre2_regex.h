#pragma once
// The regular expressions of tokenizer.json pre-tokenizers (written for Oniguruma) run with
// PCRE2 in UTF + Unicode-property mode, JIT-compiled. Constructs whose meaning differs
// between the two engines are translated or refused by name.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace kvscope {

class Pcre2Regex {
 public:
  // `label` names the pattern's place in errors.
  Pcre2Regex(const std::string& pattern, const std::string& label);
  ~Pcre2Regex();
  Pcre2Regex(Pcre2Regex&&) noexcept;
  Pcre2Regex& operator=(Pcre2Regex&&) noexcept;

  // Calls `on_match(begin, end)` for the non-overlapping matches in valid UTF-8 `text`,
  // left to right.
  void for_each_match(const std::string& text, const std::function<void(size_t, size_t)>& on_match) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Oniguruma's \s and \S are Unicode White_Space; PCRE2's differ slightly, so they are
// rewritten to an explicit set. Exposed for tests.
std::string translate_oniguruma_pattern(const std::string& pattern, const std::string& label);

}  // namespace kvscope
