// libFuzzer target: the layer/head selection syntax ("0-3,7"). The first byte picks the count.
#include <cstdint>
#include <string>

#include "core/error.h"
#include "core/selection.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  try {
    const auto v = kvscope::parse_selection(std::string(reinterpret_cast<const char*>(data) + 1, size - 1), data[0], "layer", "--layers");
    for (size_t i = 0; i < v.size(); ++i) {
      if (v[i] < 0 || v[i] >= data[0]) __builtin_trap();  // every index in range
      if (i > 0 && v[i] <= v[i - 1]) __builtin_trap();     // sorted, each once
    }
  } catch (const kvscope::Error&) {
  }
  return 0;
}
