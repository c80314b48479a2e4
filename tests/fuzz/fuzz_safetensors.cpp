// libFuzzer target: the safetensors header and tensor-table parser.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    kvscope::parse_safetensors(reinterpret_cast<const std::byte*>(data), size, "fuzz");
  } catch (const kvscope::Error&) {
  }
  return 0;
}
