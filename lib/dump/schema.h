#pragma once
// The kvscope dump schema (docs: docs/dump_schema.md). Bump kDumpSchemaVersion on any change
// a reader could misread; readers refuse other versions.
#include <cstdint>

namespace kvscope {

inline constexpr const char* kDumpSchemaName = "kvscope.dump";
inline constexpr int64_t kDumpSchemaVersion = 1;

}  // namespace kvscope
