#pragma once
#include <cstdint>
#include <functional>
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
// The same with stderr written to `stderr_path`, to wait for a line the command prints.
int spawn_kvscope(const std::vector<std::string>& args, const std::string& stderr_path);

// For synchronising with a spawned command: poll until `path` contains `text`, or until it
// is at least `bytes` long. The timeout only bounds a failure; false if it passed.
bool wait_for_text(const std::string& path, const std::string& text, double timeout_seconds = 300);
bool wait_for_size(const std::string& path, uintmax_t bytes, double timeout_seconds = 300);
bool wait_until(const std::function<bool()>& ready, double timeout_seconds = 300);

// Runs the kvscope binary with `args` (each shell-quoted) and captures its outputs.
CliResult run_kvscope(const std::vector<std::string>& args);
// The same for another program (mpirun in the MPI tests).
CliResult run_program(const std::string& program, const std::vector<std::string>& args);
int spawn_program(const std::string& program, const std::vector<std::string>& args, const std::string& stderr_path);

}  // namespace kvscope::testing
