#include "support/cli.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
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

int spawn_kvscope(const std::vector<std::string>& args) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int devnull = ::open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    std::vector<std::string> copy = args;
    std::vector<char*> argv{const_cast<char*>(KVSCOPE_BINARY)};
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(KVSCOPE_BINARY, argv.data());
    _exit(127);
  }
  return pid;
}

CliResult run_kvscope(const std::vector<std::string>& args) {
  TempDir io("cli");
  std::string cmd = quote(KVSCOPE_BINARY);
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
