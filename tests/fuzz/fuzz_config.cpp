// libFuzzer target: the config.json parser.
#include <cstdint>
#include <string>

#include "core/error.h"
#include "model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const kvscope::ModelConfig c = kvscope::parse_model_config(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    (void)c.parameter_count();
  } catch (const kvscope::Error&) {
  }
  return 0;
}
