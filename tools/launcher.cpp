// kvscope: starts in milliseconds because it does not load LibTorch. It runs the commands
// that only read dumps (spectrum, l2corr, info on a dump, --version) itself and replaces
// itself (exec, same pid and arguments) with kvscope-torch, installed beside it, for all
// others, and for every run started as an MPI rank.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "app.h"
#include "common.h"
#include "dist/cluster.h"
#include "dump_info.h"
#include "io/atomic_output.h"

namespace {

std::vector<kvscope::tools::Command> analysis_commands(CLI::App& app) {
  using namespace kvscope::tools;
  return {register_spectrum(app), register_l2corr(app)};
}

bool is_dump_info(int argc, char** argv) {
  std::error_code ec;
  return argc == 3 && std::strcmp(argv[1], "info") == 0 && argv[2][0] != '-' && std::filesystem::is_regular_file(argv[2], ec);
}

bool runs_here(int argc, char** argv) {
  if (kvscope::cluster::launched_as_rank() || argc < 2) return false;
  const std::string command = argv[1];
  return command == "spectrum" || command == "l2corr" || command == "--version" || is_dump_info(argc, argv);
}

int exec_model_binary(char** argv) {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  const std::filesystem::path target = (ec ? std::filesystem::path(argv[0]).parent_path() : self.parent_path()) / "kvscope-torch";
  execv(target.c_str(), argv);
  std::fprintf(stderr, "kvscope: error: cannot start %s (%s): the model commands live there; build it beside kvscope "
               "(cmake --build build)\n", target.c_str(), std::strerror(errno));
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace kvscope;
  if (!runs_here(argc, argv)) return exec_model_binary(argv);
  tools::set_command_line(argc, argv);
  install_interrupt_cleanup();
  if (is_dump_info(argc, argv)) {
    try {
      return tools::print_dump_info(argv[2]);
    } catch (const std::exception& e) {
      return tools::report_error(e.what());
    }
  }
  return tools::run_app(argc, argv, analysis_commands);
}
