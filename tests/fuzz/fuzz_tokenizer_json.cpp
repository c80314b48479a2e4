// libFuzzer target: the tokenizer.json reader, then encoding and decoding with whatever it
// accepted (the input itself as text, and a fixed text with special-token strings).
#include <cstdint>
#include <string>

#include "core/error.h"
#include "model/hf_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  try {
    const kvscope::HfTokenizer tok = kvscope::HfTokenizer::parse(input, "", "fuzz");
    for (const std::string& text : {std::string("Hello  world <s> caf\xC3\xA9 \xF0\x9F\x91\x8D\r\n123"), input}) {
      try {
        std::vector<int64_t> ids;
        for (const auto& t : tok.encode(text, true)) ids.push_back(t.id);
        (void)tok.decode(ids);
      } catch (const kvscope::Error&) {
      }
    }
  } catch (const kvscope::Error&) {
  }
  return 0;
}
