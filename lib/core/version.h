#pragma once
#include <string>

namespace kvscope {
const char* version();
const char* git_commit();
// Versions of the libraries a result depends on, as one line, for provenance records.
std::string library_versions();
}  // namespace kvscope
