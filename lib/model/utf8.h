#pragma once
// UTF-8 helpers shared by the tokenizer.json pipeline: validation, code points, and the
// lossy decoding (maximal invalid subparts become U+FFFD) that Hugging Face decoders use.
#include <cstdint>
#include <string>

namespace kvscope {

// Length of the UTF-8 sequence starting with lead byte `b` (1 for invalid lead bytes).
inline int utf8_length(unsigned char b) { return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4; }

// Byte offset of the first invalid sequence, or -1 when `text` is valid UTF-8.
int64_t first_invalid_utf8(const std::string& text);

// Decodes the code point at `i` of valid UTF-8 and advances `i` past it.
char32_t next_code_point(const std::string& text, size_t& i);

void append_utf8(std::string& out, char32_t c);

// Replaces each maximal invalid subpart with U+FFFD (the WHATWG / Rust from_utf8_lossy rule).
std::string utf8_lossy(const std::string& bytes);

// Unicode White_Space (what Rust's char::is_whitespace and Oniguruma's \s test).
bool is_unicode_whitespace(char32_t c);

}  // namespace kvscope
