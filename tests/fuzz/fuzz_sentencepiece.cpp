// libFuzzer target: the tokenizer.model (protobuf) reader, then encoding and decoding with it.
#include <cstdint>
#include <string>

#include "core/error.h"
#include "model/sentencepiece_model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto m = kvscope::SentencePieceModel::parse(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    const auto pieces = m.encode("Once upon a time \xff\xfe, caf\xc3\xa9  two  spaces\n");
    std::vector<int64_t> ids;
    for (const auto& p : pieces) {
      if (p.id < 0 || p.id >= m.size()) __builtin_trap();
      ids.push_back(p.id);
    }
    (void)m.decode(ids);
  } catch (const kvscope::Error&) {
  }
  return 0;
}
