#pragma once
#include <functional>
#include <string>

#include "core/error.h"

namespace kvscope::testing {

// The message of the kvscope::Error that `f` throws, or "" when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace kvscope::testing
