#include "model/pcre2_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"

namespace kvscope {

namespace {
// Unicode White_Space: controls 9-13, U+0085 and the separators (Zs, Zl, Zp).
const char* kWhiteSpace = "\\x{9}-\\x{d}\\x{85}\\p{Z}";
}  // namespace

std::string translate_oniguruma_pattern(const std::string& p, const std::string& label) {
  std::string out;
  int class_depth = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[i + 1];
      ++i;
      if (e == 's') {
        out += class_depth ? std::string(kWhiteSpace) : "[" + std::string(kWhiteSpace) + "]";
      } else if (e == 'S') {
        if (class_depth) fail(label, ": \\S inside a character class is not supported");
        out += "[^" + std::string(kWhiteSpace) + "]";
      } else if (e == 'w' || e == 'W' || e == 'b' || e == 'B' || e == 'G' || e == 'h' || e == 'H' || e == 'A' || e == 'z' || e == 'Z' || e == 'X' || e == 'R') {
        // Their Oniguruma definitions differ from PCRE2's; no Llama-family tokenizer uses them.
        fail(label, ": regex escape \\", e, " is not supported (its Oniguruma meaning differs from PCRE2's)");
      } else {
        out += '\\';
        out += e;
      }
      continue;
    }
    if (c == '[') {
      if (i + 1 < p.size() && p[i + 1] == ':') fail(label, ": POSIX bracket expressions are not supported");
      ++class_depth;
      out += c;
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < p.size() && p[i + 1] == '^') { out += '^'; ++i; }
      if (i + 1 < p.size() && p[i + 1] == ']') { out += "\\]"; ++i; }
      continue;
    }
    if (c == ']' && class_depth) --class_depth;
    if (c == '&' && class_depth && i + 1 < p.size() && p[i + 1] == '&') fail(label, ": character-class intersection '&&' is not supported");
    out += c;
  }
  return out;
}

struct Pcre2Regex::Impl {
  pcre2_code* code = nullptr;
  ~Impl() {
    if (code) pcre2_code_free(code);
  }
};

Pcre2Regex::Pcre2Regex(const std::string& pattern, const std::string& label) : impl_(std::make_unique<Impl>()) {
  const std::string translated = translate_oniguruma_pattern(pattern, label);
  int error = 0;
  PCRE2_SIZE at = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(), PCRE2_UTF | PCRE2_UCP, &error, &at, nullptr);
  if (!impl_->code) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof message);
    fail(label, ": regex does not compile at offset ", at, ": ", reinterpret_cast<const char*>(message));
  }
  // Without JIT (some architectures) PCRE2 interprets the pattern; results are the same.
  pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE);
}

Pcre2Regex::~Pcre2Regex() = default;
Pcre2Regex::Pcre2Regex(Pcre2Regex&&) noexcept = default;
Pcre2Regex& Pcre2Regex::operator=(Pcre2Regex&&) noexcept = default;

void Pcre2Regex::for_each_match(const std::string& text, const std::function<void(size_t, size_t)>& on_match) const {
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(pcre2_match_data_create_from_pattern(impl_->code, nullptr),
                                                                         &pcre2_match_data_free);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos <= text.size()) {
    // The text was validated once by the caller; PCRE2 need not check it at every call.
    const int rc = pcre2_match(impl_->code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof message);
      fail("regex match failed: ", reinterpret_cast<const char*>(message));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    const size_t b = ov[0], e = ov[1];
    if (e > b) {
      on_match(b, e);
      pos = e;
    } else {
      // An empty match: step over one whole character, as the reference engines do.
      if (b >= text.size()) break;
      size_t n = 1;
      while (b + n < text.size() && (static_cast<unsigned char>(text[b + n]) & 0xC0) == 0x80) ++n;
      pos = b + n;
    }
  }
}

}  // namespace kvscope
