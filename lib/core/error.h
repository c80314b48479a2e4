#pragma once
// kvscope reports every user-facing failure as kvscope::Error with a one-line message that
// says what was wrong and, where possible, how to fix it. Tools print it and exit non-zero.
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace kvscope {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <typename... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}

template <typename... Parts>
[[noreturn]] void fail(Parts&&... parts) {
  throw Error(concat(std::forward<Parts>(parts)...));
}

}  // namespace kvscope
