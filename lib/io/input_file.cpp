#include "io/input_file.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

#include "core/error.h"

namespace kvscope {

int64_t max_input_bytes() {
  if (const char* env = std::getenv("KVSCOPE_MAX_INPUT_BYTES")) {
    char* end = nullptr;
    const long long v = std::strtoll(env, &end, 10);
    if (end == env || *end != '\0' || v <= 0) fail("KVSCOPE_MAX_INPUT_BYTES='", env, "': expected a positive number of bytes");
    return v;
  }
  return int64_t{4} << 30;
}

std::string read_input_file(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail(path.string(), ": cannot read (no such file, or no permission)");
  if (S_ISDIR(st.st_mode)) fail(path.string(), ": is a directory, expected a file");
  if (!S_ISREG(st.st_mode)) fail(path.string(), ": is not a regular file (a FIFO, device or socket); inputs must be regular files");
  if (st.st_size > max_input_bytes()) {
    fail(path.string(), ": ", st.st_size, " bytes is more than the ", max_input_bytes(), " bytes kvscope reads (KVSCOPE_MAX_INPUT_BYTES)");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path.string(), ": cannot read");
  std::string data(static_cast<size_t>(st.st_size), '\0');
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  data.resize(static_cast<size_t>(in.gcount()));
  return data;
}

void check_utf8_text(const std::string& text, const std::string& source) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = s[i];
    if (c == 0) fail(source, ": a NUL byte at offset ", i, "; expected UTF-8 text (is this a binary file?)");
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = len > 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) ok = (s[i + k] & 0xC0) == 0x80;
    if (ok && len > 1) {
      // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8 either.
      uint32_t cp = c & (0x7F >> len);
      for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (s[i + k] & 0x3F);
      ok = !(len == 2 && cp < 0x80) && !(len == 3 && cp < 0x800) && !(len == 4 && cp < 0x10000) && !(cp >= 0xD800 && cp <= 0xDFFF) &&
           cp <= 0x10FFFF;
    }
    if (!ok) fail(source, ": invalid UTF-8 at byte offset ", i, "; expected UTF-8 text (convert it first, e.g. with iconv)");
    i += len;
  }
}

}  // namespace kvscope
