#include "dump_info.h"

#include <cstdio>
#include <filesystem>

#include "common.h"
#include "dump/dump_reader.h"

namespace kvscope::tools {

int print_dump_info(const std::string& path) {
  const DumpReader r = DumpReader::open(path, read_timeout_seconds());
  std::error_code ec;
  std::printf("dump           %s (%.1f MB, schema %s v%s)\n", path.c_str(), std::filesystem::file_size(path, ec) / 1048576.0,
              r.attribute("schema").c_str(), "1");
  std::printf("created        %s by kvscope %s (%s)\n", r.attribute("created").c_str(), r.attribute("kvscope_version").c_str(),
              r.attribute("git_commit").c_str());
  std::printf("command        %s\n", r.attribute("command_line").c_str());
  std::printf("model          %s: %lld layers, %lld heads, %lld kv heads, head_dim %lld\n", r.attribute("model_path").c_str(),
              static_cast<long long>(r.num_layers()), static_cast<long long>(r.num_heads()),
              static_cast<long long>(r.num_kv_heads()), static_cast<long long>(r.head_dim()));
  std::printf("stored         %s; layers %s; queries %s\n", r.attribute("stored_dtype").c_str(), r.attribute("layers").c_str(),
              r.has_queries() ? "yes" : "no");
  std::printf("attention      %s", r.attention_mode().c_str());
  if (!r.full_attention_layers().empty()) {
    std::printf(" (full for layers %s, heads %s)", r.attribute("full_attention_layers").c_str(), r.attribute("full_attention_heads").c_str());
  }
  std::printf("\n");
  for (size_t d = 0; d < r.documents().size(); ++d) {
    std::printf("document %-5zu %zu tokens from %s\n", d, r.documents()[d].token_ids.size(), r.documents()[d].source.c_str());
  }
  return 0;
}

}  // namespace kvscope::tools
