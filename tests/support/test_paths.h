#pragma once
#include <cstdlib>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

namespace kvscope::testing {

// ../shared beside the repository, or KVSCOPE_SHARED_DIR. Tests that need it skip cleanly.
inline std::filesystem::path shared_dir() {
  if (const char* env = std::getenv("KVSCOPE_SHARED_DIR")) return env;
  return KVSCOPE_SHARED_DIR_DEFAULT;
}

inline std::filesystem::path stories_dir() { return shared_dir() / "models" / "stories260K-hf"; }

#define KVSCOPE_REQUIRE_SHARED()                                                              \
  do {                                                                                        \
    if (!std::filesystem::exists(::kvscope::testing::stories_dir() / "config.json"))          \
      GTEST_SKIP() << "shared data not found at " << ::kvscope::testing::shared_dir().string(); \
  } while (0)

// A fresh directory under the build tree's temp area, removed at scope exit.
class TempDir {
 public:
  explicit TempDir(const std::string& tag);
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

}  // namespace kvscope::testing
