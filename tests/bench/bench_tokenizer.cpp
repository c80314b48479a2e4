// Tokenizer throughput: MB of text per second on one thread, encode only (the tokenizer
// is loaded once, outside the timing). Usage: kvscope_bench_tokenizer TOKENIZER_DIR TEXT [REPEATS]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "model/tokenizer.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s TOKENIZER_DIR TEXT [REPEATS]\n", argv[0]);
    return 2;
  }
  try {
    const auto tok = kvscope::Tokenizer::load(argv[1]);
    const std::string text = kvscope::read_text_file(argv[2]);
    const int repeats = argc > 3 ? std::atoi(argv[3]) : 3;
    double best = 1e30;
    size_t tokens = 0;
    for (int r = 0; r < repeats; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      tokens = tok->encode(text, false).ids.size();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::printf("kvscope  %-50s %8.2f MB in %7.3f s = %8.2f MB/s (%zu tokens)\n", argv[1], text.size() / 1e6, best, text.size() / 1e6 / best, tokens);
  } catch (const kvscope::Error& e) {
    std::fprintf(stderr, "kvscope_bench_tokenizer: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
