// libFuzzer target: the dump reader's validation, on arbitrary bytes written to a file.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "core/error.h"
#include "dump/dump_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/kvscope-fuzz-dump-" + std::to_string(::getpid()) + ".h5";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    const auto r = kvscope::DumpReader::open(path);
    for (size_t d = 0; d < r.documents().size(); ++d)
      for (int64_t l : r.layers()) (void)r.read(static_cast<int64_t>(d), l, "v");
  } catch (const kvscope::Error&) {
  }
  return 0;
}
