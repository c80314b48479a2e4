#pragma once
#include <string>
#include <vector>

namespace kvscope::testing {

struct CliResult {
  bool exited = false;  // false: killed by a signal (a crash)
  int code = -1;
  int signal = 0;
  std::string out, err;
};

// Starts the kvscope binary with `args` as a child process (stdout and stderr to
// /dev/null) and returns its pid, for tests that signal it mid-run.
int spawn_kvscope(const std::vector<std::string>& args);

// Runs the kvscope binary with `args` (each shell-quoted) and captures its outputs.
CliResult run_kvscope(const std::vector<std::string>& args);

}  // namespace kvscope::testing
