#include "app.h"

#include <cstdio>
#include <exception>

#include "core/error.h"
#include "core/version.h"
#include "dist/cluster.h"

namespace kvscope::tools {
namespace {

// Library messages (LibTorch's among them) may carry a multi-line backtrace; users get the
// first line.
std::string first_line(const std::string& s) {
  const size_t nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

}  // namespace

int report_error(const std::string& message) {
  const cluster::Info& me = cluster::info();
  if (me.size > 1) {
    std::fprintf(stderr, "kvscope: error: rank %d: %s\n", me.rank, message.c_str());
    std::fflush(stderr);
    cluster::abort(1);
  }
  std::fprintf(stderr, "kvscope: error: %s\n", message.c_str());
  return 1;
}

int run_app(int argc, char** argv, std::vector<Command> (*register_commands)(CLI::App&)) {
  CLI::App app{"kvscope: observe, analyse and compress the KV cache of Llama-family models"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("kvscope ") + version() + " (" + git_commit() + ")");
  const std::vector<Command> commands = register_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Every rank of an MPI job parses the same command line; one of them speaks.
    if (cluster::info().rank != 0) return e.get_exit_code() == 0 ? 0 : 2;
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // Bad usage gets kvscope's one-line format too, with where to look for what is allowed.
    std::fprintf(stderr, "kvscope: error: %s (see kvscope %s--help)\n", first_line(e.what()).c_str(),
                 argc > 1 && argv[1][0] != '-' ? (std::string(argv[1]) + " ").c_str() : "");
    return 2;
  }
  try {
    for (const auto& command : commands) {
      if (!command.app->parsed()) continue;
      if (cluster::info().size > 1 && !command.distributed) {
        // Every rank sees the same command line and stops here; one of them says why.
        std::string distributed;
        for (const auto& c : commands)
          if (c.distributed) distributed += (distributed.empty() ? "" : ", ") + c.app->get_name();
        if (cluster::info().rank == 0)
          std::fprintf(stderr, "kvscope: error: kvscope %s runs as one process (%s share their work across MPI ranks): "
                       "start it without mpirun or srun\n", command.app->get_name().c_str(), distributed.c_str());
        return 1;
      }
      return command.run();
    }
    return 2;
  } catch (const std::exception& e) {
    return report_error(first_line(e.what()));
  }
}

}  // namespace kvscope::tools
