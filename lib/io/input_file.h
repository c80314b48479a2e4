#pragma once
// Reading an input file a user named: only a regular file, of bounded size, so a FIFO, a
// device such as /dev/zero or a directory is refused by name instead of blocking or reading
// without end.
#include <cstdint>
#include <filesystem>
#include <string>

namespace kvscope {

// KVSCOPE_MAX_INPUT_BYTES, default 4 GiB: larger inputs are refused before reading.
int64_t max_input_bytes();

std::string read_input_file(const std::filesystem::path& path);

// Refuses text that is not UTF-8 (binary files, another encoding), naming the byte offset.
void check_utf8_text(const std::string& text, const std::string& source);

}  // namespace kvscope
