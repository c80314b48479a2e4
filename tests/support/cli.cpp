#include "support/cli.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "support/test_paths.h"

namespace kvscope::testing {
namespace {
std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}
std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream b;
  b << in.rdbuf();
  return b.str();
}
}  // namespace

int spawn_program(const std::string& program, const std::vector<std::string>& args, const std::string& stderr_path) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int devnull = ::open("/dev/null", O_WRONLY);
    const int err = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(devnull, 1);
    dup2(err >= 0 ? err : devnull, 2);
    std::vector<std::string> copy = args;
    std::string path = program;
    std::vector<char*> argv{path.data()};
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(path.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

int spawn_kvscope(const std::vector<std::string>& args, const std::string& stderr_path) {
  return spawn_program(KVSCOPE_BINARY, args, stderr_path);
}

int spawn_kvscope(const std::vector<std::string>& args) { return spawn_kvscope(args, "/dev/null"); }

namespace {
template <typename Ready>
bool poll_until(Ready ready, double timeout_seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds);
  while (!ready()) {
    if (std::chrono::steady_clock::now() > end) return false;
    usleep(1000);
  }
  return true;
}
}  // namespace

bool wait_for_text(const std::string& path, const std::string& text, double timeout_seconds) {
  return poll_until([&] { return slurp(path).find(text) != std::string::npos; }, timeout_seconds);
}

bool wait_for_size(const std::string& path, uintmax_t bytes, double timeout_seconds) {
  return poll_until(
      [&] {
        std::error_code ec;
        const uintmax_t size = std::filesystem::file_size(path, ec);
        return !ec && size >= bytes;
      },
      timeout_seconds);
}

bool wait_until(const std::function<bool()>& ready, double timeout_seconds) { return poll_until(ready, timeout_seconds); }

CliResult run_kvscope(const std::vector<std::string>& args) { return run_program(KVSCOPE_BINARY, args); }

CliResult run_program(const std::string& program, const std::vector<std::string>& args) {
  TempDir io("cli");
  std::string cmd = quote(program);
  for (const auto& a : args) cmd += " " + quote(a);
  cmd += " </dev/null >" + quote((io / "out").string()) + " 2>" + quote((io / "err").string());
  const int status = std::system(cmd.c_str());
  CliResult r;
  // The shell reports a child killed by signal N as exit status 128+N.
  if (WIFEXITED(status)) {
    r.code = WEXITSTATUS(status);
    r.exited = r.code < 128;
    if (!r.exited) r.signal = r.code - 128;
  } else {
    r.signal = WTERMSIG(status);
  }
  r.out = slurp(io / "out");
  r.err = slurp(io / "err");
  return r;
}

}  // namespace kvscope::testing
