#pragma once
// `kvscope info DUMP`: what a dump holds and how it was made. LibTorch-free, so the launcher
// answers it without starting the model binary.
#include <string>

namespace kvscope::tools {

int print_dump_info(const std::string& path);

}  // namespace kvscope::tools
